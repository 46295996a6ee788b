"""Reading a sweep spec: YAML -> a checked, immutable raysweep.spec.SweepSpec.

A generic, strict dict -> dataclass builder: unknown fields, missing required ones and values of
the wrong type are errors that name the field's full path (`tasks[0].lrs[1]`); a spec file may
`extends` another, or a list of others merged in order (mappings merge, lists replace, later
files win); `storage` and `tracking_uri` take `${VAR}` from the environment; relative paths are
taken from the spec file's folder. Then the spec checks itself (SweepSpec.check).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from raysweep.spec import (
    MODEL_PRESETS,
    CandidateSpec,
    ModelSpec,
    PretrainSpec,
    SpecError,
    SweepSpec,
    fail,
)
from raysweep.storage import Location, absolute


def _convert(value: Any, hint: Any, path: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, path, where)
    if origin is typing.Literal:  # a choice; True is not the choice 1
        if not any(value == choice and type(value) is type(choice) for choice in args):
            fail(where, path, f"must be one of {', '.join(map(str, args))}", value)
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, where)
    if origin is tuple:
        if not isinstance(value, list):
            fail(where, path, "must be a list", value)
        return tuple(_convert(v, args[0], f"{path}[{i}]", where) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            fail(where, path, "must be a mapping", value)
        return {str(k): _convert(v, args[1], f"{path}.{k}", where) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            fail(where, path, "must be true or false", value)
        return value
    if hint is int:
        # YAML reads 1e6 as a string and 1.0e6 as a float: accept whole numbers written either way.
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if (isinstance(number, bool) or not isinstance(number, (int, float))
                or number != int(number)):
            fail(where, path, "must be a whole number", value)
        return int(number)
    if hint is float:
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            fail(where, path, "must be a number", value)
        return float(number)
    if hint is str:
        if not isinstance(value, str) or not value:
            fail(where, path, "must be a non-empty string", value)
        return value
    raise TypeError(f"spec field type {hint} is not handled")  # a bug in this module, not the spec


_HIDDEN_FIELDS = {"source_file", "base_dir", "candidate", "study_sources"}
"""SweepSpec's fields that the code sets (load_spec, candidate_spec), never a YAML file."""


def _build(cls: type, data: Any, path: str, where: str) -> Any:
    if not isinstance(data, dict):
        fail(where, path or "(top level)", "must be a mapping of fields", data)
    if cls is ModelSpec and "preset" in data:  # the preset's dims, then the fields written out
        preset = data["preset"]
        if not isinstance(preset, str) or preset not in MODEL_PRESETS:
            fail(where, f"{path}.preset", f"must be one of {', '.join(MODEL_PRESETS)}", preset)
        data = {**MODEL_PRESETS[preset], **data}
    if cls is PretrainSpec and isinstance(data.get("checkpoints"), dict):
        data = {**data, "checkpoints": _log_spaced(data["checkpoints"], data.get("tokens"),
                                                   f"{path}.checkpoints", where)}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - _HIDDEN_FIELDS
    unknown = sorted((key for key in data if key not in names), key=str)
    if unknown:
        raise SpecError(_unknown_field(cls, unknown[0], names, path, where))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                prefix = f"{path}." if path else ""
                raise SpecError(
                    f"{where}: required field `{prefix}{f.name}` is missing. "
                    f"Add it (see raysweep/spec/ for what it means); nothing was written."
                )
            continue
        sub = f"{path}.{f.name}" if path else f.name
        kwargs[f.name] = _convert(data[f.name], hints[f.name], sub, where)
    return cls(**kwargs)


def _unknown_field(cls: type, key: Any, names: set[str], path: str, where: str) -> str:
    """The paragraph for a field `cls` does not have. A study's candidate differs from the others
    only in its pretraining data, so a shared section written into one gets the reason why."""
    prefix = f"{path}." if path else ""
    readable = isinstance(key, str) and key.isprintable() and key.strip() == key
    shown = key if readable else repr(key)
    shared = {f.name for f in dataclasses.fields(SweepSpec)} - _HIDDEN_FIELDS - names
    if cls is CandidateSpec and key in shared:
        why = {"model": "a study compares candidates on one model and one tokenizer: set "
                        "model/tokenizer at the top level, for every candidate",
               "pretrain": "a candidate's pretraining data is its own `mixture` (and its budget "
                           "its `tokens`), set on the candidate; the rest of `pretrain` "
                           "(schedule, batch size, lr, workers...) is the study's: set it at the "
                           "top level"}
        why["tokenizer"] = why["model"]
        reason = why.get(key, f"a study's candidates share everything but their pretraining "
                              f"data: set `{key}` at the top level, for every candidate")
        return (f"{where}: field `{prefix}{shown}` cannot be set for one candidate: {reason}. A "
                f"candidate has only {', '.join(sorted(names))}; nothing was written.")
    return (f"{where}: unknown field `{prefix}{shown}`. Expected one of: "
            f"{', '.join(sorted(names))}. Check the spelling (see raysweep/spec/ for what each "
            f"field means); nothing was written.")


