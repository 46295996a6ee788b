"""Data sources behind one interface, named by a URI-like string in the spec.

    synthetic:LANG            monolingual stream of an offline synthetic language
    synthetic:SRC-TGT         parallel corpus of two synthetic languages
    file:PATH                 a local file read through `datasets` (JSONL, JSON, TSV, Parquet, text)
    hf:DATASET[:CONFIG]       a Hugging Face hub dataset (streamed for pretraining)

Monolingual sources yield documents for one shard of the workers; parallel sources give the
train/dev/test splits of a task. Local files and hub datasets go through the same `datasets`
code, so what works on a file works at cloud scale.

Local file formats, chosen by extension:

    monolingual (pretrain.mixture[i].source)
        .jsonl / .json   rows {"text": ...} (JSON Lines, or one JSON array of rows)
        .parquet         a `text` column
        .txt             one document per line; blank lines are not documents and are skipped
    parallel (tasks[i].data)
        .jsonl / .json   rows {"translation": {SRC: ..., TGT: ...}} (the hub's WMT layout)
                         or {"source": ..., "target": ...}
        .tsv             source<TAB>target, no header; quotes are ordinary characters
        .parquet         a `translation` struct column, or `source` and `target` columns

A bad file is a SpecError naming the spec field, the file, the line (or row) and what was expected:
a missing or empty text, a missing language, a malformed line are errors, never skipped silently.
Hub task datasets (WMT layout) need train, validation and test splits; `tasks[i].train_examples`
training pairs are drawn from a seeded `datasets` shuffle of the train split (see parallel_splits).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from raysweep.data import synthetic
from raysweep.data.local_files import (
    BadRow,
    LocalFile,
    document_text,
    short_error,
    translation_pair,
)
from raysweep.spec import SourceName, SpecError


def _resolve(path: str, base_dir: str | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _hub_error(name: SourceName, field: str, where: str, err: BaseException) -> SpecError:
    config = f" (config {name.config!r})" if name.config else ""
    return SpecError(
        f"{where}: field `{field}`: the hub dataset {name.location!r}{config} could not be loaded "
        f"({short_error(err)}). Check the dataset id, the config and the network (downloads need "
        f"HF_HUB_OFFLINE unset), or use a `file:` or `synthetic:` source; nothing was written.")


# --------------------------------------------------------------------------------------------------
# Monolingual


class MonolingualSource:
    """Documents of one language, readable as disjoint shards."""

    language: str | None

    def documents(self, shard: int, num_shards: int, skip: int = 0) -> Iterator[str]:
        """Document i of the source goes to shard i mod num_shards; the shard's documents from
        its `skip`-th on (a resumed run skips what it has read)."""
        raise NotImplementedError


class SyntheticMonolingual(MonolingualSource):
    def __init__(self, language: str, family: synthetic.Family):
        self.language, self.family = language, family

    def documents(self, shard: int, num_shards: int, skip: int = 0) -> Iterator[str]:
        for index in itertools.count(shard + skip * num_shards, num_shards):  # skip: no cost
            yield synthetic.monolingual_document(self.language, index, self.family)


class DatasetMonolingual(MonolingualSource):
    """A `datasets` dataset (local file or hub, streamed) with a `text` column."""

    def __init__(self, dataset, language: str | None, name: str, file: LocalFile | None = None):
        self.dataset, self.language, self.name, self.file = dataset, language, name, file

    def documents(self, shard: int, num_shards: int, skip: int = 0) -> Iterator[str]:
        """The documents of one shard, each once, then the end (the pretraining pipeline reports
        a source that runs out before the schedule ends). Skipping reads the rows skipped (a
        streamed file or hub dataset has no index to seek by), but tokenizes none of them."""
        return itertools.islice(self._documents(shard, num_shards), skip, None)

    def _documents(self, shard: int, num_shards: int) -> Iterator[str]:
        from datasets.distributed import split_dataset_by_node

        # Works for in-memory and streamed datasets alike: each rank reads disjoint rows.
        rows = split_dataset_by_node(self.dataset, rank=shard, world_size=num_shards)
        for row in self.file.rows(rows) if self.file else rows:
            if (text := self._text(row)) is not None:
                yield text

    @property
    def _blank_ok(self) -> bool:
        """Blank rows are skipped in a .txt file and on the hub, and an error elsewhere."""
        return self.file is None or self.file.suffix == ".txt"

    def _text(self, row: dict) -> str | None:
        """A row's document (None: a blank row where allowed); a bad row raises its error."""
        try:
            return document_text(row, self._blank_ok)
        except BadRow as bad:
            raise self._bad_row_error(bad) from None

    def check_rows(self) -> None:
        """Read every row once; a bad one raises the error that names it. In Arrow batches: a
        batch whose `text` column holds strings only (non-blank, where blanks are not allowed)
        needs no look at its rows one by one, which would take minutes for a large corpus."""
        import pyarrow as pa

        batches = self.dataset.with_format("arrow").iter(batch_size=10_000)
        for table in self.file.rows(batches) if self.file else batches:
            text = table.column("text") if "text" in table.column_names else None
            strings = text is not None and (pa.types.is_string(text.type)
                                            or pa.types.is_large_string(text.type))
            if strings and text.null_count == 0 and (self._blank_ok or not _has_blank(text)):
                continue
            for row in table.to_pylist():  # find the bad row, to name it
                self._text(row)

    def token_count(self, shard: int, num_shards: int, tokenizer, enough: int | None = None) -> int:
        """Tokens one shard gives the packing (</s> included), counted until `enough` (then a
        count >= enough, so checking a large corpus costs what the schedule needs of it, not its
        size)."""
        total, docs = 0, self.documents(shard, num_shards)
        # batched: the fast tokenizer is parallel
        while batch := list(itertools.islice(docs, 1000)):
            total += sum(len(ids) for ids in tokenizer(batch)["input_ids"])
            if enough is not None and total >= enough:
                break
        return total

    def _bad_row_error(self, bad: BadRow) -> Exception:
        if self.file is None:  # hub: found while pretraining runs
            return RuntimeError(f"pretraining source {self.name}: a row {bad}; expected a "
                                f"`text` column of strings.")
        # Shards interleave rows: find the first bad row of the whole file to name its line.
        for index, row in enumerate(self.file.rows(self.dataset)):
            try:
                self.file.check_row(row)
            except BadRow as first:
                return self.file.row_error(index, first)
        return self.file.error(str(bad))


