"""What every section of the spec checks with: `SpecError` (a spec that cannot be run: one
paragraph naming the field), `fail` and `Fields` (which raise it, naming each field in full), and
`SourceName` (a source field's value, parsed)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any


class SpecError(ValueError):
    """A spec that cannot be run. The message is one paragraph naming the field or file."""


def fail(where: str, path: str, expected: str, got: Any) -> typing.NoReturn:
    """Raise the one-paragraph error for field `path` of spec file `where`."""
    raise SpecError(
        f"{where}: field `{path}` {expected}, but the spec has {got!r}. "
        f"Fix that field and run `raysweep validate` again; nothing was written."
    )


@dataclass(frozen=True)
class SourceName:
    """A source field's value, parsed: `synthetic:LANG[-LANG]`, `file:PATH` or `hf:DATASET[:CONFIG]`
    (raysweep.data.sources reads what it names)."""

    kind: str  # synthetic | file | hf
    location: str
    config: str | None = None

    @staticmethod
    def parse(text: str, field: str, where: str) -> SourceName:
        kind, _, rest = text.partition(":")
        if kind not in ("synthetic", "file", "hf") or not rest:
            raise SpecError(
                f"{where}: field `{field}` is {text!r}, expected a source such as "
                f"`synthetic:en`, `synthetic:en-de`, `file:data/train.jsonl` or `hf:wmt14:de-en`; "
                f"nothing was written.")
        if kind == "hf":
            location, _, config = rest.partition(":")
            return SourceName(kind, location, config or None)
        return SourceName(kind, rest)


@dataclass(frozen=True)
class Fields:
    """Where a section's fields are (the spec file, the section's path), so that a section's own
    checks name each field in full: `tasks[1].seeds`, not `seeds`."""

    where: str
    prefix: str = ""

    def at(self, section: str) -> Fields:
        return Fields(self.where, f"{self.prefix}{section}.")

    def fail(self, name: str, expected: str, got: Any) -> typing.NoReturn:
        fail(self.where, f"{self.prefix}{name}", expected, got)

    def positive(self, value: float, name: str) -> None:
        if not value > 0:
            self.fail(name, "must be greater than zero", value)
