"""Checkpoint series made elsewhere (the spec's `series`): revisions of one hub model, or
HF-format folders another trainer wrote, finetuned in place of pretraining.

Importing a series plays pretraining's part. Each checkpoint, in D_p order, is loaded from its
safetensors weights (a pickle is never read), checked against the series' architecture, and
published into the sweep's own checkpoints (raysweep.checkpoints.publish: weights, then the
manifest, last), so that everything after it (the watcher, the trials, exactly-once keys, the
laws) is what it is for a sweep that pretrains, and a rerun fetches nothing already published.
The first checkpoint's architecture is kept in the sweep's folder (series/config.json): the
no-pretraining baseline is that architecture freshly initialised.

`check_series` runs before anything is written (preflight): every checkpoint exists, has
safetensors weights and the same architecture, read from its config and file list alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from raysweep.spec import SeriesCheckpoint, SpecError, SweepSpec
from raysweep.storage import Bucket, is_remote

log = logging.getLogger(__name__)

ARCHITECTURE = "series/config.json"
"""The series' architecture (the first checkpoint's config), in the sweep's folder."""

# What must agree between the checkpoints of one series: the architecture, not the training state.
SAME_ARCHITECTURE = ("model_type", "vocab_size", "hidden_size", "d_model", "num_hidden_layers",
                     "num_layers", "num_decoder_layers", "num_attention_heads", "num_heads",
                     "intermediate_size", "d_ff", "is_encoder_decoder")


def _where(spec: SweepSpec) -> str:
    return spec.source_file or "<spec>"


def _field(spec: SweepSpec, index: int) -> str:
    series = spec.series
    if series.checkpoints:
        return f"series.checkpoints[{index}].{'revision' if series.hub else 'folder'}"
    return f"series.steps[{index}]"


def local_folder(spec: SweepSpec, point: SeriesCheckpoint) -> Path:
    """A folder checkpoint on this machine: the folder itself, or for a bucket series this
    node's copy of it (downloaded once)."""
    series = spec.series
    if is_remote(series.folder):
        copy = spec.root / "series" / "downloads" / point.folder
        return Bucket(series.folder).fetch_folder(point.folder, copy, complete="config.json")
    base = Path(series.folder)
    if not base.is_absolute():
        base = Path(spec.base_dir or ".") / base
    return base / point.folder


def _hub_files(repo: str, revision: str) -> tuple[Path | None, list[str]]:
    """(the config.json of a hub revision, the revision's file names). Offline (HF_HUB_OFFLINE),
    both come from the local hub cache."""
    from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE

    config = Path(hf_hub_download(repo, "config.json", revision=revision))
    if HF_HUB_OFFLINE:
        snapshot = Path(snapshot_download(repo, revision=revision, local_files_only=True))
        return config, sorted(p.name for p in snapshot.iterdir())
    return config, list_repo_files(repo, revision=revision)


def _files(spec: SweepSpec, point: SeriesCheckpoint) -> tuple[dict, list[str]]:
    """(a checkpoint's config, its file names), without reading its weights."""
    import json

    if spec.series.hub:
        config, names = _hub_files(spec.series.hub, point.revision)
    else:
        if is_remote(spec.series.folder):
            bucket = Bucket(spec.series.folder)
            return json.loads(bucket.read_bytes(f"{point.folder}/config.json")), bucket.files(point.folder)
        path = local_folder(spec, point)
        config, names = path / "config.json", sorted(p.name for p in path.iterdir())
    return json.loads(Path(config).read_text()), names


def check_series(spec: SweepSpec, only_complete: bool = False) -> dict | None:
    """Every checkpoint of the series exists, holds safetensors weights and has the first one's
    architecture; returns that architecture (its config). Raises SpecError naming the field.
    `only_complete` (an attached series, still being written): the checkpoints complete so far
    only; None if there is none yet."""
    reference = None
    for index, point in enumerate(spec.series.points()):
        if only_complete and not _has_model(_snapshot(spec, point) or {}):
            continue
        reference = _check_checkpoint(spec, index, point, reference)
    return reference


def _check_checkpoint(spec: SweepSpec, index: int, point: SeriesCheckpoint, reference: dict | None,
                      after: str = "nothing was written") -> dict:
    """One checkpoint's check (see check_series); returns the architecture to compare the next
    ones with. `after`: what the error says came of it."""
    label = spec.series.label(point)
    try:
        config, names = _files(spec, point)
    except Exception as err:  # noqa: BLE001 (a missing revision, folder or file: hub, OS, bucket errors)
        raise SpecError(
            f"{_where(spec)}: field `{_field(spec, index)}`: checkpoint {label} cannot be read "
            f"({type(err).__name__}: {' '.join(str(err).split())[:300]}). Give a "
            f"{'revision of the hub model' if spec.series.hub else 'folder'} that holds an "
            f"HF-format checkpoint (config.json and safetensors weights); {after}."
        ) from None
    if not any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        raise SpecError(
            f"{_where(spec)}: field `{_field(spec, index)}`: checkpoint {label} has no "
            f"safetensors weights"
            + (f", only {', '.join(pickles)}, a pickle, which raysweep never loads (it can run "
               f"code)" if pickles else "") +
            ". Save it with save_pretrained(safe_serialization=True), or convert it "
            f"where you trust it; {after}.")
    if reference is None:
        reference = config
    differs = {k: (reference.get(k), config.get(k)) for k in SAME_ARCHITECTURE
               if reference.get(k) != config.get(k)}
    if differs:
        raise SpecError(
            f"{_where(spec)}: field `{_field(spec, index)}`: checkpoint {label} has another "
            f"architecture than the series' first checkpoint ("
            + ", ".join(f"{k} {a!r} there, {b!r} here" for k, (a, b) in differs.items())
            + f"). A series is one model at several points of its pretraining; {after}.")
    return reference


