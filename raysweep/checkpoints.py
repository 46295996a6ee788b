"""Published evaluation checkpoints: the hand-off from pretraining to finetuning.

A checkpoint is identified by the tokens it has seen (D_p) and lives in
`<sweep>/checkpoints/dp_<D_p>/`: consolidated weights in safetensors (loadable by plain
transformers, no DeepSpeed, no unpickling) and `manifest.json`. The manifest is written last and
atomically (temp name then rename; in a bucket, one PUT), so a checkpoint without one is not
published, whatever else its folder holds. The watcher treats the manifests on storage as the
source of truth. With bucket storage a trial reads a node-local copy (`fetch`), whose weights are
checked against the manifest's SHA-256 once per node.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from raysweep import model
from raysweep.spec import SweepSpec
from raysweep.storage import SweepFolder, write_json_atomic

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"


def checkpoints_dir(spec: SweepSpec) -> Path:
    return spec.root / "checkpoints"


def checkpoint_dir(spec: SweepSpec, tokens: int) -> Path:
    return checkpoints_dir(spec) / f"dp_{tokens:015d}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(spec: SweepSpec, trained, tokens: int, step: int, extra: dict) -> bool:
    """Export `trained` (a plain transformers model with full weights) as checkpoint D_p = tokens.

    Idempotent: an already published checkpoint is left as it is (returns False; True when it
    was published now). A half-written folder without a manifest is written again."""
    folder, bucket = checkpoint_dir(spec, tokens), spec.folder.bucket()
    shared = f"checkpoints/{folder.name}"
    if bucket.size(f"{shared}/{MANIFEST}") is not None if bucket else (folder / MANIFEST).exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    trained.save_pretrained(str(folder), safe_serialization=True)
    manifest = {
        "tokens_seen": tokens,
        "step": step,
        "weights": WEIGHTS,
        "weights_sha256": sha256(folder / WEIGHTS),
        "weights_bytes": (folder / WEIGHTS).stat().st_size,
        "model_config": trained.config.to_dict(),
        "published_at": time.time(),
        **extra,
    }
    write_json_atomic(folder / MANIFEST, manifest)
    if bucket:  # the weights first, the manifest last: its appearance publishes the checkpoint
        bucket.commit_folder(folder, shared, MANIFEST)
        shutil.rmtree(folder)  # the pretraining node keeps no copy of every checkpoint
    return True


def fetch(spec: SweepSpec, tokens: int) -> Path:
    """The local folder of published checkpoint D_p = tokens, for loading: the folder itself, or
    for bucket storage this node's copy, downloaded once and checked against the manifest."""
    folder, bucket = checkpoint_dir(spec, tokens), spec.folder.bucket()
    if bucket is None:
        return folder
    if not (folder / ".verified").exists():
        bucket.fetch_folder(f"checkpoints/{folder.name}", folder, complete=MANIFEST)
        manifest, reason = inspect(spec.folder.local_copy(), folder.name, verify_weights=True)
        if manifest is None:
            shutil.rmtree(folder, ignore_errors=True)  # the next attempt downloads it again
            raise RuntimeError(f"checkpoint {folder.name} in {bucket.uri} is unusable: {reason}")
        (folder / ".verified").touch()
    return folder


def load_model(spec: SweepSpec, tokens: int):
    """The published model D_p = tokens, built from its safetensors weights: a pickle next to
    them (pytorch_model.bin) is never read, so a planted file cannot run code."""
    return model.load_model(str(fetch(spec, tokens)))


NO_MANIFEST = "no manifest.json (not published, or its publication was cut short)"


def inspect(folder: SweepFolder, name: str,
            verify_weights: bool = True) -> tuple[dict | None, str | None]:
    """(manifest, None) for a sound published checkpoint `checkpoints/<name>` of the sweep's
    folder, else (None, why it cannot be used).

    Checks what a trial relies on: a readable manifest naming this folder's D_p, and weights
    whose SHA-256 matches the manifest's. Hashing reads the whole file (gigabytes at paper
    scale): verify_weights=False skips it where a count is enough. In a bucket the weights are
    not downloaded here: an object of the manifest's size (an object is only ever whole, so a
    partial upload shows as missing) is enough, and `fetch` checks the SHA-256 on the node that
    loads them."""
    where = f"checkpoints/{name}"
    if folder.size(f"{where}/{MANIFEST}") is None:
        return None, NO_MANIFEST
    try:
        manifest = json.loads(folder.read_bytes(f"{where}/{MANIFEST}"))
        tokens, weights = int(manifest["tokens_seen"]), manifest["weights"]
        digest = manifest["weights_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        return None, f"manifest.json is unreadable or incomplete ({type(err).__name__}: {err})"
    if name != f"dp_{tokens:015d}":
        return None, f"manifest.json says tokens_seen {tokens}, which is not this folder's D_p"
    size = folder.size(f"{where}/{weights}")
    if size is None:
        return None, f"the weights file {weights} named by manifest.json is missing"
    local = folder.local_path(f"{where}/{weights}")
    if local is None and size != manifest.get("weights_bytes", size):  # what a bucket can tell
        return None, f"{weights} has {size} bytes, manifest.json says {manifest['weights_bytes']}"
    if verify_weights and local is not None and sha256(local) != digest:
        return None, (f"{weights} does not match the SHA-256 in manifest.json "
                      f"(corrupted or partly written)")
    return manifest, None


def scan(spec: SweepSpec, known: set[str] = frozenset(),
         verify_weights: bool = True) -> tuple[dict[int, dict], dict[str, str]]:
    """Checkpoint folders on storage, except the `known` folder names (already inspected):
    (D_p -> manifest of each sound one, folder name -> why each other one cannot be used)."""
    inspected = {name: inspect(spec.folder, name, verify_weights)
                 for name in spec.folder.folders("checkpoints")
                 if name.startswith("dp_") and name not in known}
    return _sort_out(inspected)


def _sort_out(inspected: dict[str, tuple]) -> tuple[dict[int, dict], dict[str, str]]:
    sound, unusable = {}, {}
    for name, (manifest, reason) in inspected.items():
        if manifest is None:
            unusable[name] = reason
        else:
            sound[int(manifest["tokens_seen"])] = manifest
    return sound, unusable


def published(spec: SweepSpec, verify_weights: bool = True) -> dict[int, dict]:
    """D_p -> manifest of every sound published checkpoint on storage."""
    return scan(spec, verify_weights=verify_weights)[0]
