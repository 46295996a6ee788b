"""COMET scoring through the real `unbabel-comet` code path, with an offline tiny model.

Evaluation always goes through `comet.load_from_checkpoint` -> `model.predict`, exactly as with
the published checkpoints (`Unbabel/wmt22-comet-da`). Demos and tests cannot reach the hub, so
`build_tiny_comet` makes a randomly initialised, few-kB COMET `RegressionMetric` entirely
locally (own Unigram tokenizer, small XLM-R encoder) and saves it in COMET's on-disk layout
(`hparams.yaml` + `checkpoints/model.ckpt`). Its scores are meaningless but come from the very
code that scores real models, so every plumbing bug shows up offline.

`evaluation.comet_model` may be `tiny-local`, a local checkpoint (directory or `.ckpt`), or a hub
id; a model that cannot be loaded fails at once with one `RuntimeError` sentence.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import shutil
import unicodedata
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

TINY_MODEL = "tiny-local"

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
def _quiet():
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


def _comet():
    """Import comet lazily: it pulls in Lightning and transformers (seconds), and only
    evaluation needs it.

    `import comet` calls `logging.basicConfig(level=INFO)`, which would turn on INFO logging
    for the whole host process (Ray, MLflow, ...); undo that on the root logger."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    with _quiet():
        import comet
    root.setLevel(level)
    root.handlers[:] = handlers
    return comet


# --------------------------------------------------------------------------------------------------
# Tiny offline model


# A few common words per language (ASCII spellings), enough for a ~400-piece vocabulary.
_WORDS = {
    "en": "the a dog cat house tree river city friend teacher child book letter garden window "
    "morning evening night small big old new green red quiet happy sees likes reads writes opens "
    "finds buys takes today tomorrow always never slowly quickly near under",
    "de": "der die das ein eine Hund Katze Haus Baum Fluss Stadt Freund Lehrer Kind Buch Brief "
    "Garten Fenster Morgen Abend Nacht klein gross alt neu gruen rot still froh sieht mag liest "
    "schreibt oeffnet findet kauft nimmt heute morgen immer nie langsam schnell",
    "fr": "le la un une chien chat maison arbre riviere ville ami professeur enfant livre lettre "
    "jardin fenetre matin soir nuit petit grand vieux nouveau vert rouge calme heureux voit aime "
    "lit ecrit ouvre trouve achete prend aujourd'hui demain toujours jamais lentement vite",
    "ro": "un o caine pisica casa copac rau oras prieten profesor copil carte scrisoare gradina "
    "fereastra dimineata seara noapte mic mare vechi nou verde rosu linistit fericit vede iubeste "
    "citeste scrie deschide gaseste cumpara ia azi maine mereu niciodata incet repede",
}


def _training_sentences() -> list[str]:
    """A small deterministic multilingual corpus, only so the tokenizer has real pieces."""
    sentences = []
    for words in (w.split() for w in _WORDS.values()):
        n = len(words)
        for i in range(60):
            picked = [words[(i * k * 7 + k * k * 3 + i) % n] for k in range(1, 8)]
            sentences.append(" ".join(picked).capitalize() + ".!?"[i % 3])
    return sentences


def _unigram_vocab(sentences: list[str], specials: list[str], size: int) -> list[tuple[str, float]]:
    """A Unigram vocabulary (piece, log-probability) estimated from substring counts.

    Not `tokenizers.trainers.UnigramTrainer`: its pieces' scores and order change from run to run
    (hash-map order), so every host would build a different "tiny" model and score differently.
    Counting is reproducible: all characters, then the substrings (up to 6 chars, ties
    alphabetical) of the Metaspace words that cover most text, each scored by its share of it."""
    counts: Counter[str] = Counter()
    for sentence in sentences:
        for word in unicodedata.normalize("NFKC", sentence).split():
            word = "\u2581" + word  # Metaspace's word-start marker
            for i in range(len(word)):
                for j in range(i + 1, min(len(word), i + 6) + 1):
                    counts[word[i:j]] += 1
    chars = sorted(p for p in counts if len(p) == 1)
    longer = sorted((p for p in counts if len(p) > 1), key=lambda p: (-counts[p] * len(p), p))
    pieces = chars + longer[: max(0, size - len(specials) - len(chars))]
    # Weight by length: favours long pieces, as Unigram EM ends up doing.
    mass = {p: counts[p] * len(p) for p in pieces}
    total = sum(mass.values())
    return [(p, 0.0) for p in specials] + [(p, round(math.log(mass[p] / total), 6)) for p in pieces]