def tokens_from_files(spec: SweepSpec) -> SweepSpec:
    """The spec with each checkpoint's D_p that it leaves out read from the checkpoint's tokens
    file (`series.tokens_file`: `{"tokens": N}`). Raises SpecError naming the checkpoint."""
    import dataclasses
    import json

    points = []
    for i, point in enumerate(spec.series.checkpoints):
        if point.tokens is None:
            path = local_folder(spec, point) / spec.series.tokens_file
            try:
                tokens = int(json.loads(path.read_text())["tokens"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise SpecError(
                    f"{_where(spec)}: field `series.checkpoints[{i}].tokens` is left out, so it is "
                    f"read from {path}, which does not give it ({type(err).__name__}: {err}). "
                    f'Write {{"tokens": N}} there (the tokens the checkpoint has seen), or give '
                    f"`tokens` in the spec; nothing was written.") from None
            point = dataclasses.replace(point, tokens=tokens)
        points.append(point)
    return dataclasses.replace(spec, series=dataclasses.replace(spec.series, checkpoints=tuple(points)))


def load_checkpoint(spec: SweepSpec, point: SeriesCheckpoint):
    """The model of one checkpoint of the series, from its safetensors weights."""
    from raysweep.model import load_model

    if spec.series.hub:
        return load_model(spec.series.hub, revision=point.revision)
    return load_model(str(local_folder(spec, point)))


def load_series_tokenizer(spec: SweepSpec):
    """The model's own tokenizer: the last checkpoint's (hub revision or folder), or for an
    attached series, the first complete one's."""
    from transformers import AutoTokenizer

    last = spec.series.points()[-1]
    if spec.series.attach:
        there = [p for p in spec.series.points() if _has_model(_snapshot(spec, p) or {})]
        if not there:
            raise SpecError(
                f"{_where(spec)}: field `series.attach`: no checkpoint of {spec.series.folder} is "
                f"there yet, and the model's tokenizer is read from one. Start the sweep once the "
                f"trainer has saved its first checkpoint (with its tokenizer); nothing was written.")
        last = there[0]
    try:
        if spec.series.folder and is_remote(spec.series.folder):
            return _bucket_tokenizer(Bucket(spec.series.folder), last.folder)
        if spec.series.hub:
            source, options = spec.series.hub, {"revision": last.revision}
        else:
            source, options = str(local_folder(spec, last)), {}
        # A tokenizer is data (tokenizer.json); code named by its config is never run.
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False, **options)
    except Exception as err:  # noqa: BLE001 (hub, OS, bucket and tokenizers' own errors)
        raise SpecError(
            f"{_where(spec)}: field `series`: checkpoint {spec.series.label(last)} holds no "
            f"tokenizer that loads ({type(err).__name__}: {' '.join(str(err).split())[:300]}). "
            f"Save the tokenizer beside the weights (tokenizer.save_pretrained); nothing was "
            f"written.") from None


def _bucket_tokenizer(bucket: Bucket, folder: str):
    """The tokenizer saved in a bucket checkpoint's folder, read through a temporary copy of its
    small files (the weights are not downloaded, and nothing is written to the sweep's folder:
    this runs before the spec is accepted)."""
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="raysweep-tokenizer-") as copy:
        for name in bucket.files(folder):
            if not name.endswith(WEIGHT_SUFFIXES):
                (Path(copy) / name).write_bytes(bucket.read_bytes(f"{folder}/{name}"))
        return AutoTokenizer.from_pretrained(copy, trust_remote_code=False)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def save_architecture(spec: SweepSpec, config: dict) -> None:
    spec.folder.write_json(ARCHITECTURE, config)


