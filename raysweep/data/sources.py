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

import csv
import itertools
import json
import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from raysweep.data import synthetic
from raysweep.spec import SourceName, SpecError


def _resolve(path: str, base_dir: str | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


def _hub_error(name: SourceName, field: str, where: str, err: BaseException) -> SpecError:
    config = f" (config {name.config!r})" if name.config else ""
    return SpecError(
        f"{where}: field `{field}`: the hub dataset {name.location!r}{config} could not be loaded "
        f"({_short(err)}). Check the dataset id, the config and the network (downloads need "
        f"HF_HUB_OFFLINE unset), or use a `file:` or `synthetic:` source; nothing was written.")


# --------------------------------------------------------------------------------------------------
# Rows: what a monolingual or parallel row must hold


class _BadRow(Exception):
    """A row that breaks its format; the caller adds where it is (field, file, line)."""


def _document(row: dict, blank_ok: bool) -> str | None:
    """The text of a monolingual row; None for a blank one where blanks are allowed (.txt, hub)."""
    text = row.get("text")
    if text is None:
        fields = sorted(k for k, v in row.items() if v is not None)
        raise _BadRow(f'has no "text" field (its fields: {fields})')
    if not isinstance(text, str):
        raise _BadRow(f'has a "text" that is not a string ({text!r})')
    if not text.strip():
        if blank_ok:
            return None
        raise _BadRow('has an empty "text"')
    return text


def _pair(row: dict, source_lang: str, target_lang: str) -> tuple[str, str]:
    """(source, target) of a parallel row, in the WMT layout or with source/target fields."""
    translation = row.get("translation")
    if translation is not None:
        if not isinstance(translation, dict):
            raise _BadRow(f'has a "translation" that is not a mapping ({translation!r})')
        have = sorted(k for k, v in translation.items() if v is not None)
        if source_lang not in have or target_lang not in have:
            raise _BadRow(f'has a "translation" with languages {have}, but the task needs '
                          f'{source_lang!r} (source_lang) and {target_lang!r} (target_lang)')
        names = (f"translation.{source_lang}", f"translation.{target_lang}")
        values = (translation[source_lang], translation[target_lang])
    elif "source" in row or "target" in row:
        names, values = ("source", "target"), (row.get("source"), row.get("target"))
    else:
        fields = sorted(k for k, v in row.items() if v is not None)
        raise _BadRow(f'has fields {fields}, but the task needs a "translation" with '
                      f'{source_lang!r} (source_lang) and {target_lang!r} (target_lang), '
                      f'or "source" and "target"')
    for name, value in zip(names, values):
        if not isinstance(value, str) or not value.strip():
            raise _BadRow(f'has an empty or missing "{name}" ({value!r})')
    return values


# --------------------------------------------------------------------------------------------------
# Local files

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".tsv": "csv", ".txt": "text"}

_EXPECTED = {
    "monolingual": {
        ".jsonl": 'one JSON object per line such as {"text": "..."}',
        ".json": 'JSON Lines or a JSON array of objects such as {"text": "..."}',
        ".parquet": "a `text` column of non-empty strings",
        ".txt": "one document per line",
    },
    "parallel": {
        ".jsonl": 'one JSON object per line such as {"translation": {"en": "...", "de": "..."}} '
                  'or {"source": "...", "target": "..."}',
        ".json": 'JSON Lines or a JSON array of objects such as {"translation": {"en": "...", '
                 '"de": "..."}} or {"source": "...", "target": "..."}',
        ".parquet": "a `translation` struct column or `source` and `target` columns",
        ".tsv": "two tab-separated columns per line, source<TAB>target, no header",
    },
}


