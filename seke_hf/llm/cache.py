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
    cache.note_failure()                     # a request failed: results holding failed rows are not final
    cache.failure_mark()                     # the last note_failure's mark (None if none), read-only
    len(cache); cache.close()

The key is computed by the caller from the model, the endpoint, the full request content (an image enters through
its data URL, i.e. its bytes, so by hash), the sampling parameters and the sample round. Credentials never enter a
key or a value. Failed requests are never stored, so a later run retries them.

A broken cache never costs a paid answer and never stops a run without naming the file: a file that cannot be
written is refused when opened, before anything is sent (`CacheError`); a file that is not a database is moved aside
with a warning and a fresh one started; an entry that does not parse is a miss (asked again, then overwritten); an
answer that cannot be stored (disk full, a lock held too long) is kept in memory for the run, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE_ENV = "SEKE_HF_CACHE"
"""Environment variable overriding the default cache folder."""

CACHE_FILE = "requests.sqlite"

logger = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """The request cache cannot be used: names the file and what to do."""


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
        self._unsaved: dict[str, dict[str, Any]] = {}  # answers the file refused: kept for this run
        self._warned: set[str] = set()

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
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._open()
            except sqlite3.DatabaseError as e:
                if isinstance(e, sqlite3.OperationalError):  # locked, read-only, I/O: the file may be fine
                    raise self._error(e) from e
                self._move_aside(e)  # "file is not a database", "malformed": its answers cannot be read anyway
                conn = self._open()
            except OSError as e:
                raise self._error(e) from e
            try:  # refuse a cache that cannot store answers before anything is sent and paid for
                conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('opened', ?)", (str(time.time()),))
            except sqlite3.Error as e:
                conn.close()
                raise self._error(e) from e
            self._conn = conn
        return self._conn

    def _open(self) -> sqlite3.Connection:
        deadline = time.monotonic() + self.timeout
        while True:
            conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
            try:
                _prepare(conn)
                return conn
            except sqlite3.OperationalError as e:
                # Switching a fresh file to WAL needs it alone; SQLite may answer "locked" at once, without
                # waiting out its busy timeout, when several processes open it together (`map(num_proc=...)`).
                conn.close()
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            except sqlite3.DatabaseError:
                conn.close()
                raise

    def _error(self, error: Exception) -> CacheError:
        return CacheError(
            f"request cache {self.path} is not writable or not readable ({error}); nothing was sent. Make it "
            f"writable, or use another folder (--cache-dir, SEKE_HF_CACHE or cache_dir=...)."
        )

    def _move_aside(self, error: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
        except OSError as e:
            raise CacheError(
                f"request cache {self.path} is unreadable ({error}) and could not be moved aside ({e}); move or "
                f"delete it, or use another folder (--cache-dir, SEKE_HF_CACHE or cache_dir=...)."
            ) from error
        logger.warning(
            "request cache %s is unreadable (%s): moved it aside to %s and started a fresh one; answers stored in it "
            "will be asked again",
            self.path,
            error,
            aside.name,
        )

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None: never stored, or stored but unreadable (a miss, asked again and overwritten)."""
        with self._lock:
            if key in self._unsaved:
                return self._unsaved[key]
            try:
                row = self._connection().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError as e:
                self._warn_once("read", f"could not read the request cache {self.path} ({e}): asking again")
                return None
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError as e:
            value, reason = None, str(e)
        else:
            reason = f"a {type(value).__name__}, not an object"
        if not isinstance(value, dict):
            logger.warning("request cache %s: entry %s is unreadable (%s); asking again", self.path, key[:12], reason)
            return None
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store `value`; if the file refuses it, keep it in memory for this run (with a warning), never lose it."""
        text = json.dumps(value, ensure_ascii=False)
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", (key, text, time.time())
                )
            except (sqlite3.Error, CacheError) as e:
                self._unsaved[key] = value
                self._warn_once(
                    "write",
                    f"could not store an answer in the request cache {self.path} ({e}): this run keeps its answers "
                    "in memory, a later run will ask for them again",
                )
            else:
                self._unsaved.pop(key, None)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message)

    def note_failure(self) -> None:
        """Record that a request failed: results computed with failed rows must not be taken as final (the
        annotator puts `failure_mark` in its `datasets` fingerprint, so the next map is computed again)."""
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('failure', ?)", (uuid.uuid4().hex,)
                )
            except (sqlite3.Error, CacheError) as e:
                self._warn_once("write", f"could not write to the request cache {self.path} ({e})")

    def failure_mark(self) -> str | None:
        """The mark of the last `note_failure`; None if none. Read-only: never creates or locks the file."""
        if not self.path.is_file():
            return None
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute("SELECT value FROM meta WHERE name = 'failure'").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def checkpoint(self) -> None:
        """Move everything from the write-ahead log into the main file (what a clean close also does)."""
        with self._lock:
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def values_since(self, timestamp: float) -> Iterator[dict[str, Any]]:
        """Values stored at or after `timestamp` by any process: what a run (with all its workers) fetched."""
        with self._lock:
            rows = self._connection().execute("SELECT value FROM responses WHERE created >= ?", (timestamp,)).fetchall()
        return (value for (text,) in rows if isinstance(value := _loads(text), dict))

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (key, value) stored, for copying a cache elsewhere (`seke-hf cache push`)."""
        with self._lock:
            rows = self._connection().execute("SELECT key, value FROM responses").fetchall()
        return ((key, value) for key, text in rows if isinstance(value := _loads(text), dict))

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
    conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
    if "created" not in columns:  # a cache written before timestamps were kept
        conn.execute("ALTER TABLE responses ADD COLUMN created REAL")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
