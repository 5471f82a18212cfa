"""A request cache on shared storage (any fsspec URL: s3://, gs://, a cluster file system): one object per answer.

    cache = SharedRequestCache("s3://lab/seke-cache")       # credentials from the environment / fsspec config
    SVUAMCAnnotator(..., cache_dir="s3://lab/seke-cache")    # the same, through RequestCache.in_folder

Why objects and not a database: machines that share nothing but a bucket can share answers with no lock server.
Each answer is a write-once object at `{url}/v1/{key[:2]}/{key}.json` (the key is `request_key`, as in the SQLite
cache), created with an exclusive write (S3's `If-None-Match: *`, `O_EXCL` on a file system): two machines racing
on one request both pay for it once, the first answer stays, and every reader sees that one. An object holds its
key and the sha256 of its value; a reader that finds anything else (a torn write on a file system, a foreign file)
treats it as missing, so a damaged entry costs a request, never a wrong answer, and is replaced by the next put.

A local SQLite cache (`RequestCache`) sits in front as a read-through layer: what this machine has read or written
once is never fetched again. Credentials (in the environment, fsspec config or `storage_options`) are pickled to
the workers that need them but never enter a key, a value, a repr, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec

from seke_hf.llm.cache import CACHE_FILE, RequestCache, default_cache_dir

logger = logging.getLogger(__name__)

LAYOUT = "v1"
"""The object layout version: `{url}/v1/{key[:2]}/{key}.json`."""

_KEY = re.compile(r"^[0-9a-f]{64}$")


def is_url(location: str | os.PathLike | None) -> bool:
    """True for an fsspec URL other than a local path (`s3://...`, `gs://...`, `memory://...`)."""
    return isinstance(location, str) and "://" in location and not location.startswith("file://")


def public_url(url: str) -> str:
    """`url` without any `user:password@` part: what may appear in a repr, a log or an error."""
    return re.sub(r"(://)[^/@]*@", r"\1", url)


class SharedRequestCache:
    """Key -> JSON value store of write-once objects under an fsspec URL, with a local SQLite read-through layer.

    The interface of `RequestCache` (get, put, values_since, len, close; pickles without open connections), so
    `ChatBackend` and the annotator use either. `local=False` reads every answer from the shared store.
    """

    def __init__(
        self,
        url: str,
        *,
        local: RequestCache | bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        if local is True:
            digest = hashlib.sha256(public_url(self.url).encode()).hexdigest()[:16]
            local = RequestCache(default_cache_dir() / "shared" / digest / CACHE_FILE)
        self.local: RequestCache | None = None if local is False else local  # (an empty cache is falsy: len 0)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._base = ""

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem, opened on first use (in each process: workers unpickle the URL and options only)."""
        if self._fs is None:
            self._fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
            self._base = f"{root.rstrip('/')}/{LAYOUT}"
        return self._fs

    def _path(self, key: str) -> str:
        if not _KEY.match(key):
            raise ValueError(f"not a request key (64 hex digits): {key[:80]!r}")
        self.fs  # noqa: B018  (sets _base)
        return f"{self._base}/{key[:2]}/{key}.json"

    # -- the RequestCache interface --------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        if self.local is not None and (value := self.local.get(key)) is not None:
            return value
        value = self.fetch(key)
        if value is not None and self.local is not None:
            self.local.put(key, value)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store `value` unless an intact answer to `key` is already there (then that one stays: write-once)."""
        self.create(key, value)

    def create(self, key: str, value: dict[str, Any]) -> bool:
        """`put`, saying whether this call stored the answer (False: another writer's answer was there first)."""
        path = self._path(key)
        data = _encode(key, value)
        created = True
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, data, mode="create")
        except FileExistsError:  # another writer was first: theirs stays, and is what this machine reads from now on
            stored = self.fetch(key)
            if stored is None:  # a damaged object: replace it (any intact answer will do)
                self.fs.pipe_file(path, data)
            created, value = stored is None, stored or value
        if self.local is not None:
            self.local.put(key, value)
        return created

    def values_since(self, timestamp: float) -> Iterator[dict[str, Any]]:
        """Values of the objects written at or after `timestamp` (by any machine): a listing, then one read each
        (16 at a time). Object stores keep whole seconds, so an answer stored in the second before counts too."""
        recent = [Path(path).stem for path, info in self._objects().items() if _recent(info, timestamp)]
        with ThreadPoolExecutor(16) as pool:
            values = list(pool.map(self.fetch, recent))
        return (value for value in values if value is not None)

    def __len__(self) -> int:
        return len(self._objects())

    def __iter__(self) -> Iterator[str]:
        """The keys stored (a listing of the store)."""
        return (Path(path).stem for path in self._objects())

    def close(self) -> None:
        if self.local is not None:
            self.local.close()

    # -- objects ---------------------------------------------------------------------------------------------------
    def fetch(self, key: str) -> dict[str, Any] | None:
        """The stored answer to `key` from the shared store itself (not the local layer), None if absent or damaged."""
        path = self._path(key)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        value = _decode(key, data)
        if value is None:
            logger.warning("shared request cache: ignoring a damaged entry %s", key)
        return value

    def _objects(self) -> dict[str, dict[str, Any]]:
        fs = self.fs
        fs.invalidate_cache()
        if not fs.exists(self._base):
            return {}
        found = fs.find(self._base, detail=True)
        return {path: info for path, info in found.items() if _KEY.match(Path(path).stem) and path.endswith(".json")}

    # -- pickling and display --------------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "storage_options": self.storage_options,
            "local": False if self.local is None else self.local,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], local=state["local"], storage_options=state["storage_options"])

    def __repr__(self) -> str:
        return f"SharedRequestCache({public_url(self.url)!r})"


def _encode(key: str, value: dict[str, Any]) -> bytes:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    entry = {"key": key, "sha256": hashlib.sha256(text.encode()).hexdigest(), "value": text}
    return json.dumps(entry, ensure_ascii=False).encode()


def _decode(key: str, data: bytes) -> dict[str, Any] | None:
    """The value of an intact entry for `key`, else None (torn, foreign or for another key)."""
    try:
        entry = json.loads(data)
        text = entry["value"]
        if entry["key"] != key or hashlib.sha256(text.encode()).hexdigest() != entry["sha256"]:
            return None
        value = json.loads(text)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def _recent(info: Mapping[str, Any], timestamp: float) -> bool:
    modified = _modified(info)
    return modified is None or modified + 1 > timestamp


def _modified(info: Mapping[str, Any]) -> float | None:
    """An object's modification time as a time.time() value (S3 `LastModified`, a file's `mtime`)."""
    stamp = info.get("LastModified") or info.get("mtime") or info.get("updated") or info.get("created")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, (int, float)):
        return float(stamp)
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
