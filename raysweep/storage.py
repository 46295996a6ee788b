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

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs

_CHUNK = 16 << 20  # bytes per read/write when copying to and from a bucket


def is_remote(storage: str) -> bool:
    """A bucket URI (s3://, gs://, ...) rather than a folder of this machine."""
    return "://" in storage and not storage.startswith("file://")


def absolute(location: str, base_dir: Path) -> str:
    """A bucket URI as it is; a local folder as an absolute path (a relative one is taken from
    `base_dir`, the spec file's folder)."""
    if is_remote(location) or os.path.isabs(location):
        return location
    return str((base_dir / location).resolve())


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

    def local_copy(self) -> SweepFolder:
        """This node's copy of the folder as a folder of its own (the folder itself if local)."""
        if not self.remote:
            return self
        # The cache's folder of this storage, whatever the name (a study candidate's has
        # slashes: <study>/candidates/<candidate>).
        return SweepFolder(str(cache_root() / re.sub(r"[^\w.-]+", "_", self.storage)), self.name)

    def folders(self, relative: str) -> list[str]:
        """Names of the subfolders of a folder (none if it does not exist)."""
        bucket = self.bucket()
        if bucket is not None:
            return bucket.folders(relative)
        folder = self.root / relative
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def size(self, relative: str) -> int | None:
        """Bytes of a file, None if there is none."""
        bucket = self.bucket()
        if bucket is not None:
            return bucket.size(relative)
        path = self.root / relative
        return path.stat().st_size if path.is_file() else None

    def read_bytes(self, relative: str) -> bytes:
        bucket = self.bucket()
        return (bucket.read_bytes(relative) if bucket is not None
                else (self.root / relative).read_bytes())

    def local_path(self, relative: str) -> Path | None:
        """A file's path on this machine, for a local folder; None in a bucket."""
        return None if self.remote else self.root / relative

    def write_json(self, relative: str, data: dict) -> None:
        """A small JSON file of the shared folder: on a bucket one PUT (whole or absent), locally
        write_json_atomic; either way never read half-written."""
        bucket = self.bucket()
        if bucket is not None:
            bucket.write_bytes(relative, json.dumps(data, indent=2, sort_keys=True).encode())
            return
        (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / relative, data)

    def read_json(self, relative: str) -> dict | None:
        """write_json's file, or None where there is none."""
        return json.loads(self.read_bytes(relative)) if self.size(relative) is not None else None


class Bucket:
    """A sweep's folder in a bucket, addressed by paths relative to it ("checkpoints/dp_.../x")."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.base = pyarrow.fs.FileSystem.from_uri(uri)

    def _path(self, relative: str) -> str:
        return f"{self.base}/{relative}".rstrip("/")

    def folders(self, relative: str) -> list[str]:
        selector = pyarrow.fs.FileSelector(self._path(relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.Directory)

    def files(self, relative: str) -> list[str]:
        """Names of the files in a folder of the bucket (not its subfolders')."""
        selector = pyarrow.fs.FileSelector(self._path(relative), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pyarrow.fs.FileType.File)

    def size(self, relative: str) -> int | None:
        """Bytes of a file, None if there is none."""
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
        local.mkdir(parents=True, exist_ok=True)
        # Streams in chunks (weights are gigabytes: never all in RAM), several files at a time.
        pyarrow.fs.copy_files(self._path(relative), str(local.resolve()), source_filesystem=self.fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem(),
                              chunk_size=_CHUNK)

    def fetch_folder(self, relative: str, local: Path, complete: str) -> Path:
        """A local copy of a folder of the bucket, downloaded once per node: into a temporary
        sibling, then renamed into place, so concurrent trials never read a partial copy.
        `complete` names the file whose presence marks a finished copy."""
        if (local / complete).exists():
            return local
        partial = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.partial")
        self.download_folder(relative, partial)
        try:
            partial.rename(local)
        except OSError:  # another trial on this node finished its copy first
            shutil.rmtree(partial, ignore_errors=True)
        return local


class Location:
    """A folder of files the user names, on this machine or in a bucket, read the same way (a
    series' checkpoints made elsewhere). Local paths are taken from `base_dir` (the spec file's
    folder). Each checkpoint is a subfolder (`sub`)."""

    def __init__(self, uri: str, base_dir: str | None = None):
        self.uri = uri
        self.bucket = Bucket(uri) if is_remote(uri) else None
        path = Path(uri)
        self.path = None if self.bucket else (path if path.is_absolute()
                                              else Path(base_dir or ".") / path)

    @property
    def remote(self) -> bool:
        return self.bucket is not None

    def files(self, sub: str) -> list[str]:
        """Names of the files in a subfolder. A local one that is missing raises OSError; in a
        bucket a missing folder has no files."""
        if self.bucket:
            return self.bucket.files(sub)
        return sorted(p.name for p in (self.path / sub).iterdir())

    def read_bytes(self, relative: str) -> bytes:
        return (self.bucket.read_bytes(relative) if self.bucket
                else (self.path / relative).read_bytes())

    def name_of(self, relative: str) -> str:
        """A file of the folder as the user names it: a bucket URI, or a path of this machine."""
        return f"{self.uri.rstrip('/')}/{relative}" if self.bucket else str(self.path / relative)

    def snapshot(self, sub: str) -> dict[str, tuple] | None:
        """A subfolder's files: name -> (size,) in a bucket (an object is whole or absent, so its
        size tells enough), (size, modification time) locally; None if there is no subfolder."""
        if self.bucket:
            return {name: (self.bucket.size(f"{sub}/{name}"),)
                    for name in self.bucket.files(sub)} or None
        folder = self.path / sub
        if not folder.is_dir():
            return None
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                if p.is_file()}

    def local(self, sub: str, downloads: Path, complete: str) -> Path:
        """A subfolder on this machine, for loading: the folder itself, or a bucket's copy under
        `downloads` (fetched once; `complete` names the file a finished copy holds)."""
        if self.bucket:
            return self.bucket.fetch_folder(sub, downloads / sub, complete=complete)
        return self.path / sub

    def drop_local(self, sub: str, downloads: Path) -> None:
        """Remove what `local` downloaded (a local folder is the user's: left be)."""
        if self.bucket:
            shutil.rmtree(downloads / sub, ignore_errors=True)

    def small_files(self, sub: str, skip_suffixes: tuple[str, ...], into: Path) -> Path:
        """The subfolder with the files whose names do not end in `skip_suffixes` (a tokenizer
        without the weights): a bucket's copied into `into`, a local one as it is."""
        if not self.bucket:
            return self.path / sub
        for name in self.bucket.files(sub):
            if not name.endswith(skip_suffixes):
                (into / name).write_bytes(self.bucket.read_bytes(f"{sub}/{name}"))
        return into


def write_json_atomic(path: Path, data: dict) -> None:
    """A local JSON file, written beside and renamed into place: never read half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