def _log_spaced(form: dict, budget: Any, path: str, where: str) -> list[int]:
    """`checkpoints: {first: N, count: K}` -> K D_p spaced evenly in log from N to the budget."""
    if set(form) != {"first", "count"}:
        fail(where, path, "must be a list of D_p, or {first: N, count: K} (K log-spaced D_p from N "
              "to pretrain.tokens)", form)
    first = _convert(form["first"], int, f"{path}.first", where)
    count = _convert(form["count"], int, f"{path}.count", where)
    if budget is None:
        fail(where, path.rsplit(".", 1)[0] + ".tokens", "must be set when checkpoints are "
              "log-spaced (it is the last one)", None)
    last = _convert(budget, int, path.rsplit(".", 1)[0] + ".tokens", where)
    if count < 2 or not 0 < first < last:
        fail(where, path, f"must have count >= 2 and 0 < first < pretrain.tokens ({last})", form)
    return [round(first * (last / first) ** (i / (count - 1))) for i in range(count)]


def _read_yaml(path: Path, where: str, chain: tuple[Path, ...] = ()) -> dict:
    """A spec file's mapping, with the files it `extends` merged underneath it, in order.

    `chain` is the files being read below this one (resolved paths), so a file that comes back
    to one of them is named as a cycle instead of recursing until Python gives up."""
    if not path.is_file():  # only the top file: the files it extends are checked by _bases
        raise SpecError(f"{where}: spec file not found. Pass the path of a sweep spec YAML file, "
                        f"e.g. jobs/demo.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe: builds no Python objects
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SpecError(f"{where}: not valid YAML ({' '.join(str(err).split())}). "
                        f"Fix the syntax; nothing was written.") from None
    if not isinstance(data, dict):
        return data  # _build names what was expected
    chain = chain + (path.resolve(),)
    merged: dict = {}
    for field, base_path in _bases(data.pop("extends", None), path, where, chain):
        base = _read_yaml(base_path, str(base_path), chain)
        if not isinstance(base, dict):
            fail(where, field, f"must name a spec file that holds a mapping of fields ({base_path} "
                  f"holds {type(base).__name__})", str(base_path))
        merged = _merge(merged, base)
    return _merge(merged, data)


def _bases(extends: Any, path: Path, where: str, chain: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """The files `extends` names, checked before any is read: one path or a list of paths, each
    relative to the file that names it, so a fragment can be shared from any folder. A list
    merges in order (later entries win), which is how a job combines fragments that each hold
    one part (a model, a mixture) instead of copying one of them. Each entry is merged whole,
    with what it extends: two entries that extend one base would apply it twice, the second time
    over the first entry, so a fragment listed after another should extend nothing (as
    jobs/paper's mixtures do not). Returns (field, path) pairs, the field (`extends[1]`) for
    errors about that file."""
    if extends is None:
        return []
    if isinstance(extends, str):
        entries = [("extends", extends)]
    elif isinstance(extends, list):
        entries = [(f"extends[{i}]", entry) for i, entry in enumerate(extends)]
    else:
        fail(where, "extends", "must be the path of a spec file (relative to this one) or a list "
              "of them", extends)
    bases = []
    for field, entry in entries:
        if not isinstance(entry, str) or not entry:
            fail(where, field, "must be the path of a spec file (relative to this one)", entry)
        base = (path.parent / entry).resolve()
        if not base.is_file():
            raise SpecError(f"{where}: field `{field}`: {str(base)!r} is not a file. Give the "
                            f"path of a spec YAML file, relative to this one; nothing was written.")
        if base in chain:
            cycle = " -> ".join(str(p) for p in chain[chain.index(base):] + (base,))
            fail(where, field, f"must not form a cycle of files extending each other ({cycle})",
                 entry)
        bases.append((field, base))
    return bases


def _merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`: mappings merge key by key, anything else replaces. Lists
    replace too (a job's mixture or task list is its own, not its base's plus more)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def _expand_env(value: str | None, field_name: str, where: str) -> str | None:
    """`${VAR}` in storage and tracking_uri: bucket names and server addresses come from the
    environment (the cluster's), so one spec runs anywhere and holds no secrets."""
    if value is None or "${" not in value:
        return value
    missing = [name for name in re.findall(r"\$\{(\w+)\}", value) if name not in os.environ]
    if missing:
        fail(where, field_name, f"uses the environment variable {', '.join(missing)}, which is "
              f"not set; set it (on a cluster, cluster.yaml's head_start_ray_commands export it) "
              f"or write the value", value)
    return re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], value)


def _resolve_locations(spec: SweepSpec, base_dir: Path, where: str) -> SweepSpec:
    storage = _expand_env(spec.storage, "storage", where)
    if storage.startswith("file://"):  # a local folder as a URI: file:///abs/path
        path = urllib.parse.unquote(urllib.parse.urlparse(storage).path)
        if urllib.parse.urlparse(storage).netloc not in ("", "localhost") or not path:
            fail(where, "storage", "must name a folder of this machine when it is a file:// URI "
                  "(file:///data/sweeps: three slashes, an absolute path)", spec.storage)
        storage = path
    if absolute(storage, base_dir) != storage:
        storage = absolute(storage, base_dir)
        if "/runtime_resources/working_dir_files/" in storage:
            # `ray job submit --working-dir .` runs the spec from Ray's temporary copy of the
            # folder: results written beside it would vanish with the Ray session.
            fail(where, "storage", f"resolves to {storage}, inside Ray's temporary copy of the "
                  f"job's working dir, which disappears with the Ray session; for a submitted "
                  f"job give an absolute folder or a bucket (s3://...)", spec.storage)
    return dataclasses.replace(spec, storage=storage,
                               tracking_uri=_expand_env(spec.tracking_uri, "tracking_uri", where),
                               source_file=where, base_dir=str(base_dir.resolve()))


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a spec file. Raises SpecError with one clear paragraph."""
    path = Path(path)
    where = str(path)
    spec = _build(SweepSpec, _read_yaml(path, where), "", where)
    spec = _series_tokens_from_files(_resolve_locations(spec, path.parent, where))
    spec.check()
    return spec


def read_spec_data(path: str | os.PathLike) -> dict:
    """A spec file's fields with the files it `extends` merged in, nothing else resolved or
    checked: for a tool that edits a job and writes it somewhere else, where the job's relative
    `extends` would no longer find its base files (tests/test_demo_pair.py's shortened demos)."""
    path = Path(path)
    data = _read_yaml(path, str(path))
    if not isinstance(data, dict):
        fail(str(path), "(top level)", "must be a mapping of fields", data)
    return data


def spec_from_dict(data: dict, where: str = "<spec>", base_dir: str | None = None) -> SweepSpec:
    """Build and validate a spec from a dict (tests, notebooks)."""
    spec = _resolve_locations(_build(SweepSpec, data, "", where), Path(base_dir or "."), where)
    spec = _series_tokens_from_files(spec)
    spec.check()
    return spec


def _series_tokens_from_files(spec: SweepSpec) -> SweepSpec:
    """A local folder series whose checkpoints leave out their D_p: read each from the tokens
    file in its folder (`series.tokens_file`: `{"tokens": N}`), so the plan is whole before
    anything runs. Raises SpecError naming the checkpoint. (A series elsewhere gives its D_p in
    the spec: SeriesSpec.check says so.)"""
    series = spec.series
    if not (series and series.folder and not series.attach
            and any(p.tokens is None for p in series.checkpoints)):
        return spec
    folder = Location(series.folder, spec.base_dir)
    if folder.remote:
        return spec
    points = []
    for i, point in enumerate(series.checkpoints):
        if point.tokens is None:
            relative = f"{point.folder}/{series.tokens_file}"
            try:
                tokens = int(json.loads(folder.read_bytes(relative))["tokens"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise SpecError(
                    f"{spec.source_file or '<spec>'}: field `series.checkpoints[{i}].tokens` is "
                    f"left out, so it is read from {folder.name_of(relative)}, which does not "
                    f"give it ({type(err).__name__}: {err}). Write {{\"tokens\": N}} there (the "
                    f"tokens the checkpoint has seen), or give `tokens` in the spec; nothing was "
                    f"written.") from None
            point = dataclasses.replace(point, tokens=tokens)
        points.append(point)
    return dataclasses.replace(spec, series=dataclasses.replace(series, checkpoints=tuple(points)))
