"""The one tokenizer a sweep shares: trained once, saved under the sweep, loaded by every stage.

Like the paper's single SentencePiece vocabulary over all MC4 languages, the Unigram tokenizer is
trained on a balanced sample of *every* language the sweep touches (mixture and tasks), so that no
mixture is favoured by its tokenizer: only the pretraining data differs between sweeps.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from raysweep.spec import SweepSpec

SPECIALS = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2


def _training_texts(spec: SweepSpec):
    """Documents from each mixture source and each task's training sides, in equal shares."""
    from raysweep.data.sources import monolingual_source, parallel_splits
    from raysweep.data.synthetic import Family

    streams = []
    for i, comp in enumerate(spec.pretrain.mixture):
        source = monolingual_source(comp.source, comp.language, Family.of(spec),
                                    f"pretrain.mixture[{i}].source", spec.source_file, spec.base_dir)
        streams.append(source.documents(0, 1))
    for i, task in enumerate(spec.tasks):
        splits = parallel_splits(task, Family.of(spec), spec.source_file, f"tasks[{i}].data", spec.base_dir)
        streams.append(iter([s for s, _ in splits.train]))
        streams.append(iter([t for _, t in splits.train]))
    per_stream = max(1, spec.tokenizer.train_documents // len(streams))
    return [text for stream in streams for text in itertools.islice(stream, per_stream)]


def train_tokenizer(spec: SweepSpec):
    """Train the sweep's tokenizer in memory (deterministic for a given spec)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import T5TokenizerFast

    kind = spec.tokenizer.kind
    if kind == "byt5":
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer(extra_ids=spec.tokenizer.sentinels)
    if kind == "hub":
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(spec.tokenizer.hub_id, trust_remote_code=False)
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=spec.tokenizer.vocab_size, special_tokens=SPECIALS,
                                      unk_token="<unk>", show_progress=False)
    tokenizer.train_from_iterator(_training_texts(spec), trainer=trainer)
    # T5 appends </s> to every sequence.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tokenizer, extra_ids=spec.tokenizer.sentinels,
                           model_input_names=["input_ids", "attention_mask"])


COMPLETE = "tokenizer_config.json"  # written by save_pretrained; uploaded last


def tokenizer_dir(spec: SweepSpec) -> Path:
    """Where this node keeps the sweep's saved tokenizer."""
    return spec.root / "tokenizer"


def fetch_tokenizer(spec: SweepSpec) -> Path:
    """tokenizer_dir, after copying the saved tokenizer from the sweep's bucket if this node has
    none yet (bucket storage); what every stage loads."""
    from raysweep.storage import Bucket

    path, bucket = tokenizer_dir(spec), Bucket.of(spec)
    if bucket is not None and not (path / COMPLETE).exists() and bucket.size(f"tokenizer/{COMPLETE}"):
        bucket.fetch_folder("tokenizer", path, complete=COMPLETE)
    return path


def save_tokenizer(spec: SweepSpec, tokenizer) -> None:
    """Save the sweep's tokenizer once; every later stage loads this copy."""
    from raysweep.storage import Bucket

    path = tokenizer_dir(spec)
    if not (path / COMPLETE).exists():
        tmp = path.with_name(path.name + ".tmp")
        tokenizer.save_pretrained(str(tmp))
        tmp.rename(path)  # atomic: a half-saved tokenizer is never loaded
    bucket = Bucket.of(spec)
    if bucket is not None and not bucket.size(f"tokenizer/{COMPLETE}"):
        bucket.upload_folder(path, "tokenizer", skip=(COMPLETE,))
        bucket.write_bytes(f"tokenizer/{COMPLETE}", (path / COMPLETE).read_bytes())


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    # A tokenizer is data (tokenizer.json); code named by its config (auto_map) is never run.
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


def sentinel_ids(tokenizer) -> list[int]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... in order."""
    ids = []
    for i in itertools.count():
        token = f"<extra_id_{i}>"
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            return ids
        ids.append(token_id)
