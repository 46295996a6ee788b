"""Where a sweep's shared files live: a local folder, or a bucket (`s3://`, `gs://`) that every node
of a cluster reads and writes.

Shared: the published checkpoints (`checkpoints/dp_<D_p>/`), the tokenizer (`tokenizer/`), the
watcher's state (`watcher_state.json`) and Ray's own run state (`ray/`: pretraining's recovery
checkpoints, the Tune experiment). Buckets are reached
through pyarrow's filesystems, the ones Ray Train and Tune use for their storage_path, with the
same credentials: the standard environment variables (AWS_ACCESS_KEY_ID..., AWS_ENDPOINT_URL) or the
node's instance role; never the spec.

Every node works on local copies under `SweepFolder.root`: for a local folder that is the folder
itself; for a bucket, a cache on the node (RAYSWEEP_CACHE, default ~/.cache/raysweep) filled on
first use.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 16 << 20  # bytes per read/write when copying to and from a bucket


def is_remote(storage: str) -> bool:
    """A bucket URI (s3://, gs://, ...) rather than a folder of this machine."""
    return "://" in storage and not storage.startswith("file://")


def cache_root() -> Path:
    return Path(os.environ.get("RAYSWEEP_CACHE", "~/.cache/raysweep")).expanduser()


@dataclass(frozen=True)
class SweepFolder:
    """A sweep's shared folder, named by the two spec fields that place it; the one object that
    knows whether it is a bucket or a folder of this machine (SweepSpec.folder makes one)."""

    storage: str
    """The spec's storage: a bucket URI, or an absolute local folder (the loader resolves it)."""
    name: str
    """The sweep's name: its subfolder of `storage`."""

    @property
    def remote(self) -> bool:
        return is_remote(self.storage)

    @property
    def root(self) -> Path:
        """This node's copy: the folder itself, or for a bucket a cache on the node."""
        if self.remote:
            return cache_root() / re.sub(r"[^\w.-]+", "_", self.storage) / self.name
        return Path(self.storage) / self.name

    @property
    def uri(self) -> str:
        """The shared folder as the user knows it: a bucket URI or a local folder."""
        return f"{self.storage.rstrip('/')}/{self.name}" if self.remote else str(self.root)

    @property
    def ray_path(self) -> str:
        """storage_path for Ray Train and Tune: a bucket URI, or an absolute local folder."""
        return f"{self.uri}/ray" if self.remote else str((self.root / "ray").resolve())

    def bucket(self) -> Bucket | None:
        """The sweep's bucket, or None when its storage is a local folder."""
        return Bucket(self.uri) if self.remote else None

    def write_json(self, relative: str, data: dict) -> None:
        """A small JSON file of the shared folder: on a bucket one PUT (whole or absent), locally
        write_json_atomic; either way never read half-written."""
        import json

        bucket = self.bucket()
        if bucket is not None:
            bucket.write_bytes(relative, json.dumps(data, indent=2, sort_keys=True).encode())
            return
        (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / relative, data)

    def read_json(self, relative: str) -> dict | None:
        """write_json's file, or None where there is none."""
        import json

        bucket = self.bucket()
        if bucket is not None:
            return json.loads(bucket.read_bytes(relative)) if bucket.size(relative) is not None else None
        path = self.root / relative
        return json.loads(path.read_text()) if path.exists() else None


class Bucket:
    """A sweep's folder in a bucket, addressed by paths relative to it ("checkpoints/dp_.../x")."""

    def __init__(self, uri: str):
        import pyarrow.fs

        self.uri = uri
        self.fs, self.base = pyarrow.fs.FileSystem.from_uri(uri)

    def _path(self, relative: str) -> str:
        return f"{self.base}/{relative}".rstrip("/")

    def folders(self, relative: str) -> list[str]:
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self._path(relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.Directory)

    def files(self, relative: str) -> list[str]:
        """Names of the files in a folder of the bucket (not its subfolders')."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self._path(relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.File)

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
        # Streams in chunks (weights are gigabytes: never all in RAM), several files at a time.
        pyarrow.fs.copy_files(self._path(relative), str(local.resolve()), source_filesystem=self.fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem(),
                              chunk_size=_CHUNK)

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
