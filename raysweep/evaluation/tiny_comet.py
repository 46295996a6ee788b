"""`tiny-local`: a randomly initialised, few-kB COMET `RegressionMetric` built entirely offline
(its own Unigram tokenizer, a small XLM-R encoder), saved in COMET's on-disk layout
(`hparams.yaml` + `checkpoints/model.ckpt`) and loaded by raysweep.evaluation.comet_model like
any published model. Its scores are meaningless (the laws say so and fit none); it exists so
that demos and tests run the real COMET code without a hub.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from raysweep.evaluation.comet_runtime import import_comet, quiet

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

        comet = import_comet()  # first: it imports transformers quietly
        encoder_dir = root / "encoder"
        _build_encoder(encoder_dir, seed)
        with quiet(), torch.random.fork_rng():
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
