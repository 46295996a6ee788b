"""Checkpoint series made elsewhere (`series`), in place of pretraining: a local folder series
written here by a plain transformers loop, a hub-revision series served from a locally built hub
cache with the hub offline, the bad inputs refused before anything is written, and one sweep of
a folder series through the real path (Ray, Tune trials, MLflow on SQLite, the fitter)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from conftest import CAUSAL_TINY, TINY_SPEC

from raysweep.cli import main
from raysweep.laws.analysis import VERDICTS
from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec, spec_from_dict

TOKENS_PER_STEP = 8 * 32  # the series' own batch: 8 sequences of 32 tokens
STEPS = (8, 16, 32)


def write_series(folder, steps=STEPS, model_dims=CAUSAL_TINY, seed: int = 0) -> None:
    """A tiny decoder-only model trained by a plain transformers loop (no raysweep), saved with
    its tokenizer at each of `steps` as `step{N}` (what save_pretrained writes)."""
    import itertools

    import torch

    from raysweep.data.sources import monolingual_source
    from raysweep.data.synthetic import Family
    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.model import build_model

    spec = spec_from_dict({**copy.deepcopy(TINY_SPEC), "model": model_dims}, base_dir=str(folder))
    tokenizer = train_tokenizer(spec)
    torch.manual_seed(seed)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    text = monolingual_source("synthetic:en", None, Family.of(spec), "f", "test").documents(0, 1, 0)
    ids = itertools.chain.from_iterable(tokenizer(doc)["input_ids"] for doc in text)
    for step in range(1, max(steps) + 1):
        batch = torch.tensor(list(itertools.islice(ids, TOKENS_PER_STEP))).view(8, 32)
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step in steps:
            model.save_pretrained(folder / f"step{step}", safe_serialization=True)
            tokenizer.save_pretrained(folder / f"step{step}")


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    write_series(folder)
    return folder


def series_spec(tmp_path, series: dict, **top) -> dict:
    data = copy.deepcopy(TINY_SPEC)
    del data["model"], data["tokenizer"]
    data["pretrain"] = {"mixture": [{"source": "synthetic:en", "weight": 1.0}]}
    data.update(name="series", storage=str(tmp_path / "storage"), series=series, **top)
    data["tasks"][0].update(finetune_tokens=[1000], lrs=[0.003])
    return data


def write(tmp_path, data: dict):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def folder_series(series_folder, **fields) -> dict:
    return {"folder": str(series_folder), "steps": list(STEPS), "tokens_per_step": TOKENS_PER_STEP,
            **fields}


def test_a_folder_series_validates_with_its_plan(series_folder, tmp_path, capsys):
    path = write(tmp_path, series_spec(tmp_path, folder_series(series_folder)))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"checkpoints made elsewhere: folder {series_folder}, trained on synthetic:en x 1" in out
    assert "2,048 (step8), 4,096 (step16), 8,192 (step32)" in out
    spec = load_spec(path)
    assert spec.checkpoint_tokens() == [0, 2048, 4096, 8192] and spec.num_trials() == 4
    assert not (tmp_path / "storage").exists()


def test_a_folder_series_may_read_each_d_p_from_a_tokens_file_beside_the_checkpoint(
        series_folder, tmp_path):
    folder = tmp_path / "run"
    for step in STEPS:
        shutil.copytree(series_folder / f"step{step}", folder / f"step{step}")
        (folder / f"step{step}" / "tokens.json").write_text(json.dumps({"tokens": step * 1000}))
    listed = {"folder": str(folder), "checkpoints": [{"folder": f"step{s}"} for s in STEPS]}
    spec = load_spec(write(tmp_path, series_spec(tmp_path, listed)))
    assert spec.checkpoint_tokens() == [0, 8000, 16000, 32000]
    (folder / "step16" / "tokens.json").unlink()
    with pytest.raises(SpecError) as refused:
        load_spec(write(tmp_path, series_spec(tmp_path, listed)))
    assert ("field `series.checkpoints[1].tokens` is left out, so it is read from"
            in str(refused.value))
    assert "step16/tokens.json" in str(refused.value)


@pytest.mark.parametrize("series, field, says", [
    ({"hub": "org/model", "folder": "x", "steps": [1], "tokens_per_step": 5}, "series.hub",
     "one of the two"),
    ({"folder": "x", "steps": [1, 2]}, "series.tokens_per_step", "positive number of tokens"),
    ({"folder": "x", "checkpoints": [{"folder": "a", "tokens": 200},
                                     {"folder": "b", "tokens": 100}]},
     "series.checkpoints[].tokens", "strictly increasing"),
    ({"hub": "org/model", "checkpoints": [{"folder": "a", "tokens": 200}]},
     "series.checkpoints[0].revision", "which revision holds"),
])
def test_a_series_that_cannot_be_read_as_one_is_refused_naming_the_field(
        tmp_path, series, field, says):
    with pytest.raises(SpecError) as refused:
        spec_from_dict(series_spec(tmp_path, series))
    assert f"field `{field}` " in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize("section, value", [("model", {"preset": "causal-tiny"}),
                                            ("tokenizer", {"kind": "byt5"})])
def test_a_series_brings_its_own_architecture_and_tokenizer(tmp_path, series_folder, section,
                                                            value):
    with pytest.raises(SpecError, match=rf"field `{section}` must be left out with a series"):
        spec_from_dict(series_spec(tmp_path, folder_series(series_folder), **{section: value}))


def broken_copy(series_folder, tmp_path, how: str):
    """The series with its last checkpoint broken `how`."""
    copy_to = tmp_path / "broken"
    shutil.copytree(series_folder, copy_to)
    last = copy_to / f"step{STEPS[-1]}"
    if how == "missing":
        shutil.rmtree(last)
    elif how == "pickle only":
        (last / "model.safetensors").unlink()
        (last / "pytorch_model.bin").write_bytes(b"a pickle")
    elif how == "no weights":
        (last / "model.safetensors").unlink()
    elif how == "other architecture":
        config = json.loads((last / "config.json").read_text())
        config["num_hidden_layers"] = 3
        (last / "config.json").write_text(json.dumps(config))
    return copy_to


@pytest.mark.parametrize("how, says", [
    ("missing", "cannot be read"),
    ("pickle only", "only pytorch_model.bin, a pickle, which raysweep never loads"),
    ("no weights", "has no safetensors weights"),
    ("other architecture", "num_hidden_layers 2 there, 3 here"),
])
def test_a_bad_checkpoint_is_refused_before_anything_is_written(
        series_folder, tmp_path, capsys, how, says):
    broken = broken_copy(series_folder, tmp_path, how)
    path = write(tmp_path, series_spec(tmp_path, folder_series(broken)))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "field `series.steps[2]`" in err and f"{broken}/step32" in err and says in err, err
    assert not (tmp_path / "storage").exists()  # nothing written


@pytest.fixture
def hub_cache(series_folder, tmp_path, monkeypatch):
    """The folder series laid out as revisions `step{N}` of hub model `org/tiny-series` in a hub
    cache, with the hub offline (as tests/test_comet_scoring.py serves the tiny COMET model)."""
    import huggingface_hub.constants as hf_constants
    import transformers.utils.hub as transformers_hub

    hub = tmp_path / "hub"
    repo = hub / "models--org--tiny-series"
    (repo / "refs").mkdir(parents=True)
    for i, step in enumerate(STEPS):
        commit = f"{i + 1:040x}"
        (repo / "refs" / f"step{step}").write_text(commit)
        shutil.copytree(series_folder / f"step{step}", repo / "snapshots" / commit)
    # Both libraries read these once, at import; a user sets them before starting Python.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(transformers_hub, "_is_offline_mode", True)
    monkeypatch.setattr(transformers_hub, "TRANSFORMERS_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


def test_a_hub_series_is_imported_revision_by_revision_with_its_tokens(
        hub_cache, series_folder, tmp_path):
    import torch

    from raysweep import checkpoints
    from raysweep.model import load_model
    from raysweep.preflight import check
    from raysweep.series.source import SeriesSource
    from raysweep.tracking import Tracker

    spec = spec_from_dict(series_spec(tmp_path, {"hub": "org/tiny-series", "steps": list(STEPS),
                                                 "tokens_per_step": TOKENS_PER_STEP}))
    tokenizer, _ = check(spec)
    assert tokenizer.convert_ids_to_tokens(tokenizer.eos_token_id) == "</s>"  # the model's own
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    run_id = tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain")
    SeriesSource(spec).produce(run_id, echo=lambda line: None)
    manifests = checkpoints.published(spec)
    assert sorted(manifests) == [s * TOKENS_PER_STEP for s in STEPS]
    assert ([manifests[t]["source"] for t in sorted(manifests)]
            == [f"org/tiny-series@step{s}" for s in STEPS])
    batch = torch.tensor([[5, 6, 7, 8]])
    for step in STEPS:  # the published weights are the revision's
        published = checkpoints.load_model(spec, step * TOKENS_PER_STEP).eval()
        source = load_model(str(series_folder / f"step{step}")).eval()
        assert torch.equal(published(batch).logits, source(batch).logits)
    logged = tracker.client.get_metric_history(run_id, "published_tokens")
    assert sorted(m.value for m in logged) == sorted(manifests)
    # again: everything is published, nothing is fetched or logged
    SeriesSource(spec).produce(run_id, echo=lambda line: None)
    assert len(tracker.client.get_metric_history(run_id, "published_tokens")) == len(STEPS)


def test_a_revision_the_hub_cache_lacks_is_refused_naming_the_field(hub_cache, tmp_path, capsys):
    data = series_spec(tmp_path, {"hub": "org/tiny-series", "checkpoints": [
        {"revision": "step8", "tokens": 2048}, {"revision": "step999", "tokens": 9999}]})
    assert main(["run", str(write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert ("field `series.checkpoints[1].revision`: checkpoint org/tiny-series@step999 "
            "cannot be read" in err)
    assert not (tmp_path / "storage").exists()


@pytest.mark.slow
def test_a_folder_series_sweep_finetunes_every_checkpoint_and_fits_the_laws(
        series_folder, tmp_path, capsys):
    import ray

    from raysweep.checkpoints import published
    from raysweep.plan import plan_keys
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    spec = load_spec(write(tmp_path, series_spec(tmp_path, folder_series(series_folder))))
    try:
        outcome = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
    finally:
        ray.shutdown()
    assert outcome.ok, outcome.errors
    tracker = Tracker.for_spec(spec)
    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    assert sorted(r.data.tags["raysweep.trial_key"] for r in runs) == planned
    assert {r.info.status for r in runs} == {"FINISHED"}
    manifests = published(spec)
    assert {m["source"] for m in manifests.values()} == {f"{series_folder}/step{s}" for s in STEPS}
    assert {m["model_config"]["model_type"] for m in manifests.values()} == {"llama"}
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    assert sweep.data.params["model"] == f"series: folder {series_folder}, 3 checkpoints"
    (laws,) = tracker.find_runs({"raysweep.kind": "laws"})
    # The laws are fitted; their parameters are logged where the points pin them down.
    assert laws.data.tags["verdict.cross_entropy.en-de.df_1000"] in VERDICTS
    assert "en-de/df_1000/cross_entropy/gain" in laws.data.metrics
    assert main(["status", spec.source_file]) == 0
    out = capsys.readouterr().out
    assert f"importing the series ({series_folder}): FINISHED, 8,192 of 8,192 tokens" in out
    assert "checkpoints: 3/3 published" in out and "trials: 4/4 finished" in out


# ---- attached: a trainer still writing into the folder ------------------------------------------

def attached_spec(tmp_path, folder, **fields):
    return spec_from_dict(series_spec(tmp_path, folder_series(folder, attach=True, **fields)))


def test_with_a_marker_a_checkpoint_counts_only_once_the_marker_is_written(series_folder, tmp_path):
    from raysweep.series.attach import Arrivals

    folder = tmp_path / "trainer"
    shutil.copytree(series_folder / "step8", folder / "step8")
    spec = attached_spec(tmp_path, folder, complete_marker="trainer_state.json")
    (point, *_) = spec.series.points()
    arrivals = Arrivals(spec)
    assert not arrivals.complete(point)  # weights and config there, the marker not yet
    (folder / "step8" / "trainer_state.json").write_text("{}")
    assert arrivals.complete(point)


def test_without_a_marker_a_checkpoint_counts_once_its_files_have_settled(series_folder, tmp_path):
    import time

    from raysweep.series.attach import Arrivals

    folder = tmp_path / "trainer"
    shutil.copytree(series_folder / "step8", folder / "step8")
    spec = attached_spec(tmp_path, folder, settle_seconds=1.0)
    (point, *_) = spec.series.points()
    arrivals = Arrivals(spec)
    assert not arrivals.complete(point)  # first seen now: not settled yet
    time.sleep(0.6)
    with open(folder / "step8" / "model.safetensors", "ab") as f:
        f.write(b"\0")  # still being written
    time.sleep(0.6)
    assert not arrivals.complete(point)  # it changed under a second ago
    time.sleep(1.1)
    assert arrivals.complete(point)


def test_a_stop_ends_the_wait_and_the_sweep_plans_only_the_checkpoints_in(series_folder, tmp_path):
    import threading
    import time

    from raysweep import checkpoints
    from raysweep.plan import count_trials
    from raysweep.series.attach import request_stop
    from raysweep.series.source import SeriesSource
    from raysweep.tracking import Tracker

    folder = tmp_path / "trainer"
    shutil.copytree(series_folder / "step8", folder / "step8")
    spec = attached_spec(tmp_path, folder, settle_seconds=0.5)
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    run_id = tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain")
    importer = threading.Thread(target=SeriesSource(spec).produce, args=(run_id, print),
                                daemon=True)
    importer.start()
    deadline = time.time() + 60
    while 2048 not in checkpoints.published(spec, verify_weights=False):
        assert time.time() < deadline and importer.is_alive()
        time.sleep(0.2)
    # until a stop, the whole plan
    assert count_trials(spec, SeriesSource(spec).final_checkpoints()) == spec.num_trials() == 4
    request_stop(spec)
    importer.join(timeout=30)
    assert not importer.is_alive()  # it stopped waiting for step16
    assert sorted(checkpoints.published(spec)) == [2048]
    # the baseline and D_p = 2,048
    assert count_trials(spec, SeriesSource(spec).final_checkpoints()) == 2


@pytest.mark.slow
def test_an_attached_sweep_follows_a_trainer_writing_its_checkpoints(tmp_path):
    """The trainer's saves (a plain transformers loop's) land in the watched folder: step8 before
    the sweep starts, step16 once the sweep has taken step8 and waits for it, slowly (its weights
    in pieces over 3 s), then step32; the sweep takes each once it is complete, never a partial
    one, and ends when the last D_p is in."""
    import threading
    import time

    import ray
    import torch

    from raysweep import checkpoints
    from raysweep.model import load_model
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    staging, folder = tmp_path / "staging", tmp_path / "trainer"
    write_series(staging)  # the trainer's saves, copied into the watched folder over time below
    folder.mkdir()
    shutil.copytree(staging / "step8", folder / "step8")
    spec = load_spec(write(tmp_path, series_spec(tmp_path, folder_series(folder, attach=True,
                                                                         settle_seconds=2.0))))
    seen_partial: list[list[int]] = []

    def trainer() -> None:
        deadline = time.time() + 300  # step16 is written while the sweep waits for it
        while (2048 not in checkpoints.published(spec, verify_weights=False)
               and time.time() < deadline):
            time.sleep(0.2)
        target = folder / "step16"
        target.mkdir()
        for name in sorted(p.name for p in (staging / "step16").iterdir()):
            if name != "model.safetensors":
                shutil.copy(staging / "step16" / name, target / name)
        weights = (staging / "step16" / "model.safetensors").read_bytes()
        with open(target / "model.safetensors", "wb") as f:
            for start in range(0, len(weights), len(weights) // 6 + 1):  # a slow save: 6 pieces
                f.write(weights[start:start + len(weights) // 6 + 1])
                f.flush()
                seen_partial.append(sorted(checkpoints.published(spec, verify_weights=False)))
                time.sleep(0.5)
        time.sleep(3)
        shutil.copytree(staging / "step32", folder / "step32")

    writer = threading.Thread(target=trainer, daemon=True)
    try:
        writer.start()
        outcome = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
    finally:
        ray.shutdown()
    writer.join(timeout=60)
    assert outcome.ok, outcome.errors
    assert seen_partial and all(4096 not in published for published in seen_partial)
    assert sorted(checkpoints.published(spec)) == [2048, 4096, 8192]
    published = checkpoints.load_model(spec, 4096).state_dict()
    written = load_model(str(staging / "step16")).state_dict()
    assert all(torch.equal(published[k], written[k]) for k in written)  # the whole save, not a part
    runs = Tracker.for_spec(spec).find_runs({"raysweep.kind": "trial"})
    assert len(runs) == spec.num_trials() and {r.info.status for r in runs} == {"FINISHED"}


def test_a_bucket_series_is_checked_and_imported_through_node_local_copies(
        s3_bucket, series_folder, tmp_path):
    """A folder series in a bucket (moto's S3 server on loopback): checked from its config and
    file list alone, each checkpoint downloaded to this node, published, and the copy removed."""
    from conftest import BUCKET

    from raysweep import checkpoints
    from raysweep.preflight import check
    from raysweep.series.source import SeriesSource
    from raysweep.tracking import Tracker

    for step in STEPS:
        for path in (series_folder / f"step{step}").iterdir():
            s3_bucket.upload_file(str(path), BUCKET, f"trainer-run/step{step}/{path.name}")
    spec = spec_from_dict(series_spec(tmp_path, folder_series(f"s3://{BUCKET}/trainer-run")))
    tokenizer, _ = check(spec)
    assert tokenizer is not None and not (tmp_path / "storage").exists()  # read, nothing written
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    SeriesSource(spec).produce(tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain"),
                               echo=lambda line: None)
    manifests = checkpoints.published(spec)
    assert sorted(manifests) == [s * TOKENS_PER_STEP for s in STEPS]
    assert manifests[2048]["source"] == f"s3://{BUCKET}/trainer-run/step8"
    assert not list((spec.root / "series" / "downloads").glob("step*"))  # the copies are gone
    # A checkpoint holding only a pickle is refused there too, before anything is written.
    s3_bucket.delete_object(Bucket=BUCKET, Key="trainer-run/step32/model.safetensors")
    s3_bucket.put_object(Bucket=BUCKET, Key="trainer-run/step32/pytorch_model.bin",
                         Body=b"a pickle")
    other = spec_from_dict(series_spec(tmp_path / "other", folder_series(f"s3://{BUCKET}/trainer-run")))
    with pytest.raises(SpecError,
                       match=r"field `series.steps\[2\]`.*only pytorch_model.bin, a pickle"):
        check(other)
    assert not (tmp_path / "other" / "storage").exists()