def _has_blank(text) -> bool:
    """Whether an Arrow column of strings holds one that is empty or only whitespace."""
    import pyarrow.compute as pc

    return len(text) > 0 and pc.min(pc.utf8_length(pc.utf8_trim_whitespace(text))).as_py() == 0


def monolingual_source(text: str, language: str | None, family: synthetic.Family, field: str,
                       where: str, base_dir: str | None = None) -> MonolingualSource:
    name = SourceName.parse(text, field, where)
    if name.kind == "synthetic":
        if "-" in name.location:
            raise SpecError(f"{where}: field `{field}` is {text!r}, a parallel source; "
                            f"pretraining needs a monolingual one such as `synthetic:en`; "
                            f"nothing was written.")
        return SyntheticMonolingual(name.location, family)
    if name.kind == "file":
        # Streamed like the hub: memory stays flat however large the file.
        path = _resolve(name.location, base_dir)
        file = LocalFile(path, "monolingual", field, where,
                          check_row=lambda row: document_text(row, blank_ok=path.suffix == ".txt"))
        return DatasetMonolingual(file.load(streaming=True), language, text, file)
    import datasets  # hub: streamed, so pretraining starts without downloading the corpus

    try:
        dataset = datasets.load_dataset(name.location, name.config, split="train", streaming=True)
    except Exception as err:  # noqa: BLE001 (offline, unknown id or config, no train split)
        raise _hub_error(name, field, where, err) from None
    return DatasetMonolingual(dataset, language or name.config, text)


# --------------------------------------------------------------------------------------------------
# Parallel


@dataclass
class ParallelSplits:
    train: list[tuple[str, str]]  # in a deterministic shuffled order: D_f takes a prefix
    dev: list[tuple[str, str]]
    test: list[tuple[str, str]]


def _leaked(dev: list[tuple[str, str]], test: list[tuple[str, str]]) -> set[str]:
    """Source sentences of dev and test: a training pair with one of them would leak the answer."""
    return {source.strip() for source, _ in dev + test}