def baseline_model(spec: SweepSpec):
    """The series' architecture, freshly initialised (seeded by the caller): the D_p = 0 point."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = dict(spec.folder.read_json(ARCHITECTURE))
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return auto.from_config(config)


def import_series(spec: SweepSpec, run_id: str) -> None:
    """Pretraining's part for a series: publish each checkpoint not yet published, in D_p order,
    logging each publication to the pretraining run as pretraining does. An attached series'
    checkpoints are waited for, and checked as they arrive; a stop request ends the wait."""
    import ray

    from raysweep import checkpoints
    from raysweep.data.mixture import alignment_score
    from raysweep.pretrain.loop import tell_watcher
    from raysweep.tracking import Tracker

    tracker = Tracker.for_spec(spec)
    done = checkpoints.published(spec, verify_weights=False)
    about = {"mixture": [{"source": c.source, "weight": c.weight} for c in spec.pretrain.mixture],
             "alignment": {t.name: alignment_score(spec.pretrain.mixture, t) for t in spec.tasks}}
    arrivals, reference = Arrivals(spec) if spec.series.attach else None, spec.folder.read_json(ARCHITECTURE)
    for index, point in enumerate(spec.series.points()):
        if point.tokens in done:
            continue
        label = spec.series.label(point)
        if arrivals:
            if not arrivals.wait(point):
                log.info("stop requested: no checkpoint after D_p = %s is taken", f"{point.tokens:,}")
                return
            reference = _check_checkpoint(spec, index, point, reference, after=(
                "it was not imported; the sweep finishes the checkpoints before it"))
            if spec.folder.read_json(ARCHITECTURE) is None:  # the baseline's trials can start now
                save_architecture(spec, reference)
        log.info("importing checkpoint %s as D_p = %s", label, f"{point.tokens:,}")
        model = load_checkpoint(spec, point)
        checkpoints.publish(spec, model, point.tokens, index + 1, {"source": label, **about})
        tracker.log_metrics(run_id, {"published_tokens": point.tokens, "tokens_seen": point.tokens},
                            step=index + 1)
        if ray.is_initialized():
            tell_watcher(spec)
        if spec.series.folder and is_remote(spec.series.folder):
            import shutil

            shutil.rmtree(local_folder(spec, point), ignore_errors=True)  # its copy is published
        del model


# ---- attaching to a run in progress -------------------------------------------------------------

STOP = "series/stop.json"
"""`raysweep stop`'s request to an attached sweep, in the sweep's folder."""
POLL_SECONDS = 2.0


def _snapshot(spec: SweepSpec, point: SeriesCheckpoint) -> dict[str, tuple] | None:
    """A folder checkpoint's files: name -> (size, modification time); None if no folder yet."""
    if is_remote(spec.series.folder):
        bucket = Bucket(spec.series.folder)  # an object is whole or absent: its size is enough
        return {name: (bucket.size(f"{point.folder}/{name}"),) for name in bucket.files(point.folder)} or None
    folder = local_folder(spec, point)
    if not folder.is_dir():
        return None
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def _has_model(files: dict) -> bool:
    return "config.json" in files and any(n.endswith((".safetensors", ".safetensors.index.json"))
                                          for n in files)


class Arrivals:
    """When the checkpoints of an attached series are complete: once the trainer's marker file
    (`series.complete_marker`) is in the folder, or, without one, once the folder holds a config
    and safetensors weights and no file in it has changed for `series.settle_seconds` (a writer
    that is still saving changes a size or a modification time)."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.since: dict[str, tuple[dict, float]] = {}  # folder -> (its files, unchanged since)

    def complete(self, point: SeriesCheckpoint) -> bool:
        import time

        series, files = self.spec.series, _snapshot(self.spec, point)
        if files is None:
            return False
        if series.complete_marker:
            return series.complete_marker in files
        now = time.monotonic()
        before, since = self.since.get(point.folder, (None, now))
        if files != before:
            self.since[point.folder] = (files, now)
            return False
        return _has_model(files) and now - since >= series.settle_seconds

    def wait(self, point: SeriesCheckpoint) -> bool:
        """Wait for a checkpoint to be complete: True; False if a stop was requested first."""
        import time

        log.info("waiting for checkpoint %s (D_p = %s)", self.spec.series.label(point), f"{point.tokens:,}")
        while not self.complete(point):
            if stop_requested(self.spec):
                return False
            time.sleep(min(POLL_SECONDS, self.spec.series.settle_seconds / 4))
        return True


def request_stop(spec: SweepSpec) -> None:
    spec.folder.write_json(STOP, {"requested": True})


def clear_stop(spec: SweepSpec) -> None:
    """A new run of the sweep follows the series again (a stop asked of an earlier run is done)."""
    spec.folder.write_json(STOP, {"requested": False})


def stop_requested(spec: SweepSpec) -> bool:
    return bool((spec.folder.read_json(STOP) or {}).get("requested"))


def baseline_ready(spec: SweepSpec) -> bool:
    """Whether the D_p = 0 baseline can be built: always, except for a series whose architecture
    is not known yet (an attached series before its first checkpoint)."""
    return spec.series is None or spec.folder.read_json(ARCHITECTURE) is not None


def trials_planned(spec: SweepSpec) -> int:
    """The trials the sweep ends with: all of the plan, or for an attached series that was
    stopped, those of the checkpoints in by then."""
    from raysweep.checkpoints import published
    from raysweep.finetune import plan_keys

    if not (spec.series and spec.series.attach and stop_requested(spec)):
        return spec.num_trials()
    return sum(len(plan_keys(spec, d_p)) for d_p in [0, *published(spec, verify_weights=False)])
