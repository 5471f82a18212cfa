"""A persistent request cache: SQLite in WAL mode, one row per answered request.

Why SQLite WAL: several processes (`Dataset.map(num_proc=...)`, a re-run beside a still-running job) read and write
the same file safely, and each answer is committed the moment it arrives, so a run killed with SIGKILL loses at most
the requests that were in flight; a re-run sends only what was never answered.

API (used by `ChatBackend` and by the FEAB evaluator)::

    cache = RequestCache(path=None)          # None: default_cache_dir() / "requests.sqlite"
    cache = RequestCache.in_folder(folder)   # folder / "requests.sqlite" (None: default_cache_dir())
    key = request_key({...})                 # sha256 of the canonical JSON of everything that shapes the answer
    cache.get(key) -> dict | None            # the stored JSON value
    cache.put(key, value: dict)              # insert or replace, committed at once
    cache.values_since(timestamp)            # values stored at or after a time.time() (all processes): run totals
    cache.items(); iter(cache)               # everything stored (copying a cache: `seke-hf cache push`)
    len(cache); cache.close()

The key is computed by the caller from the model, the endpoint, the full request content (an image enters through
its data URL, i.e. its bytes, so by hash), the sampling parameters and the sample round. Credentials never enter a
key or a value. Failed requests are never stored, so a later run retries them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE_ENV = "SEKE_HF_CACHE"
"""Environment variable overriding the default cache folder."""

CACHE_FILE = "requests.sqlite"


def default_cache_dir() -> Path:
    """`$SEKE_HF_CACHE` if set, else `~/.cache/seke_hf`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seke_hf"


def request_key(content: Any) -> str:
    """Stable sha256 hex digest of a JSON-serialisable description of a request (dict order does not matter)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RequestCache:
    """Key -> JSON value store backed by one SQLite file in WAL mode; safe across threads and processes.

    Pickles as its path only: the connection is reopened lazily in the receiving process.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / CACHE_FILE
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def in_folder(cls, folder: str | os.PathLike | None = None, **kwargs: Any) -> RequestCache:
        """The cache file (`requests.sqlite`) in `folder`, default `default_cache_dir()`: the one place the annotator
        and the evaluator both look, so one pays for nothing the other asked. A URL of shared storage (`s3://...`)
        gives a `SharedRequestCache` there instead, with the same interface."""
        from seke_hf.llm.shared_cache import SharedRequestCache, is_url

        if is_url(folder):
            return SharedRequestCache(str(folder))
        return cls(Path(folder or default_cache_dir()) / CACHE_FILE, **kwargs)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + self.timeout
            while True:
                conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
                try:
                    _prepare(conn)
                    break
                except sqlite3.OperationalError as e:
                    # Switching a fresh file to WAL needs it alone; SQLite may answer "locked" at once, without
                    # waiting out its busy timeout, when several processes open it together (`map(num_proc=...)`).
                    conn.close()
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            self._conn = conn
        return self._conn

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._connection().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", (key, text, time.time())
            )

    def values_since(self, timestamp: float) -> Iterator[dict[str, Any]]:
        """Values stored at or after `timestamp` by any process: what a run (with all its workers) fetched."""
        with self._lock:
            rows = self._connection().execute("SELECT value FROM responses WHERE created >= ?", (timestamp,)).fetchall()
        return (json.loads(text) for (text,) in rows)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (key, value) stored, for copying a cache elsewhere (`seke-hf cache push`)."""
        with self._lock:
            rows = self._connection().execute("SELECT key, value FROM responses").fetchall()
        return ((key, json.loads(text)) for key, text in rows)

    def __iter__(self) -> Iterator[str]:
        """The keys stored."""
        with self._lock:
            rows = self._connection().execute("SELECT key FROM responses").fetchall()
        return (key for (key,) in rows)

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"])

    def __repr__(self) -> str:
        return f"RequestCache({str(self.path)!r})"


def _prepare(conn: sqlite3.Connection) -> None:
    """WAL mode (persistent in the file, so set once), the table, and the migration of an older cache."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across process kills; WAL keeps it consistent
    conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
    if "created" not in columns:  # a cache written before timestamps were kept
        conn.execute("ALTER TABLE responses ADD COLUMN created REAL")
