"""Where a sweep's shared files live: a local folder, or a bucket (`s3://`, `gs://`) that every node
of a cluster reads and writes.

Shared: the published checkpoints (`checkpoints/dp_<D_p>/`), the tokenizer (`tokenizer/`), the
watcher's state (`watcher_state.json`) and Ray's own run state (`ray/`: pretraining's recovery
checkpoints, the Tune experiment). Buckets are reached
through pyarrow's filesystems, the ones Ray Train and Tune use for their storage_path, with the
same credentials: the standard environment variables (AWS_ACCESS_KEY_ID..., AWS_ENDPOINT_URL) or the
node's instance role; never the spec.

Every node works on local copies under `spec.root`: for a local folder that is the folder itself;
for a bucket, a cache on the node (RAYSWEEP_CACHE, default ~/.cache/raysweep) filled on first use.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # storage sits below the spec: it reads a spec's fields, never imports it
    from raysweep.spec import SweepSpec

_CHUNK = 16 << 20  # bytes per read/write when copying to and from a bucket


def is_remote(storage: str) -> bool:
    """A bucket URI (s3://, gs://, ...) rather than a folder of this machine."""
    return "://" in storage and not storage.startswith("file://")


def cache_root() -> Path:
    return Path(os.environ.get("RAYSWEEP_CACHE", "~/.cache/raysweep")).expanduser()


def local_root(storage: str, name: str) -> Path:
    """This node's folder for a sweep (SweepSpec.root)."""
    if is_remote(storage):
        return cache_root() / re.sub(r"[^\w.-]+", "_", storage) / name
    return Path(storage) / name


def storage_uri(spec: SweepSpec) -> str:
    """The sweep's shared folder, as the user knows it: a bucket URI or a local folder."""
    return f"{spec.storage.rstrip('/')}/{spec.name}" if is_remote(spec.storage) else str(spec.root)


def ray_storage_path(spec: SweepSpec) -> str:
    """storage_path for Ray Train and Tune: a bucket URI, or an absolute local folder."""
    if is_remote(spec.storage):
        return f"{spec.storage.rstrip('/')}/{spec.name}/ray"
    return str((spec.root / "ray").resolve())


class Bucket:
    """A sweep's folder in a bucket, addressed by paths relative to it ("checkpoints/dp_.../x")."""

    def __init__(self, spec: SweepSpec):
        import pyarrow.fs

        self.uri = storage_uri(spec)
        self.fs, self.base = pyarrow.fs.FileSystem.from_uri(self.uri)

    @staticmethod
    def of(spec: SweepSpec) -> Bucket | None:
        """The sweep's bucket, or None when its storage is a local folder."""
        return Bucket(spec) if is_remote(spec.storage) else None

    def _path(self, relative: str) -> str:
        return f"{self.base}/{relative}".rstrip("/")

    def folders(self, relative: str) -> list[str]:
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self._path(relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.Directory)

    def size(self, relative: str) -> int | None:
        """Bytes of a file, None if there is none."""
        import pyarrow.fs

        info = self.fs.get_file_info(self._path(relative))
        return info.size if info.type == pyarrow.fs.FileType.File else None

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self._path(relative)) as f:
            return f.read()

    def write_bytes(self, relative: str, data: bytes) -> None:
        # One PUT: the object appears whole or not at all (what makes a manifest a commit).
        with self.fs.open_output_stream(self._path(relative)) as f:
            f.write(data)

    def upload_folder(self, local: Path, relative: str, skip: tuple[str, ...] = ()) -> None:
        for path in sorted(local.rglob("*")):
            if path.is_file() and path.name not in skip:
                target = self._path(f"{relative}/{path.relative_to(local).as_posix()}")
                with open(path, "rb") as src, self.fs.open_output_stream(target) as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)  # weights are gigabytes: never all in RAM

    def commit_folder(self, local: Path, relative: str, marker: str) -> None:
        """Upload a folder with `marker` last: a reader that finds the marker finds it whole."""
        self.upload_folder(local, relative, skip=(marker,))
        self.write_bytes(f"{relative}/{marker}", (local / marker).read_bytes())

    def download_folder(self, relative: str, local: Path) -> None:
        import pyarrow.fs

        local.mkdir(parents=True, exist_ok=True)
        selector = pyarrow.fs.FileSelector(self._path(relative), recursive=True)
        for info in self.fs.get_file_info(selector):
            if info.type == pyarrow.fs.FileType.File:
                target = local / info.path[len(self._path(relative)) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                with self.fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)

    def fetch_folder(self, relative: str, local: Path, complete: str) -> Path:
        """A local copy of a folder of the bucket, downloaded once per node: into a temporary
        sibling, then renamed into place, so concurrent trials never read a partial copy.
        `complete` names the file whose presence marks a finished copy."""
        import uuid

        if (local / complete).exists():
            return local
        partial = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.partial")
        self.download_folder(relative, partial)
        try:
            partial.rename(local)
        except OSError:  # another trial on this node finished its copy first
            shutil.rmtree(partial, ignore_errors=True)
        return local


def write_json_atomic(path: Path, data: dict) -> None:
    """A local JSON file, written beside and renamed into place: never read half-written."""
    import json

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def write_json(spec: SweepSpec, relative: str, data: dict) -> None:
    """A small JSON file of the sweep's shared folder: on a bucket one PUT (whole or absent),
    locally write_json_atomic; either way never read half-written."""
    import json

    bucket = Bucket.of(spec)
    if bucket is not None:
        bucket.write_bytes(relative, json.dumps(data, indent=2, sort_keys=True).encode())
        return
    (spec.root / relative).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(spec.root / relative, data)


def read_json(spec: SweepSpec, relative: str) -> dict | None:
    """write_json's file, or None where there is none."""
    import json

    bucket = Bucket.of(spec)
    if bucket is not None:
        return json.loads(bucket.read_bytes(relative)) if bucket.size(relative) is not None else None
    path = spec.root / relative
    return json.loads(path.read_text()) if path.exists() else None
