"""A sweep whose storage is an S3 bucket: published checkpoints, the tokenizer and Ray's own run
state (recovery checkpoints, the Tune experiment) go to the bucket, and trials read node-local
copies checked against the manifest. The bucket is served by moto's standalone S3 server on
127.0.0.1 (no network); raysweep and Ray reach it through pyarrow's real S3 client, configured by
environment variables alone (AWS_ENDPOINT_URL, keys), as on a cloud cluster."""

from __future__ import annotations

import json

import pytest
from conftest import BUCKET

pytestmark = pytest.mark.slow



def keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_sweep_on_bucket_storage(s3_bucket, tiny_spec_dict, write_spec, tmp_path):
    import ray

    from raysweep import checkpoints
    from raysweep.spec_loader import load_spec
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    tiny_spec_dict.update(name="bucket", storage=f"s3://{BUCKET}/sweeps",
                          tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    tiny_spec_dict["tasks"][0].update(finetune_tokens=[1000], lrs=[0.003])
    spec = load_spec(write_spec(tiny_spec_dict))
    try:
        outcome = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
    finally:
        ray.shutdown()
    assert outcome.ok, outcome.errors

    prefix = "sweeps/bucket/"
    stored = keys(s3_bucket, prefix)
    for d_p in (2048, 4096, 8192):  # published to the bucket, manifest and weights
        folder = f"{prefix}checkpoints/dp_{d_p:015d}/"
        assert {folder + "manifest.json", folder + "model.safetensors"} <= set(stored)
        manifest = json.loads(s3_bucket.get_object(Bucket=BUCKET,
                                                   Key=folder + "manifest.json")["Body"].read())
        assert manifest["tokens_seen"] == d_p
    assert f"{prefix}tokenizer/tokenizer_config.json" in stored
    assert any(k.startswith(f"{prefix}ray/pretrain/checkpoint_") for k in stored)  # recovery state
    assert any(k.startswith(f"{prefix}ray/finetune/") for k in stored)  # Tune's experiment state
    # The watcher's state too (a watcher restarted on another node finds it), none on the node.
    watcher = json.loads(s3_bucket.get_object(Bucket=BUCKET,
                                              Key=f"{prefix}watcher_state.json")["Body"].read())
    assert watcher == {"running": []} and not (spec.root / "watcher_state.json").exists()
    # Trials loaded verified node-local copies; the pretraining node kept none of its own.
    for d_p in (2048, 4096, 8192):
        assert (checkpoints.checkpoint_dir(spec, d_p) / ".verified").exists()
    assert sorted(checkpoints.published(spec)) == [2048, 4096, 8192]  # read from the bucket
    runs = Tracker.for_spec(spec).find_runs({"raysweep.kind": "trial"}, "FINISHED")
    assert len(runs) == spec.num_trials() == 4
    # A local tracking store keeps its artifacts with the sweep, not in MLflow's ./mlruns.
    assert any((spec.root / "mlartifacts").rglob("laws.json"))


def test_a_corrupt_or_partial_checkpoint_in_the_bucket_is_refused(s3_bucket, tiny_spec_dict,
                                                                  write_spec):
    from raysweep import checkpoints
    from raysweep.spec_loader import load_spec
    tiny_spec_dict.update(name="damaged", storage=f"s3://{BUCKET}/sweeps",
                          tracking_uri="http://127.0.0.1:1")
    spec = load_spec(write_spec(tiny_spec_dict))
    bucket = spec.folder.bucket()
    weights = b"\0" * 64
    for d_p, stored in ((2048, weights), (4096, b"\1" * 64), (8192, None)):
        folder = f"checkpoints/dp_{d_p:015d}"
        if stored is not None:
            bucket.write_bytes(f"{folder}/model.safetensors", stored)
        manifest = {"tokens_seen": d_p, "weights": "model.safetensors", "weights_bytes": 64,
                    "weights_sha256": checkpoints.hashlib.sha256(weights).hexdigest()}
        bucket.write_bytes(f"{folder}/manifest.json", json.dumps(manifest).encode())
    bucket.write_bytes("checkpoints/dp_000000000016384/model.safetensors", weights)  # no manifest

    sound, unusable = checkpoints.scan(spec)
    # Present objects of the right size pass the scan; the SHA-256 is checked where they load.
    assert sorted(sound) == [2048, 4096]
    assert "model.safetensors named by manifest.json is missing" in unusable["dp_000000000008192"]
    assert unusable["dp_000000000016384"] == checkpoints.NO_MANIFEST
    assert checkpoints.fetch(spec, 2048) == checkpoints.checkpoint_dir(spec, 2048)
    with pytest.raises(RuntimeError, match="dp_000000000004096 .* does not match the SHA-256"):
        checkpoints.fetch(spec, 4096)
    assert not checkpoints.checkpoint_dir(spec, 4096).exists()  # a retry downloads it again