def parallel_splits(task, family: synthetic.Family, where: str, field: str,
                    base_dir: str | None = None) -> ParallelSplits:
    """The task's splits, identical for every checkpoint (only D_p varies between them).

    Synthetic and file sources: the first test_examples pairs are the test set, the next
    dev_examples the dev set, all the rest is training data. Hub sources (WMT layout): the first
    rows of the `test` and `validation` splits, and `train_examples` training pairs drawn by
    `datasets`' seeded `shuffle` of the `train` split (the split is never copied into a list).
    Training pairs whose source sentence is also in dev or test are dropped, and the training
    pairs come in a deterministic seeded order, so D_f takes a prefix."""
    name = SourceName.parse(task.data, field, where)
    n_test, n_dev, n_train = task.test_examples, task.dev_examples, task.train_examples
    if name.kind == "hf":
        return _hub_splits(task, name, family.seed, where, field)
    if name.kind == "synthetic":
        src, _, tgt = name.location.partition("-")
        if not tgt:
            raise SpecError(f"{where}: field `{field}` is {task.data!r}, expected a parallel "
                            f"source such as `synthetic:{task.source_lang}-{task.target_lang}`; "
                            f"nothing was written.")
        if (src, tgt) != (task.source_lang, task.target_lang):
            raise SpecError(f"{where}: field `{field}` is {task.data!r} but the task translates "
                            f"{task.source_lang} -> {task.target_lang}; nothing was written.")
        pairs = [synthetic.parallel_pair(src, tgt, i, family)
                 for i in range(n_test + n_dev + n_train)]
    else:
        file = LocalFile(_resolve(name.location, base_dir), "parallel", field, where,
                         check_row=lambda row: translation_pair(row, task.source_lang,
                                                                task.target_lang))
        pairs = []
        for index, row in enumerate(file.rows(file.load(streaming=False))):
            try:
                pairs.append(translation_pair(row, task.source_lang, task.target_lang))
            except BadRow as bad:
                raise file.row_error(index, bad) from None
    if len(pairs) < n_test + n_dev + 1:
        raise SpecError(f"{where}: field `{field}`: {task.data!r} has {len(pairs)} pairs, fewer "
                        f"than test_examples + dev_examples + 1 = {n_test + n_dev + 1}; "
                        f"nothing was written.")
    test, dev, train = pairs[:n_test], pairs[n_test:n_test + n_dev], pairs[n_test + n_dev:]
    leaked = _leaked(dev, test)
    train = [pair for pair in train if pair[0].strip() not in leaked]
    random.Random(family.seed).shuffle(train)
    return ParallelSplits(train, dev, test)


def _hub_splits(task, name: SourceName, seed: int, where: str, field: str) -> ParallelSplits:
    import datasets

    try:
        splits = datasets.load_dataset(name.location, name.config)
    except Exception as err:  # noqa: BLE001 (offline, unknown id or config)
        raise _hub_error(name, field, where, err) from None
    missing = [s for s in ("train", "validation", "test") if s not in splits]
    if missing:
        raise SpecError(f"{where}: field `{field}`: the hub dataset {task.data!r} has the splits "
                        f"{sorted(splits)}, but a task needs train, validation (dev) and test "
                        f"(missing: {', '.join(missing)}). Use a dataset with all three, or a "
                        f"`file:` source; nothing was written.")

    def take(split: str, rows: Iterable[dict], count: int, skip: set[str]) -> list[tuple[str, str]]:
        pairs = []
        for index, row in enumerate(rows):
            if len(pairs) == count:
                break
            try:
                pair = translation_pair(row, task.source_lang, task.target_lang)
            except BadRow as bad:
                raise SpecError(f"{where}: field `{field}`: row {index + 1} of the {split} split "
                                f"of {task.data!r} {bad}; nothing was written.") from None
            if pair[0].strip() not in skip:
                pairs.append(pair)
        return pairs

    test = take("test", splits["test"], task.test_examples, set())
    dev = take("validation", splits["validation"], task.dev_examples, set())
    # datasets shuffles an index mapping: the train split stays on disk, only n_train pairs are
    # read.
    train = take("train", splits["train"].shuffle(seed=seed), task.train_examples,
                 _leaked(dev, test))
    return ParallelSplits(train, dev, test)
