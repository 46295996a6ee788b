"""The one tokenizer a sweep shares: trained (or loaded) once, saved under the sweep, loaded by
every stage.

Like the paper's single SentencePiece vocabulary over all MC4 languages, the Unigram tokenizer is
trained on a balanced sample of every language: by default those the sweep touches (mixture and
tasks), so that no mixture of the sweep is favoured. Sweeps to be compared with each other need
more: cross-entropy is in nats per token, and two tokenizers make two units. They either train on
the same `tokenizer.train_sources` (the same documents give the same tokenizer when vocab_size is
roomy for them, see _train_unigram), or reuse one saved tokenizer folder (`kind: saved`), which
the sweep copies into its own storage like a trained one.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from raysweep.data.sources import monolingual_source, parallel_splits
from raysweep.data.synthetic import Family
from raysweep.spec import SpecError, SweepSpec

logger = logging.getLogger(__name__)

SPECIALS = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2


def _training_streams(spec: SweepSpec) -> list:
    """What the `unigram` tokenizer reads: `tokenizer.train_sources` when given (then nothing of
    the sweep's own data, so every sweep listing the same sources trains the same tokenizer), else
    each mixture source and each task's training sides."""

    where = spec.source_file or "<spec>"
    if spec.tokenizer.train_sources:
        return [monolingual_source(source, None, Family.of(spec), f"tokenizer.train_sources[{i}]",
                                   where, spec.base_dir).documents(0, 1)
                for i, source in enumerate(spec.tokenizer.train_sources)]
    streams = []
    for field, comp in spec.tokenizer_sources():  # a study's: every candidate's mixture
        source = monolingual_source(comp.source, comp.language, Family.of(spec), field, where,
                                    spec.base_dir)
        streams.append(source.documents(0, 1))
    for i, task in enumerate(spec.tasks):
        splits = parallel_splits(task, Family.of(spec), where, f"tasks[{i}].data", spec.base_dir)
        streams.append(iter([s for s, _ in splits.train]))
        streams.append(iter([t for _, t in splits.train]))
    return streams


def _training_texts(spec: SweepSpec) -> list[str]:
    """Documents from each training stream, in equal shares."""
    streams = _training_streams(spec)
    per_stream = max(1, spec.tokenizer.train_documents // len(streams))
    return [text for stream in streams for text in itertools.islice(stream, per_stream)]


def train_tokenizer(spec: SweepSpec):
    """The sweep's tokenizer in memory: trained (`unigram`), built (`byt5`) or loaded (`hub`,
    `saved`). Nothing is written; save_tokenizer keeps it with the sweep."""
    kind = spec.tokenizer.kind
    if kind == "byt5":
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer(extra_ids=spec.tokenizer.sentinels)
    if kind == "hub":
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(spec.tokenizer.hub_id, trust_remote_code=False)
    if kind == "saved":
        return _load_saved(spec)
    return _train_unigram(spec)


def _train_unigram(spec: SweepSpec):
    """A T5 Unigram tokenizer trained on _training_texts.

    The same documents give the same pieces and ids when vocab_size is roomy for them (the demos:
    ~630 pieces learnt for 1000; tests/test_tokenizer_reuse.py), but not always: when it is tight,
    tokenizers' UnigramTrainer drops single characters and re-adds them at the end in hash-map
    order, which changes from run to run, and so do their ids. (Scores always differ in their last
    digits, from summation order; that changed no segmentation in our checks.) Sweeps that must
    share a tokenizer whatever the settings reuse one saved folder (`kind: saved`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    texts = _training_texts(spec)
    logger.info("training the unigram tokenizer on %d documents (%s)", len(texts),
             ", ".join(spec.tokenizer.train_sources) or "the sweep's mixture and tasks")
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=spec.tokenizer.vocab_size, special_tokens=SPECIALS,
                                      unk_token="<unk>", show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # T5 appends </s> to every sequence.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tokenizer, extra_ids=spec.tokenizer.sentinels,
                           model_input_names=["input_ids", "attention_mask"])


def _load_saved(spec: SweepSpec):
    """The tokenizer saved at `tokenizer.path` (spec validation checked that the folder exists)."""
    folder = spec.tokenizer.saved_folder(spec.base_dir)
    where = spec.source_file or "<spec>"
    wanted = ("Give a saved tokenizer folder, such as another sweep's <storage>/<sweep>/tokenizer, "
              "relative to this spec file's folder; nothing was written.")
    try:
        tokenizer = load_tokenizer(folder)
    except Exception as err:  # noqa: BLE001 (missing or corrupt files: OSError, ValueError, tokenizers' own)
        raise SpecError(f"{where}: field `tokenizer.path`: {str(folder)!r} holds no tokenizer that "
                        f"loads ({type(err).__name__}: {' '.join(str(err).split())[:300]}). "
                        f"{wanted}") from None
    if spec.model.family == "seq2seq" and not sentinel_ids(tokenizer):  # span corruption needs them
        raise SpecError(f"{where}: field `tokenizer.path`: {str(folder)!r} holds a tokenizer "
                        f"without T5's sentinel tokens <extra_id_0>, <extra_id_1>, ..., which "
                        f"an encoder-decoder's pretraining (span corruption) needs. {wanted}")
    logger.info("reusing the saved tokenizer %s (%d tokens)", folder, len(tokenizer))
    return tokenizer


COMPLETE = "tokenizer_config.json"  # written by save_pretrained; uploaded last


def tokenizer_dir(spec: SweepSpec) -> Path:
    """Where this node keeps the sweep's saved tokenizer (a study's candidates share one)."""
    return spec.study_folder.root / "tokenizer"


def fetch_tokenizer(spec: SweepSpec) -> Path:
    """tokenizer_dir, after copying the saved tokenizer from the sweep's bucket if this node has
    none yet (bucket storage); what every stage loads."""
    path, bucket = tokenizer_dir(spec), spec.study_folder.bucket()
    if (bucket is not None and not (path / COMPLETE).exists()
            and bucket.size(f"tokenizer/{COMPLETE}")):
        bucket.fetch_folder("tokenizer", path, complete=COMPLETE)
    return path


def save_tokenizer(spec: SweepSpec, tokenizer) -> None:
    """Save the sweep's tokenizer once; every later stage loads this copy."""
    path = tokenizer_dir(spec)
    if not (path / COMPLETE).exists():
        tmp = path.with_name(path.name + ".tmp")
        tokenizer.save_pretrained(str(tmp))
        tmp.rename(path)  # atomic: a half-saved tokenizer is never loaded
    bucket = spec.study_folder.bucket()
    if bucket is not None and not bucket.size(f"tokenizer/{COMPLETE}"):
        bucket.commit_folder(path, "tokenizer", COMPLETE)


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