def _build_encoder(encoder_dir: Path, seed: int) -> None:
    """Save a Unigram tokenizer and a small random XLM-R encoder into `encoder_dir`."""
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    # XLM-R's special ids (<s>=0 <pad>=1 </s>=2 <unk>=3) follow from the order given here.
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = _unigram_vocab(_training_sentences(), specials, size=400)
    tok = Tokenizer(models.Unigram(vocab, unk_id=specials.index("<unk>")))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(specials)
    # XLM-R framing: "<s> A </s>" and "<s> A </s></s> B </s>".
    tok.post_processor = processors.RobertaProcessing(sep=("</s>", 2), cls=("<s>", 0))
    hf_tok = XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,  # XLM-R offsets positions by pad_id + 1; COMET uses 512.
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = XLMRobertaModel(config, add_pooling_layer=False)
    hf_tok.save_pretrained(encoder_dir)
    encoder.save_pretrained(encoder_dir)


def build_tiny_comet(root: str | Path, seed: int = 0) -> Path:
    """Build (once) a tiny random COMET RegressionMetric under `root`; return its checkpoint path.

    Layout is COMET's own: `root/hparams.yaml` + `root/checkpoints/model.ckpt` (plus the encoder
    in `root/encoder`, which hparams name by absolute path), so `comet.load_from_checkpoint`
    loads it like any published model. The checkpoint is written last and atomically, under a
    file lock: its presence means a finished build, and concurrent callers build it once.
    """
    import torch

    root = Path(root).expanduser().resolve()
    ckpt = root / "checkpoints" / "model.ckpt"
    if ckpt.is_file():
        return ckpt
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ckpt.is_file():  # another process finished while we waited
            return ckpt
        # Leftovers of an interrupted build are not trusted.
        for stale in (root / "encoder", root / "checkpoints", root / ".partial"):
            shutil.rmtree(stale, ignore_errors=True)

        comet = _comet()  # first: it imports transformers quietly
        encoder_dir = root / "encoder"
        _build_encoder(encoder_dir, seed)
        with _quiet(), torch.random.fork_rng():
            torch.manual_seed(seed)
            model = comet.models.RegressionMetric(
                pretrained_model=str(encoder_dir),
                encoder_model="XLM-RoBERTa",
                local_files_only=True,
                hidden_sizes=[64, 32],
                layer="mix",
                layer_transformation="softmax",
                pool="avg",
                dropout=0.1,
            )
        hparams: dict[str, Any] = dict(model.hparams)
        hparams["class_identifier"] = "regression_metric"
        hparams["load_pretrained_weights"] = False  # the checkpoint carries every weight

        # Build checkpoint and hparams in .partial, then publish hparams, then the checkpoint.
        partial = root / ".partial"
        (partial / "checkpoints").mkdir(parents=True)
        from pytorch_lightning import __version__ as pl_version
        from pytorch_lightning.core.saving import save_hparams_to_yaml

        save_hparams_to_yaml(partial / "hparams.yaml", hparams)
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": hparams,
                "pytorch-lightning_version": pl_version,
                "epoch": 0,
                "global_step": 0,
            },
            partial / "checkpoints" / "model.ckpt",
        )
        os.replace(partial / "hparams.yaml", root / "hparams.yaml")
        ckpt.parent.mkdir()
        os.replace(partial / "checkpoints" / "model.ckpt", ckpt)
        shutil.rmtree(partial)
    return ckpt


# --------------------------------------------------------------------------------------------------
# Loading and scoring


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
    comet = _comet()
    local = _local_checkpoint(model)
    try:
        with _quiet():
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
    with _quiet():
        out = model.predict(
            samples, batch_size=batch_size, gpus=gpus, progress_bar=False, num_workers=0
        )
    return [float(s) for s in out.scores], float(out.system_score)
