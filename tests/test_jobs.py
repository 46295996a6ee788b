"""jobs/: every job spec validates and fits cluster.yaml's node types; spec composition
(`extends`), environment variables, and a spec whose resources no node type can satisfy."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_the_jobs_folder_has_the_demo_a_smoke_test_and_the_papers_settings():
    names = {str(p.relative_to(ROOT / "jobs")) for p in JOB_SPECS}
    assert {"demo.yaml", "cloud-smoke.yaml"} <= names
    for model in ("t5-770m", "t5-3b"):
        for mixture in ("en", "de", "fr", "ro", "en-de", "en-fr", "en-ro", "en30-fr70", "en70-fr30"):
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
    assert "hub" in load_spec(path).key_settings()["tokenizer"]


def test_a_missing_environment_variable_is_named(monkeypatch):
    monkeypatch.delenv("RAYSWEEP_BUCKET", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.2:5000")
    with pytest.raises(SpecError, match=r"field `storage` uses the environment variable RAYSWEEP_BUCKET"):
        load_spec(ROOT / "jobs/cloud-smoke.yaml")


def test_extends_merges_mappings_and_reports_a_missing_base(tmp_path, write_spec, tiny_spec_dict):
    base = write_spec(tiny_spec_dict, "_base.yaml")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base.name}\nname: child\npretrain:\n  lr: 0.01\n")
    spec = load_spec(child)
    assert spec.name == "child" and spec.pretrain.lr == 0.01
    assert spec.pretrain.batch_size == tiny_spec_dict["pretrain"]["batch_size"]  # kept from the base
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
def test_credentials_in_a_spec_are_refused_without_echoing_them(field, value, write_spec, tiny_spec_dict):
    tiny_spec_dict[field] = value
    if field == "storage":
        tiny_spec_dict["tracking_uri"] = "http://10.0.0.2:5000"
    with pytest.raises(SpecError, match=f"field `{field}` must not hold credentials") as err:
        load_spec(write_spec(tiny_spec_dict))
    assert "secret" not in str(err.value) and "hunter2" not in str(err.value)


def test_bucket_storage_needs_a_tracking_server(write_spec, tiny_spec_dict):
    tiny_spec_dict["storage"] = "s3://bucket/sweeps"
    with pytest.raises(SpecError, match="field `tracking_uri` must be set when storage is a bucket"):
        load_spec(write_spec(tiny_spec_dict))


def test_resources_no_node_type_offers_are_named(write_spec, tiny_spec_dict, capsys):
    cluster = str(ROOT / "cluster.yaml")
    tiny_spec_dict["resources"]["trial_resources"] = {"finetune_pool_typo": 1}
    assert main(["validate", str(write_spec(tiny_spec_dict)), "--cluster", cluster]) == 2
    err = capsys.readouterr().err
    assert "field `resources.trial_resources.finetune_pool_typo`" in err
    assert "`finetune_pool_typo`: each finetune trial" in err and "finetune_g5 {CPU: 8, GPU: 1" in err

    # Each resource exists somewhere, but not together: the GPU share is what is short.
    tiny_spec_dict["resources"].update(use_gpu=True, trial_resources={"finetune_pool": 1})
    tiny_spec_dict["evaluation"]["comet_gpus"] = 0.5
    assert main(["validate", str(write_spec(tiny_spec_dict)), "--cluster", cluster]) == 2
    err = capsys.readouterr().err
    assert "field `resources.use_gpu and evaluation.comet_gpus`" in err
    assert "asks for 1.5, and the node types that offer the rest (finetune_g5, finetune_g6e) have at most 1" in err

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
    with pytest.raises(SpecError, match="field `storage` resolves to .* inside Ray's temporary copy"):
        load_spec(copy / "spec.yaml")
