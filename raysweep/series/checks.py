"""Reading and checking a series' checkpoints: revisions of one hub model, or HF-format folders
another trainer wrote (local or in a bucket: raysweep.storage.Location reads both).

`check_series` runs before anything is written (preflight): every checkpoint exists, has
safetensors weights and the same architecture, read from its config and file list alone (a
pickle is never read: it can run code).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import huggingface_hub.constants as hf_constants
from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download
from transformers import AutoTokenizer

from raysweep.model import load_model
from raysweep.spec import SeriesCheckpoint, SpecError, SweepSpec
from raysweep.storage import Location

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")

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


def location(spec: SweepSpec) -> Location:
    """A folder series' folder (local, relative to the spec file, or a bucket)."""
    return Location(spec.series.folder, spec.base_dir)


def downloads(spec: SweepSpec) -> Path:
    """Where this node keeps its copies of a bucket series' checkpoints."""
    return spec.root / "series" / "downloads"


def local_folder(spec: SweepSpec, point: SeriesCheckpoint) -> Path:
    """A folder checkpoint on this machine: the folder itself, or for a bucket series this
    node's copy of it (downloaded once)."""
    return location(spec).local(point.folder, downloads(spec), complete="config.json")


def _hub_files(repo: str, revision: str) -> tuple[Path | None, list[str]]:
    """(the config.json of a hub revision, the revision's file names). Offline (HF_HUB_OFFLINE),
    both come from the local hub cache."""
    config = Path(hf_hub_download(repo, "config.json", revision=revision))
    if hf_constants.HF_HUB_OFFLINE:  # read when called: set once per process, before any call
        snapshot = Path(snapshot_download(repo, revision=revision, local_files_only=True))
        return config, sorted(p.name for p in snapshot.iterdir())
    return config, list_repo_files(repo, revision=revision)


def _files(spec: SweepSpec, point: SeriesCheckpoint) -> tuple[dict, list[str]]:
    """(a checkpoint's config, its file names), without reading its weights."""
    if spec.series.hub:
        config, names = _hub_files(spec.series.hub, point.revision)
        return json.loads(Path(config).read_text()), names
    folder = location(spec)
    return json.loads(folder.read_bytes(f"{point.folder}/config.json")), folder.files(point.folder)


def check_series(spec: SweepSpec, only_complete: bool = False) -> dict | None:
    """Every checkpoint of the series exists, holds safetensors weights and has the first one's
    architecture; returns that architecture (its config). Raises SpecError naming the field.
    `only_complete` (an attached series, still being written): the checkpoints complete so far
    only; None if there is none yet."""
    reference = None
    for index, point in enumerate(spec.series.points()):
        if only_complete and not has_model(location(spec).snapshot(point.folder) or {}):
            continue
        reference = check_checkpoint(spec, index, point, reference)
    return reference


def check_checkpoint(spec: SweepSpec, index: int, point: SeriesCheckpoint, reference: dict | None,
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


def load_checkpoint(spec: SweepSpec, point: SeriesCheckpoint):
    """The model of one checkpoint of the series, from its safetensors weights."""
    if spec.series.hub:
        return load_model(spec.series.hub, revision=point.revision)
    return load_model(str(local_folder(spec, point)))


def load_series_tokenizer(spec: SweepSpec):
    """The model's own tokenizer: the last checkpoint's (hub revision or folder), or for an
    attached series, the first complete one's."""
    last = spec.series.points()[-1]
    if spec.series.attach:
        there = [p for p in spec.series.points()
                 if has_model(location(spec).snapshot(p.folder) or {})]
        if not there:
            raise SpecError(
                f"{_where(spec)}: field `series.attach`: no checkpoint of {spec.series.folder} is "
                f"there yet, and the model's tokenizer is read from one. Start the sweep once the "
                f"trainer has saved its first checkpoint (with its tokenizer); nothing was "
                f"written.")
        last = there[0]
    try:
        if spec.series.hub:
            # A tokenizer is data (tokenizer.json); code named by its config is never run.
            return AutoTokenizer.from_pretrained(spec.series.hub, revision=last.revision,
                                                 trust_remote_code=False)
        return _folder_tokenizer(location(spec), last.folder)
    except Exception as err:  # noqa: BLE001 (hub, OS, bucket and tokenizers' own errors)
        raise SpecError(
            f"{_where(spec)}: field `series`: checkpoint {spec.series.label(last)} holds no "
            f"tokenizer that loads ({type(err).__name__}: {' '.join(str(err).split())[:300]}). "
            f"Save the tokenizer beside the weights (tokenizer.save_pretrained); nothing was "
            f"written.") from None


def _folder_tokenizer(folder: Location, sub: str):
    """The tokenizer saved in a checkpoint's folder; in a bucket read through a temporary copy
    of its small files (the weights are not downloaded, and nothing is written to the sweep's
    folder: this runs before the spec is accepted)."""
    with tempfile.TemporaryDirectory(prefix="raysweep-tokenizer-") as copy:
        small = folder.small_files(sub, WEIGHT_SUFFIXES, Path(copy))
        return AutoTokenizer.from_pretrained(str(small), trust_remote_code=False)


def has_model(files: dict) -> bool:
    """Whether a checkpoint folder's files (name -> stats) hold a config and safetensors weights."""
    return "config.json" in files and any(n.endswith((".safetensors", ".safetensors.index.json"))
                                          for n in files)
