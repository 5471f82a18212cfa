"""A corpus on object storage (`s3://lab/RAF-DB`, `gs://...`, any fsspec URL): the few path operations builders use.

`RemotePath` answers the `pathlib.Path` calls the builders and `raw_files` make (`/`, `name`, `is_dir`, `glob`,
`read_bytes`, ...) through one fsspec filesystem, so a builder reads a remote corpus with the code it reads a local
one with; only `raw_files` dispatches on it. Files are opened buffered, one object at a time: nothing downloads the
whole corpus. Credentials come from where fsspec finds them (environment, fsspec config), never from the URL we
print: `str()` is the URL without credentials (`seke_hf.urls.public_url`).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

from seke_hf.urls import public_url


def is_url(path: object) -> bool:
    """Whether `path` is a URL string such as `s3://bucket/key` (a `RemotePath` is one already)."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


@dataclass(frozen=True)
class RemoteEntry:
    """One listing entry, like an `os.DirEntry`."""

    name: str
    path: RemotePath
    kind: str

    def is_file(self) -> bool:
        return self.kind == "file"

    def is_dir(self) -> bool:
        return self.kind == "directory"


class RemotePath:
    """A file or folder on an fsspec filesystem, with the `pathlib.Path` subset the corpus builders use."""

    __slots__ = ("fs", "path")

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str):
        self.fs, self.path = fs, path.rstrip("/")

    @classmethod
    def from_url(cls, url: str) -> RemotePath:
        fs, path = url_to_fs(url)
        return cls(fs, path)

    @property
    def url(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    def __str__(self) -> str:
        return public_url(self.url)

    def __fspath__(self) -> str:
        """The URL, so that `os.fspath` passes a remote corpus on as `data_dir` (fsspec reads it back)."""
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and (self.fs, self.path) == (other.fs, other.path)

    def __lt__(self, other: RemotePath) -> bool:
        return self.path < other.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __truediv__(self, part: str) -> RemotePath:
        return RemotePath(self.fs, f"{self.path}/{str(part).strip('/')}")

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.fs, posixpath.dirname(self.path))

    def with_suffix(self, suffix: str) -> RemotePath:
        return RemotePath(self.fs, posixpath.splitext(self.path)[0] + suffix)

    def expanduser(self) -> RemotePath:
        return self

    def relative_to(self, other: RemotePath) -> str:
        return posixpath.relpath(self.path, other.path)

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def is_dir(self) -> bool:
        return self.fs.isdir(self.path)

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        return iter(RemotePath(self.fs, path) for path in sorted(self.fs.glob(f"{self.path}/{pattern}")))

    def rglob(self, pattern: str) -> Iterator[RemotePath]:
        """Files and folders at any depth below this one whose name matches `pattern` (one recursive listing)."""
        found = self.fs.find(self.path, withdirs=True)
        matches = (p for p in sorted(found) if p != self.path and fnmatch(posixpath.basename(p), pattern))
        return iter(RemotePath(self.fs, p) for p in matches)

    def entries(self) -> list[RemoteEntry]:
        """The folder's entries, sorted by name (one listing request per page)."""
        listing = self.fs.ls(self.path, detail=True)
        entries = [
            RemoteEntry(posixpath.basename(info["name"].rstrip("/")), RemotePath(self.fs, info["name"]), info["type"])
            for info in listing
            if info["name"].rstrip("/") != self.path
        ]
        return sorted(entries, key=lambda e: e.name)

    def stat(self) -> os.stat_result:
        """Size and modification time, as `Path.stat` gives them (mtime 0 where the store keeps none)."""
        info = self.fs.info(self.path)
        mtime = info.get("LastModified") or info.get("mtime") or 0
        mtime_ns = int((mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)) * 1e9)
        return os.stat_result((0, 0, 0, 0, 0, 0, info.get("size") or 0, 0, mtime_ns // 10**9, 0))

    def iterdir(self) -> Iterator[RemotePath]:
        return iter(entry.path for entry in self.entries())

    def open(self, mode: str = "rb") -> IO[Any]:
        return self.fs.open(self.path, mode)

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def forget_listings(self) -> None:
        """Drop cached listings of this folder and below it, so that a new load sees the store as it is now."""
        self.fs.invalidate_cache(self.path)  # this folder and its parents
        for key in [key for key in getattr(self.fs, "dircache", {}) if key.startswith(f"{self.path}/")]:
            self.fs.dircache.pop(key, None)


def remote_fingerprint(root: RemotePath, paths: Iterable[str]) -> str:
    """`raw_files.stat_fingerprint` for a remote corpus, from object listings only (no object is read).

    A label file contributes its size and ETag (or modification time); a folder, the names, sizes and ETags of every
    object below it, from one recursive listing (about one request per 1,000 objects) since object stores have no
    folder mtime. The URL enters without credentials.
    """
    h = hashlib.sha256(str(root).encode())
    for rel in sorted(paths):
        matches = list(root.glob(rel)) if any(c in rel for c in "*?[") else [root / rel]
        for path in matches:
            listing = path.fs.find(path.path, detail=True, withdirs=False) if path.is_dir() else {}
            if not listing:
                try:
                    listing = {path.path: path.fs.info(path.path)}
                except FileNotFoundError:
                    h.update(f"{rel}:absent".encode())
                    continue
            for name in sorted(listing):
                h.update(f"{posixpath.relpath(name, root.path)}:{_version(listing[name])}".encode())
    return h.hexdigest()[:16]


def _version(info: dict[str, Any]) -> str:
    """What changes when an object is rewritten: its size plus ETag, generation or modification time."""
    tag = next((info[key] for key in ("ETag", "etag", "generation", "LastModified", "mtime") if info.get(key)), "")
    return f"{info.get('size')}:{tag}"


def upload_folder(local: str | os.PathLike, url: str) -> None:
    """Copy the tree under `local` to `url` (one object per file), e.g. a build staged on local disk."""
    fs, path = url_to_fs(url)
    fs.put(f"{os.fspath(local).rstrip('/')}/", path, recursive=True)
