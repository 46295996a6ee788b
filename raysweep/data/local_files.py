"""Local data files, read through `datasets`, and the rows they must hold: a bad file is a
SpecError naming the spec field, the file, the line (or row) and what was expected (the formats
are listed in raysweep.data.sources)."""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from raysweep.spec import SpecError


def short_error(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


# --------------------------------------------------------------------------------------------------
# Rows: what a monolingual or parallel row must hold


class BadRow(Exception):
    """A row that breaks its format; the caller adds where it is (field, file, line)."""


def document_text(row: dict, blank_ok: bool) -> str | None:
    """The text of a monolingual row; None for a blank one where blanks are allowed (.txt, hub)."""
    text = row.get("text")
    if text is None:
        fields = sorted(k for k, v in row.items() if v is not None)
        raise BadRow(f'has no "text" field (its fields: {fields})')
    if not isinstance(text, str):
        raise BadRow(f'has a "text" that is not a string ({text!r})')
    if not text.strip():
        if blank_ok:
            return None
        raise BadRow('has an empty "text"')
    return text


def translation_pair(row: dict, source_lang: str, target_lang: str) -> tuple[str, str]:
    """(source, target) of a parallel row, in the WMT layout or with source/target fields."""
    translation = row.get("translation")
    if translation is not None:
        if not isinstance(translation, dict):
            raise BadRow(f'has a "translation" that is not a mapping ({translation!r})')
        have = sorted(k for k, v in translation.items() if v is not None)
        if source_lang not in have or target_lang not in have:
            raise BadRow(f'has a "translation" with languages {have}, but the task needs '
                          f'{source_lang!r} (source_lang) and {target_lang!r} (target_lang)')
        names = (f"translation.{source_lang}", f"translation.{target_lang}")
        values = (translation[source_lang], translation[target_lang])
    elif "source" in row or "target" in row:
        names, values = ("source", "target"), (row.get("source"), row.get("target"))
    else:
        fields = sorted(k for k, v in row.items() if v is not None)
        raise BadRow(f'has fields {fields}, but the task needs a "translation" with '
                      f'{source_lang!r} (source_lang) and {target_lang!r} (target_lang), '
                      f'or "source" and "target"')
    for name, value in zip(names, values):
        if not isinstance(value, str) or not value.strip():
            raise BadRow(f'has an empty or missing "{name}" ({value!r})')
    return values


# --------------------------------------------------------------------------------------------------
# Local files

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".tsv": "csv",
             ".txt": "text"}

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


class LocalFile:
    """A local data file, read through `datasets`; on bad input, the SpecError names its line."""

    def __init__(self, path: Path, role: str, field: str, where: str, check_row=None):
        """check_row(row) raises BadRow for a row that breaks the format; the error path uses it
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
                raise self.error("starts with a UTF-8 byte-order mark; save it as UTF-8 without "
                                 "one")
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
                raise self.error(f"could not be read as parquet ({short_error(err)})") from None
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

    def row_error(self, index: int, problem: BadRow) -> SpecError:
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
        """'line N' (1-based) of the index-th row, and that line; 'row N' where there are no
        lines."""
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
            return self.error(f"could not be read as json ({short_error(err)}); every row must "
                              f"have the same fields, with values of the same types")
        if self.suffix == ".tsv":
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    columns = len(line.rstrip("\r\n").split("\t"))
                    if line.strip() and columns != 2:
                        return self.error(f"line {number} has {columns} tab-separated columns "
                                          f"({line.strip()[:80]!r})")
        return self.error(f"could not be read as {_BUILDERS[self.suffix]} ({short_error(err)})")

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
                    except BadRow as bad:
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
