"""jobs/: every job spec validates and fits cluster.yaml's node types; spec composition
(`extends`), environment variables, and a spec whose resources no node type can satisfy."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from raysweep.checkpoint_source import checkpoint_source
from raysweep.cli import main
from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec

ROOT = Path(__file__).resolve().parents[1]
# Fragments (`_*.yaml`) are only `extends`-ed by job specs, never submitted themselves.
JOB_SPECS = sorted(p for p in (ROOT / "jobs").rglob("*.yaml") if not p.name.startswith("_"))
CLUSTER_ENV = {"RAYSWEEP_BUCKET": "raysweep-test-bucket", "MLFLOW_TRACKING_URI": "http://10.0.0.2:5000"}


@pytest.fixture
def cluster_env(monkeypatch):
    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)


def _golden_module():
    """tests/golden/make_resolved_jobs.py, which wrote the golden: the test resolves the jobs the
    same way (which files are jobs, the repo's path as `<repo>`)."""
    path = ROOT / "tests/golden/make_resolved_jobs.py"
    spec = importlib.util.spec_from_file_location("make_resolved_jobs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOLDEN = _golden_module()
RESOLVED_JOBS = json.loads((ROOT / "tests/golden/resolved_jobs.json").read_text())
REGENERATE = ("if the plan is meant to change, regenerate the golden (.venv/bin/python "
              "tests/golden/make_resolved_jobs.py) and review its diff")


def test_the_jobs_folder_has_the_demo_a_smoke_test_and_the_papers_settings():
    names = {str(p.relative_to(ROOT / "jobs")) for p in JOB_SPECS}
    assert {"demo.yaml", "cloud-smoke.yaml"} <= names
    for model in ("t5-770m", "t5-3b"):
        for mixture in ("en", "de", "fr", "ro", "en-de", "en-fr", "en-ro", "en30-fr70",
                        "en70-fr30"):
            assert f"paper/{model}/{mixture}.yaml" in names


@pytest.mark.parametrize("path", JOB_SPECS, ids=lambda p: str(p.relative_to(ROOT / "jobs")))
def test_every_job_spec_validates_and_fits_the_cluster(path, cluster_env, capsys):
    assert main(["validate", str(path), "--cluster", str(ROOT / "cluster.yaml")]) == 0
    assert "spec is valid and fits the node types of" in capsys.readouterr().out


def test_paper_specs_have_the_papers_settings(cluster_env):
    spec = load_spec(ROOT / "jobs/paper/t5-3b/en-de.yaml")
    assert spec.name == "paper-t5-3b-en-de" and spec.model.d_ff == 16384  # the preset, via extends
    assert [(c.source, c.weight) for c in spec.pretrain.mixture] == [
        ("hf:allenai/c4:en", 0.5), ("hf:allenai/c4:de", 0.5)]
    assert spec.pretrain.tokens_per_step() == 256 * 512 and spec.pretrain.optimizer == "adafactor"
    tasks = {t.name: t for t in spec.tasks}
    assert tasks["en-de"].finetune_tokens == (6_000_000, 31_000_000, 3_000_000_000)
    assert tasks["en-ro"].data == "hf:wmt/wmt16:ro-en"
    assert spec.storage == "s3://raysweep-test-bucket/sweeps"  # from the environment
    assert spec.tracking_uri == "http://10.0.0.2:5000"
    ro = load_spec(ROOT / "jobs/paper/t5-770m/ro.yaml")
    assert ro.pretrain.published_tokens()[-1] == 510_000 * 256 * 512  # the paper's 510k steps


def test_a_spec_built_with_extends_resolves_to_every_field_it_runs_with(cluster_env):
    """What the sweep run logs (spec.resolved.yaml): the base files' sections and the preset's
    dims, which the top file of jobs/paper/ does not hold."""
    import yaml

    path = ROOT / "jobs/paper/t5-3b/en-de.yaml"
    top = yaml.safe_load(path.read_text())
    assert "model" not in top and "tasks" not in top  # they come from the files it extends
    resolved = load_spec(path).as_dict()
    assert resolved["model"]["d_ff"] == 16384 and resolved["model"]["feed_forward"] == "relu"
    assert [t["name"] for t in resolved["tasks"]] == ["en-de", "en-fr", "en-ro"]
    assert resolved["evaluation"]["comet_model"] == "Unbabel/wmt22-comet-da"
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved  # plain data, as logged
    assert "hub" in checkpoint_source(load_spec(path)).settings()["tokenizer"]


def differences(golden, now, path: str = "") -> list[str]:
    """Each field where `now` is not `golden`, as `field: golden X, now Y`: a failure names the
    field that changed, not two 100-line dicts."""
    if isinstance(golden, dict) and isinstance(now, dict):
        found = []
        for key in sorted(golden.keys() | now.keys()):
            field = f"{path}.{key}" if path else key
            if key not in now:
                found.append(f"{field}: golden {golden[key]!r}, now missing")
            elif key not in golden:
                found.append(f"{field}: not in the golden, now {now[key]!r}")
            else:
                found += differences(golden[key], now[key], field)
        return found
    if isinstance(golden, list) and isinstance(now, list) and len(golden) == len(now):
        return [line for i, (old, new) in enumerate(zip(golden, now))
                for line in differences(old, new, f"{path}[{i}]")]
    if golden == now and type(golden) is type(now):
        return []
    return [f"{path or '(top level)'}: golden {golden!r}, now {now!r}"]


def test_the_golden_holds_every_job_and_no_other(cluster_env):
    now = {str(p.relative_to(ROOT / "jobs")) for p in GOLDEN.job_specs(ROOT)}
    assert now == {str(p.relative_to(ROOT / "jobs")) for p in JOB_SPECS}
    assert not sorted(now - RESOLVED_JOBS.keys()), f"jobs the golden lacks: {REGENERATE}"
    assert not sorted(RESOLVED_JOBS.keys() - now), "jobs gone: every job path must stay valid"


@pytest.mark.parametrize("job", sorted(RESOLVED_JOBS))
def test_every_job_resolves_to_the_same_spec_as_its_golden(job, cluster_env):
    """The contract of reorganising jobs/ (`extends` lists, shared fragments): every job still
    resolves to exactly the spec it did, field by field (tests/golden/resolved_jobs.json)."""
    now = GOLDEN.normalise(load_spec(ROOT / "jobs" / job).as_dict(), str(ROOT))
    found = differences(RESOLVED_JOBS[job], now)
    assert not found, f"jobs/{job} no longer resolves to its golden spec ({REGENERATE}):\n  " + \
        "\n  ".join(found)


def test_extends_takes_a_list_merged_in_order(tmp_path, write_spec, tiny_spec_dict):
    """Later entries win, mappings merge key by key, lists replace (never concatenate); each
    entry is relative to the file naming it, and a fragment may itself extend (nested)."""
    import yaml

    write_spec(tiny_spec_dict, "_base.yaml")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts/_model.yaml").write_text(
        "extends: ../_base.yaml\npretrain:\n  lr: 0.01\n  seq_len: 32\n")  # nested extends
    mixture = [{"source": "synthetic:fr", "weight": 1.0}]
    (tmp_path / "_mixture.yaml").write_text(yaml.safe_dump(
        {"pretrain": {"mixture": mixture, "lr": 0.02}, "tasks": [
            {**tiny_spec_dict["tasks"][0], "lrs": [0.005]}]}))
    child = tmp_path / "child.yaml"
    child.write_text("extends: [parts/_model.yaml, _mixture.yaml]\nname: child\n")
    spec = load_spec(child)
    assert spec.name == "child" and spec.pretrain.seq_len == 32  # from the first entry
    assert spec.pretrain.lr == 0.02  # the later entry wins
    assert spec.pretrain.batch_size == tiny_spec_dict["pretrain"]["batch_size"]  # nested base
    assert [(c.source, c.weight) for c in spec.pretrain.mixture] == [("synthetic:fr", 1.0)]
    assert [t.lrs for t in spec.tasks] == [(0.005,)]  # the list replaced, not appended to
    child.write_text("extends: [_mixture.yaml, parts/_model.yaml]\nname: child\n")
    assert load_spec(child).pretrain.lr == 0.01  # the order decides
    # A single string keeps its meaning, the same as a list of one.
    child.write_text("extends: parts/_model.yaml\nname: child\n")
    single = load_spec(child)
    assert (single.pretrain.lr, single.pretrain.seq_len) == (0.01, 32)
    child.write_text("extends: [parts/_model.yaml]\nname: child\n")
    assert load_spec(child).as_dict() == single.as_dict()


@pytest.mark.parametrize("extends,error", [
    ("[_base.yaml, nowhere.yaml]", r"field `extends\[1\]`: .*nowhere.yaml.* is not a file\. "
                                   r"Give the path of a spec YAML file"),
    ("[_base.yaml, 3]", r"field `extends\[1\]` must be the path of a spec file .* but the spec "
                        r"has 3"),
    ("[_base.yaml, _empty.yaml]", r"field `extends\[1\]` must name a spec file that holds a "
                                  r"mapping of fields .*_empty.yaml holds NoneType"),
    ("{base: _base.yaml}", r"field `extends` must be the path of a spec file \(relative to this "
                           r"one\) or a list of them"),
])
def test_a_bad_extends_entry_is_named(extends, error, tmp_path, write_spec, tiny_spec_dict):
    write_spec(tiny_spec_dict, "_base.yaml")
    (tmp_path / "_empty.yaml").write_text("# nothing\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {extends}\nname: child\n")
    with pytest.raises(SpecError, match=error) as err:
        load_spec(child)
    assert str(err.value).startswith(f"{child}: ") and "nothing was written" in str(err.value)


def test_a_cycle_through_an_extends_list_is_named(tmp_path, write_spec, tiny_spec_dict):
    write_spec(tiny_spec_dict, "_base.yaml")
    (tmp_path / "_a.yaml").write_text("extends: [_base.yaml, _b.yaml]\n")
    (tmp_path / "_b.yaml").write_text("extends: _a.yaml\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: [_a.yaml]\nname: child\n")
    with pytest.raises(SpecError) as err:
        load_spec(child)
    message, folder = str(err.value), tmp_path.resolve()  # the files as resolved paths
    assert message.startswith(f"{folder / '_b.yaml'}: field `extends` must not form a cycle of "
                              f"files extending each other ({folder / '_a.yaml'} -> ")
    assert "\n" not in message and "nothing was written" in message
    (tmp_path / "_b.yaml").write_text("extends: [child.yaml]\n")  # back to the top file
    with pytest.raises(SpecError, match=r"_b.yaml: field `extends\[0\]` must not form a cycle"):
        load_spec(child)


def test_a_missing_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("RAYSWEEP_BUCKET", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.2:5000")
    with pytest.raises(SpecError,
                       match=r"field `storage` uses the environment variable RAYSWEEP_BUCKET"):
        load_spec(ROOT / "jobs/cloud-smoke.yaml")


def test_extends_merges_mappings_and_reports_a_missing_base(tmp_path, write_spec, tiny_spec_dict):
    base = write_spec(tiny_spec_dict, "_base.yaml")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base.name}\nname: child\npretrain:\n  lr: 0.01\n")
    spec = load_spec(child)
    assert spec.name == "child" and spec.pretrain.lr == 0.01
    assert spec.pretrain.batch_size == tiny_spec_dict["pretrain"]["batch_size"]  # from the base
    child.write_text("extends: nowhere.yaml\nname: child\n")
    with pytest.raises(SpecError, match=r"field `extends`: .*nowhere.yaml.* is not a file"):
        load_spec(child)
    child.write_text("extends: child.yaml\nname: child\n")
    with pytest.raises(SpecError, match="cycle"):
        load_spec(child)


@pytest.mark.parametrize("field,value", [
    ("storage", "s3://AKIAEXAMPLE:secret@bucket/sweeps"),
    ("tracking_uri", "http://admin:hunter2@10.0.0.2:5000"),
])
def test_credentials_in_a_spec_are_refused_without_echoing_them(field, value, write_spec,
                                                                tiny_spec_dict):
    tiny_spec_dict[field] = value
    if field == "storage":
        tiny_spec_dict["tracking_uri"] = "http://10.0.0.2:5000"
    with pytest.raises(SpecError, match=f"field `{field}` must not hold credentials") as err:
        load_spec(write_spec(tiny_spec_dict))
    assert "secret" not in str(err.value) and "hunter2" not in str(err.value)


def test_bucket_storage_needs_a_tracking_server(write_spec, tiny_spec_dict):
    tiny_spec_dict["storage"] = "s3://bucket/sweeps"
    with pytest.raises(SpecError,
                       match="field `tracking_uri` must be set when storage is a bucket"):
        load_spec(write_spec(tiny_spec_dict))


def test_resources_no_node_type_offers_are_named(write_spec, tiny_spec_dict, capsys):
    cluster = str(ROOT / "cluster.yaml")
    tiny_spec_dict["resources"]["trial_resources"] = {"finetune_pool_typo": 1}
    assert main(["validate", str(write_spec(tiny_spec_dict)), "--cluster", cluster]) == 2
    err = capsys.readouterr().err
    assert "field `resources.trial_resources.finetune_pool_typo`" in err
    assert "`finetune_pool_typo`: each finetune trial" in err
    assert "finetune_g5 {CPU: 8, GPU: 1" in err

    # Each resource exists somewhere, but not together: the GPU share is what is short.
    tiny_spec_dict["resources"].update(use_gpu=True, trial_resources={"finetune_pool": 1})
    tiny_spec_dict["evaluation"]["comet_gpus"] = 0.5
    assert main(["validate", str(write_spec(tiny_spec_dict)), "--cluster", cluster]) == 2
    err = capsys.readouterr().err
    assert "field `resources.use_gpu and evaluation.comet_gpus`" in err
    assert ("asks for 1.5, and the node types that offer the rest (finetune_g5, finetune_g6e) "
            "have at most 1") in err

    tiny_spec_dict["evaluation"]["comet_gpus"] = 0
    tiny_spec_dict["resources"]["pretrain_resources"] = {"pretrain_pool": 1}
    tiny_spec_dict["pretrain"].update(workers=64, batch_size=64)  # 4 nodes x 8 GPUs at most
    assert main(["validate", str(write_spec(tiny_spec_dict)), "--cluster", cluster]) == 2
    assert "field `pretrain.workers`: 64 workers must run at once" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_asking_for_a_gpu_this_machine_lacks_fails_before_anything_is_written(
        write_spec, tiny_spec_dict, tmp_path):
    import ray
    import torch

    from raysweep.sweep import run_sweep

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tiny_spec_dict["resources"]["use_gpu"] = True
    spec = load_spec(write_spec(tiny_spec_dict))
    try:
        with pytest.raises(SpecError, match=r"field `resources.use_gpu`: no node type of this Ray "
                                            r"cluster can satisfy `GPU`: each pretraining worker"):
            run_sweep(spec, echo=lambda line: None)
    finally:
        ray.shutdown()
    assert not (spec.root / "mlflow.db").exists() and not (spec.root / "checkpoints").exists()


def test_relative_storage_in_a_submitted_jobs_working_dir_copy_is_refused(tmp_path, tiny_spec_dict):
    import yaml

    copy = tmp_path / "session/runtime_resources/working_dir_files/_ray_pkg_abc/jobs"
    copy.mkdir(parents=True)
    tiny_spec_dict["storage"] = "../runs"
    (copy / "spec.yaml").write_text(yaml.safe_dump(tiny_spec_dict))
    with pytest.raises(SpecError,
                       match="field `storage` resolves to .* inside Ray's temporary copy"):
        load_spec(copy / "spec.yaml")