class _LocalFile:
    """A local data file, read through `datasets`; on bad input, the SpecError names its line."""

    def __init__(self, path: Path, role: str, field: str, where: str, check_row=None):
        """check_row(row) raises _BadRow for a row that breaks the format; the error path uses it
        to name the row that `datasets` could not read (a value of the wrong type, say)."""
        self.path, self.role, self.field, self.where = path, role, field, where
        self.check_row = check_row
        self.suffix = path.suffix.lower()
        if not path.is_file():
            raise SpecError(f"{where}: field `{field}` names the data file {str(path)!r}, which "
                            f"does not exist. Create it or fix the path; nothing was written.")
        if self.suffix not in _EXPECTED[role]:
            raise SpecError(f"{where}: field `{field}` names {str(path)!r}; expected a "
                            f"{', '.join(_EXPECTED[role])} file; nothing was written.")
        if self.suffix != ".parquet":
            self._check_utf8()
        if self._is_empty():
            raise self.error(f"has no {'documents' if role == 'monolingual' else 'rows'}")

    @property
    def expected(self) -> str:
        return _EXPECTED[self.role][self.suffix]

    def error(self, what: str) -> SpecError:
        return SpecError(f"{self.where}: field `{self.field}`: {str(self.path)!r} {what}; "
                         f"expected {self.expected}; nothing was written.")

    def _check_utf8(self) -> None:
        """Text files must be UTF-8 (what `datasets` reads): another encoding is named with the
        line and byte where it shows, instead of a decoding error from deep inside `datasets`."""
        import codecs

        with open(self.path, "rb") as f:
            head = f.read(4)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise self.error("is UTF-16 text (it starts with a UTF-16 byte-order mark); save "
                                 "it as UTF-8")
            if head.startswith(codecs.BOM_UTF8):
                raise self.error("starts with a UTF-8 byte-order mark; save it as UTF-8 without one")
            f.seek(0)
            for number, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    raise self.error(f"is not UTF-8 text: line {number}, column {bad.start + 1} "
                                     f"has the byte 0x{line[bad.start]:02x} ({bad.reason}); save "
                                     f"it as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None

    def _is_empty(self) -> bool:
        # datasets fails obscurely (StopIteration) on an empty file: say it plainly instead.
        if self.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                return pq.read_metadata(self.path).num_rows == 0
            except (OSError, ValueError) as err:  # not a parquet file at all (ArrowInvalid)
                raise self.error(f"could not be read as parquet ({_short(err)})") from None
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return not any(line.strip() for line in f)

    def load(self, streaming: bool):
        import datasets

        kwargs = {}
        if self.suffix == ".tsv":
            # Plain TSV: quotes are text (QUOTE_NONE), and "NA", "null" or "" stay strings.
            kwargs = {"delimiter": "\t", "column_names": ["source", "target"],
                      "quoting": csv.QUOTE_NONE, "na_filter": False, "keep_default_na": False,
                      "features": datasets.Features({"source": datasets.Value("string"),
                                                     "target": datasets.Value("string")})}
        if not streaming:
            # datasets keys its cache of a local file by path and mtime only: a file rewritten
            # within one mtime tick, or copied with an old mtime (cp -p, rsync -t), would load
            # the rows it had before. A cache per content cannot be stale.
            kwargs["cache_dir"] = str(Path(datasets.config.HF_DATASETS_CACHE) / "raysweep-files"
                                      / self._content_digest())
        # Errors must stay one paragraph: datasets' own log of a malformed file (its only message)
        # and progress bars would come first, and _read_error names the line anyway.
        for module in ("json", "csv"):
            logging.getLogger(f"datasets.packaged_modules.{module}.{module}").setLevel(logging.CRITICAL)
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            return datasets.load_dataset(_BUILDERS[self.suffix], data_files=str(self.path),
                                         split="train", streaming=streaming, **kwargs)
        except Exception as err:  # noqa: BLE001 (datasets raises many types for malformed files)
            raise self._read_error(err) from None
        finally:
            if bars:
                datasets.enable_progress_bars()

    def _content_digest(self) -> str:
        import hashlib

        digest = hashlib.blake2b(digest_size=16)
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def rows(self, dataset: Iterable[dict]) -> Iterator[dict]:
        """The dataset's rows; a malformed file (found while streaming) becomes a SpecError."""
        rows = iter(dataset)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 (as in load: many types)
                raise self._read_error(err) from None
            yield row

    def row_error(self, index: int, problem: _BadRow) -> SpecError:
        """The error for the `index`-th row (from 0) that datasets read from this file."""
        where, line = self._position(index)
        columns = len(line.split("\t")) if line is not None else 2
        if self.suffix == ".tsv" and columns != 2:  # pandas pads a short line with empty fields
            return self.error(f"{where} has {columns} tab-separated columns ({line[:80]!r})")
        return self.error(f"{where} {problem}")

    def _is_json_array(self) -> bool:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return f.read(4096).lstrip().startswith("[")

    def _position(self, index: int) -> tuple[str, str | None]:
        """'line N' (1-based) of the index-th row, and that line; 'row N' where there are no lines."""
        if self.suffix == ".parquet" or (self.suffix == ".json" and self._is_json_array()):
            return f"row {index + 1}", None
        # datasets skips blank lines in JSON Lines and TSV (and a .txt line is never a bad row).
        with open(self.path, encoding="utf-8", errors="replace") as f:
            rows = (item for item in enumerate(f, 1) if item[1].strip())
            for number, line in itertools.islice(rows, index, index + 1):
                return f"line {number}", line.rstrip("\r\n")
        return f"row {index + 1}", None

    def _read_error(self, err: BaseException) -> SpecError:
        """datasets could not read the file: find the offending line by reading it ourselves."""
        if self.suffix in (".jsonl", ".json"):
            problem = self._first_bad_json_row()
            if problem:
                return self.error(problem)
            return self.error(f"could not be read as json ({_short(err)}); every row must have "
                              f"the same fields, with values of the same types")
        if self.suffix == ".tsv":
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    columns = len(line.rstrip("\r\n").split("\t"))
                    if line.strip() and columns != 2:
                        return self.error(f"line {number} has {columns} tab-separated columns "
                                          f"({line.strip()[:80]!r})")
        return self.error(f"could not be read as {_BUILDERS[self.suffix]} ({_short(err)})")

    def _first_bad_json_row(self) -> str | None:
        """What is wrong with the first row of a JSON (Lines) file that is not valid JSON, not an
        object, or breaks the format (check_row); None if every row is fine. Streams the lines."""
        with open(self.path, encoding="utf-8", errors="replace") as f:
            if self._is_json_array():
                try:
                    rows = json.load(f)
                except json.JSONDecodeError as bad:
                    return f"line {bad.lineno} is not valid JSON ({bad.msg})"
                if not rows:
                    return "has no rows (an empty JSON array)"
                numbered = ((f"row {index}", row) for index, row in enumerate(rows, 1))
            else:
                numbered = self._json_lines(f)
            for where, row in numbered:
                if isinstance(row, json.JSONDecodeError):
                    return f"{where} is not valid JSON ({row.msg}: {row.doc.strip()[:80]!r})"
                if not isinstance(row, dict):
                    return f"{where} is not a JSON object ({json.dumps(row)[:80]!r})"
                if self.check_row:
                    try:
                        self.check_row(row)
                    except _BadRow as bad:
                        return f"{where} {bad}"
        return None

    @staticmethod
    def _json_lines(f):
        """('line N', the parsed row or its JSONDecodeError) for every non-blank line."""
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield f"line {number}", json.loads(line)
                except json.JSONDecodeError as bad:
                    yield f"line {number}", bad


# --------------------------------------------------------------------------------------------------
# Monolingual


class MonolingualSource:
    """Documents of one language, readable as disjoint shards."""

    language: str | None

    def documents(self, shard: int, num_shards: int) -> Iterator[str]:
        """Document i of the source goes to shard i mod num_shards."""
        raise NotImplementedError


class SyntheticMonolingual(MonolingualSource):
    def __init__(self, language: str, family: synthetic.Family):
        self.language, self.family = language, family

    def documents(self, shard: int, num_shards: int) -> Iterator[str]:
        for index in itertools.count(shard, num_shards):
            yield synthetic.monolingual_document(self.language, index, self.family)


class DatasetMonolingual(MonolingualSource):
    """A `datasets` dataset (local file or hub, streamed) with a `text` column."""

    def __init__(self, dataset, language: str | None, name: str, file: _LocalFile | None = None):
        self.dataset, self.language, self.name, self.file = dataset, language, name, file

    def documents(self, shard: int, num_shards: int) -> Iterator[str]:
        """The documents of one shard, each once, then the end (the pretraining pipeline reports
        a source that runs out before the schedule ends)."""
        from datasets.distributed import split_dataset_by_node

        # Works for in-memory and streamed datasets alike: each rank reads disjoint rows.
        rows = split_dataset_by_node(self.dataset, rank=shard, world_size=num_shards)
        blank_ok = self.file is None or self.file.suffix == ".txt"
        for row in self.file.rows(rows) if self.file else rows:
            try:
                text = _document(row, blank_ok)
            except _BadRow as bad:
                raise self._bad_row_error(bad) from None
            if text is not None:
                yield text

    def token_count(self, shard: int, num_shards: int, tokenizer) -> int:
        """Tokens one shard gives `packed_sequences` (</s> included). Reads every row of the shard,
        so a bad row is found here too; with no tokenizer, it only does that and returns 0."""
        total, docs = 0, self.documents(shard, num_shards)
        while batch := list(itertools.islice(docs, 1000)):  # batched: the fast tokenizer is parallel
            if tokenizer is not None:
                total += sum(len(ids) for ids in tokenizer(batch)["input_ids"])
        return total

    def _bad_row_error(self, bad: _BadRow) -> Exception:
        if self.file is None:  # hub: found while pretraining runs
            return RuntimeError(f"pretraining source {self.name}: a row {bad}; expected a "
                                f"`text` column of strings.")
        # Shards interleave rows: find the first bad row of the whole file to name its line.
        for index, row in enumerate(self.file.rows(self.dataset)):
            try:
                self.file.check_row(row)
            except _BadRow as first:
                return self.file.row_error(index, first)
        return self.file.error(str(bad))


def monolingual_source(text: str, language: str | None, family: synthetic.Family, field: str, where: str,
                       base_dir: str | None = None) -> MonolingualSource:
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
        file = _LocalFile(path, "monolingual", field, where,
                          check_row=lambda row: _document(row, blank_ok=path.suffix == ".txt"))
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
        pairs = [synthetic.parallel_pair(src, tgt, i, family) for i in range(n_test + n_dev + n_train)]
    else:
        file = _LocalFile(_resolve(name.location, base_dir), "parallel", field, where,
                          check_row=lambda row: _pair(row, task.source_lang, task.target_lang))
        pairs = []
        for index, row in enumerate(file.rows(file.load(streaming=False))):
            try:
                pairs.append(_pair(row, task.source_lang, task.target_lang))
            except _BadRow as bad:
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
                pair = _pair(row, task.source_lang, task.target_lang)
            except _BadRow as bad:
                raise SpecError(f"{where}: field `{field}`: row {index + 1} of the {split} split of "
                                f"{task.data!r} {bad}; nothing was written.") from None
            if pair[0].strip() not in skip:
                pairs.append(pair)
        return pairs

    test = take("test", splits["test"], task.test_examples, set())
    dev = take("validation", splits["validation"], task.dev_examples, set())
    # datasets shuffles an index mapping: the train split stays on disk, only n_train pairs are read.
    train = take("train", splits["train"].shuffle(seed=seed), task.train_examples, _leaked(dev, test))
    return ParallelSplits(train, dev, test)
