"""`/v1/files` storage of the simulated provider: uploaded batch inputs and the output and error files of batches.

Files live in memory for the server's lifetime, like a provider's file store for the length of a dry run. Uploads
arrive as `multipart/form-data` (what `client.files.create(file=..., purpose="batch")` sends), parsed here without
the deprecated `cgi` module.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from seke_hf.simulate.request import RequestError

FILE_PURPOSES = frozenset(
    {"assistants", "assistants_output", "batch", "batch_output", "fine-tune", "fine-tune-results", "vision",
     "user_data", "evals"}
)  # fmt: skip


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        """The API's `file` object (what `client.files.retrieve` returns)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


class FileStore:
    """Thread-safe in-memory files, by id."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(f"file-sim{uuid.uuid4().hex[:24]}", filename, purpose, data, int(time.time()))
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise RequestError(f"No such File object: {file_id}", status=404, param="id")
        return stored

    def delete(self, file_id: str) -> None:
        with self._lock:
            if self._files.pop(file_id, None) is None:
                raise RequestError(f"No such File object: {file_id}", status=404, param="id")

    def list(self, purpose: str | None = None) -> list[StoredFile]:
        with self._lock:
            files = list(self._files.values())
        return [f for f in reversed(files) if purpose is None or f.purpose == purpose]


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a `multipart/form-data` body: name -> (filename or None, bytes)."""
    match = _BOUNDARY.search(content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise RequestError("Expected a multipart/form-data body with a boundary.", param="file")
    delimiter = b"--" + match.group(1).encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            raise RequestError("Malformed multipart body: a part has no header end.", param="file")
        params: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                params = dict(_DISPOSITION.findall(value))
        if "name" in params:
            fields[params["name"]] = (params.get("filename"), content.removesuffix(b"\r\n"))
    return fields
