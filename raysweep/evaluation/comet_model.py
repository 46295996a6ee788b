"""COMET scoring through the real `unbabel-comet` code path.

Evaluation always goes through `comet.load_from_checkpoint` -> `model.predict`, exactly as with
the published checkpoints (`Unbabel/wmt22-comet-da`). Demos and tests cannot reach the hub: for
them `tiny-local` is a tiny random COMET model built offline (raysweep.evaluation.tiny_comet),
scored by this very code, so every plumbing bug shows up offline.

`evaluation.comet_model` may be `tiny-local`, a local checkpoint (directory or `.ckpt`), or a hub
id; a model that cannot be loaded fails at once with one `RuntimeError` sentence.
"""

from __future__ import annotations

from pathlib import Path

from raysweep.evaluation.comet_runtime import import_comet, quiet
from raysweep.evaluation.tiny_comet import build_tiny_comet

TINY_MODEL = "tiny-local"

def _local_checkpoint(model: str) -> Path | None:
    """The checkpoint a local `model` names, or None when `model` reads as a hub id.

    Hub ids are `name` or `org/name`; anything else path-like is treated as local, so a
    mistyped path fails as a path rather than as an obscure hub lookup."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path / "checkpoints" / "model.ckpt"
    if path.exists() or model.startswith(("/", ".", "~")) or model.count("/") > 1:
        return path
    return None


def load_comet(model: str, cache_dir: str | Path):
    """Load a COMET model: `tiny-local` (built under `<cache_dir>/comet-tiny`), a local checkpoint
    directory or `.ckpt` file, or a hub id (`comet.download_model`, which honours HF_HUB_OFFLINE
    and the hub cache). Raises RuntimeError with one sentence when it cannot be loaded."""
    comet = import_comet()
    local = _local_checkpoint(model)
    try:
        with quiet():
            if model == TINY_MODEL:
                return comet.load_from_checkpoint(
                    str(build_tiny_comet(Path(cache_dir) / "comet-tiny"))
                )
            if local is not None:
                return comet.load_from_checkpoint(str(local))
            return comet.load_from_checkpoint(comet.download_model(model))
    except Exception as err:
        if local is not None:
            expected = (
                "expected a directory holding hparams.yaml and checkpoints/model.ckpt, "
                "or a .ckpt file"
            )
        else:
            expected = (
                "it is not a local checkpoint and could not be fetched from the hub or its cache"
            )
        raise RuntimeError(
            f"COMET model {model!r} could not be loaded: {expected} ({type(err).__name__}: {err}); "
            f"set evaluation.comet_model to a local checkpoint directory or `{TINY_MODEL}`."
        ) from err


def comet_scores(
    model,
    sources: list[str],
    hypotheses: list[str],
    references: list[str],
    batch_size: int = 16,
    gpus: int = 0,
) -> tuple[list[float], float]:
    """Score segments with COMET's own `predict`; return (segment scores, system score). The
    system score is the mean of the segment scores, so the segments give its standard error.

    Runs in-process (`num_workers=0`: no dataloader worker processes, which matters inside Ray
    workers and with torch.set_num_threads(1)) and without progress bar or Lightning banner."""
    if not (len(sources) == len(hypotheses) == len(references)):
        raise ValueError(
            f"comet_scores needs equally many sources, hypotheses and references, got "
            f"{len(sources)}, {len(hypotheses)} and {len(references)}"
        )
    if not sources:
        raise ValueError("comet_scores got no segments to score")
    samples = [
        {"src": s, "mt": h, "ref": r}
        for s, h, r in zip(sources, hypotheses, references, strict=True)
    ]
    with quiet():
        out = model.predict(
            samples, batch_size=batch_size, gpus=gpus, progress_bar=False, num_workers=0
        )
    return [float(s) for s in out.scores], float(out.system_score)
