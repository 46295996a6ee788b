"""A published checkpoint that cannot be used (corrupt weights, a bad or missing manifest) is
skipped with its reason recorded, and the sweep goes on with the others."""

from __future__ import annotations

import json

import pytest
from reliability import record

from raysweep import checkpoints
from raysweep.plan import plan_keys
from raysweep.spec_loader import spec_from_dict

pytestmark = pytest.mark.fault


@pytest.fixture
def storage_with_bad_checkpoints(tiny_spec_dict, tmp_path):
    from raysweep.model import build_model

    tiny_spec_dict["pretrain"]["checkpoints"] = [2048, 4096, 8192, 16384]
    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    model = build_model(spec, 100, 0, 1)
    for tokens in (2048, 4096, 8192, 16384):
        assert checkpoints.publish(spec, model, tokens, tokens // 256, {})
    weights = checkpoints.checkpoint_dir(spec, 4096) / checkpoints.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])  # a partial upload
    # publication cut short
    (checkpoints.checkpoint_dir(spec, 8192) / checkpoints.MANIFEST).unlink()
    (checkpoints.checkpoint_dir(spec, 16384) / checkpoints.MANIFEST).write_text("{not json")
    return spec


def test_only_sound_checkpoints_count_as_published(storage_with_bad_checkpoints):
    spec = storage_with_bad_checkpoints
    sound, unusable = checkpoints.scan(spec)
    assert sorted(sound) == [2048] and sorted(checkpoints.published(spec)) == [2048]
    # Counting without hashing (status, the driver's skip check): the manifest is what counts.
    assert sorted(checkpoints.published(spec, verify_weights=False)) == [2048, 4096]
    assert "does not match the SHA-256" in unusable["dp_000000000004096"]
    assert unusable["dp_000000000008192"] == checkpoints.NO_MANIFEST
    assert "unreadable" in unusable["dp_000000000016384"]
    # Publishing again is a no-op for a sound checkpoint: never published twice.
    manifest = json.loads((checkpoints.checkpoint_dir(spec, 2048)
                           / checkpoints.MANIFEST).read_text())
    from raysweep.model import build_model

    assert not checkpoints.publish(spec, build_model(spec, 100, 0, 1), 2048, 8, {})
    assert json.loads((checkpoints.checkpoint_dir(spec, 2048)
                       / checkpoints.MANIFEST).read_text()) == manifest


def test_the_watcher_skips_unusable_checkpoints_and_records_why(storage_with_bad_checkpoints):
    from raysweep.tracking import Tracker
    from raysweep.watcher import CheckpointWatcher

    spec = storage_with_bad_checkpoints
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    sweep_run = tracker.get_or_create_run({"raysweep.kind": "sweep"}, spec.name)
    # the actor's class, in-process
    watcher = CheckpointWatcher.__ray_actor_class__(spec, sweep_run)

    # pretraining still running: a folder without manifest may be mid-write
    watcher.scan(final=False)
    assert set(watcher.progress()["rejected"]) == {"dp_000000000004096", "dp_000000000016384"}
    assert sorted(watcher.queue) == sorted(plan_keys(spec, 0) + plan_keys(spec, 2048))

    watcher.scan(final=True)  # pretraining over: the folder without manifest is abandoned
    rejected = watcher.progress()["rejected"]
    sound_keys, queued = set(plan_keys(spec, 0) + plan_keys(spec, 2048)), list(watcher.queue)
    record("unusable published checkpoint (partial weights, no manifest, broken manifest)",
           3, len(rejected) == 3, len(sound_keys - set(queued)), len(queued) - len(set(queued)),
           "the watcher's scan; the sound checkpoint's trials are queued")
    assert set(rejected) == {"dp_000000000004096", "dp_000000000008192", "dp_000000000016384"}
    assert len(watcher.queue) == len(plan_keys(spec, 0) + plan_keys(spec, 2048))  # nothing new
    tags = tracker.client.get_run(sweep_run).data.tags
    assert tags["raysweep.rejected_checkpoint.dp_000000000004096"] == rejected["dp_000000000004096"]
