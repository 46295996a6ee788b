"""Importing and running unbabel-comet quietly (shared by loading, scoring and the offline model):
comet, Lightning and torchmetrics print banners, set the root logger and warn on every call."""

from __future__ import annotations

import contextlib
import logging
import warnings

# Lightning prints a banner ("GPU available: ...", "TPU available: ...") and tips on every
# `Trainer`, and COMET's `predict` builds a fresh Trainer per call: silence them at the source.
# COMET logs "Encoder model frozen." at INFO on every load.
_NOISY_LOGGERS = (
    "comet",
    "pytorch_lightning",
    "lightning",
    "lightning.pytorch",
    "lightning_fabric",
    "lightning.fabric",
)


@contextlib.contextmanager
def quiet():
    """Mute Lightning's and COMET's loggers (for good: only they log there) and, inside the
    block, the known-harmless warnings of the comet/torchmetrics/Lightning stack."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # torchmetrics 0.10 and comet import pkg_resources (deprecated by setuptools).
        warnings.filterwarnings("ignore", message=".*pkg_resources is deprecated.*")
        # Lightning's advice to add dataloader workers: we run in-process on purpose.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*num_workers.*")
        # SWIG bindings (sentencepiece, imported by transformers) on Python 3.11+.
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, message="builtin type .*__module__"
        )
        # Lightning 2.6 on torch 2.13 uses the deprecated torch.utils._pytree.LeafSpec.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
        yield


def import_comet():
    """Import comet lazily: it pulls in Lightning and transformers (seconds), and only
    evaluation needs it.

    `import comet` calls `logging.basicConfig(level=INFO)`, which would turn on INFO logging
    for the whole host process (Ray, MLflow, ...); undo that on the root logger."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    with quiet():
        import comet
    root.setLevel(level)
    root.handlers[:] = handlers
    return comet
