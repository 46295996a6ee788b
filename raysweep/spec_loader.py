"""Reading a sweep spec: YAML -> a checked, immutable raysweep.spec.SweepSpec.

A generic, strict dict -> dataclass builder: unknown fields, missing required ones and values of
the wrong type are errors that name the field's full path (`tasks[0].lrs[1]`); a spec file may
`extends` another (mappings merge, lists replace); `storage` and `tracking_uri` take `${VAR}`
from the environment; relative paths are taken from the spec file's folder. Then the spec checks
itself (SweepSpec.check).
"""

from __future__ import annotations

import dataclasses
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
    ModelSpec,
    PretrainSpec,
    SpecError,
    SweepSpec,
    fail,
)
from raysweep.storage import is_remote


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
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number != int(number):
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


_HIDDEN_FIELDS = {"source_file", "base_dir"}


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
        prefix = f"{path}." if path else ""
        key = unknown[0]
        shown = key if isinstance(key, str) and key.isprintable() and key.strip() == key else repr(key)
        raise SpecError(
            f"{where}: unknown field `{prefix}{shown}`. Expected one of: "
            f"{', '.join(sorted(names))}. Check the spelling (see raysweep/spec.py for what each "
            f"field means); nothing was written."
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                prefix = f"{path}." if path else ""
                raise SpecError(
                    f"{where}: required field `{prefix}{f.name}` is missing. "
                    f"Add it (see raysweep/spec.py for what it means); nothing was written."
                )
            continue
        sub = f"{path}.{f.name}" if path else f.name
        kwargs[f.name] = _convert(data[f.name], hints[f.name], sub, where)
    return cls(**kwargs)


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


def _read_yaml(path: Path, where: str, chain: tuple[str, ...] = ()) -> dict:
    """A spec file's mapping, with the files it `extends` merged underneath it."""
    if not path.is_file():
        if chain:
            raise SpecError(f"{chain[-1]}: field `extends`: {str(path)!r} is not a file. Give the "
                            f"path of a spec YAML file, relative to this one; nothing was written.")
        raise SpecError(f"{where}: spec file not found. Pass the path of a sweep spec YAML file, "
                        f"e.g. jobs/demo.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # safe: builds no Python objects
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SpecError(f"{where}: not valid YAML ({' '.join(str(err).split())}). "
                        f"Fix the syntax; nothing was written.") from None
    if not isinstance(data, dict):
        return data  # _build names what was expected
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        fail(where, "extends", "must be the path of a spec file (relative to this one)", base)
    base_path = (path.parent / base).resolve()
    if str(base_path) in chain:
        fail(where, "extends", "must not form a cycle of files extending each other", base)
    return _merge(_read_yaml(base_path, str(base_path), chain + (where,)), data)


def _merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`: mappings merge key by key, anything else (lists too) replaces."""
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
    if not is_remote(storage) and not os.path.isabs(storage):
        storage = str((base_dir / storage).resolve())
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


def spec_from_dict(data: dict, where: str = "<spec>", base_dir: str | None = None) -> SweepSpec:
    """Build and validate a spec from a dict (tests, notebooks)."""
    spec = _resolve_locations(_build(SweepSpec, data, "", where), Path(base_dir or "."), where)
    spec = _series_tokens_from_files(spec)
    spec.check()
    return spec


def _series_tokens_from_files(spec: SweepSpec) -> SweepSpec:
    """A local folder series whose checkpoints leave out their D_p: read each from its tokens
    file, so the plan is whole before anything runs (raysweep.series.tokens_from_files)."""
    series = spec.series
    if not (series and series.folder and not series.attach and not is_remote(series.folder)
            and any(p.tokens is None for p in series.checkpoints)):
        return spec
    from raysweep.series import tokens_from_files

    return tokens_from_files(spec)
