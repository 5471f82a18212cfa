"""Which revisions of a Hub repo hold images: every commit reachable from a branch, a tag, a pull request or one of
the Hub's own conversion branches (`refs/convert/parquet`, which the dataset viewer fills with a copy of the data),
and every file in it (each distinct file read once, a Parquet file by its footer only, through range requests).

Making a repo public makes all of its history readable, not only its head: `push` refuses to open a repo whose
history holds images unless that history is first rewritten (`super_squash_history`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from seke_hf.publish.content import TEXT_SAMPLE, head_findings, parquet_findings

ReadRange = Callable[[int, int], bytes]


def history_findings(
    api: HfApi, repo_id: str, *, repo_type: str = "dataset", skip_refs: Iterable[str] = (), limit: int = 20
) -> list[str]:
    """Files in the repo's history that may hold images or binary data, as "path at commit (refs): why", up to
    `limit` of them (one is enough to refuse). Refs in `skip_refs` (e.g. "refs/heads/main") are not walked; commits
    they share with other refs are."""
    skip = set(skip_refs)
    refs = api.list_repo_refs(repo_id, repo_type=repo_type, include_pull_requests=True)
    every = [*refs.branches, *refs.converts, *refs.tags, *(refs.pull_requests or [])]
    heads = [r for r in every if r.ref not in skip]
    reachable: dict[str, set[str]] = {}
    for ref in heads:
        for commit in api.list_repo_commits(repo_id, repo_type=repo_type, revision=ref.target_commit):
            reachable.setdefault(commit.commit_id, set()).add(ref.ref)
    verdicts: dict[str, list[str]] = {}
    findings = []
    for sha, names in reachable.items():
        for entry in api.list_repo_tree(repo_id, repo_type=repo_type, revision=sha, recursive=True):
            if not isinstance(entry, RepoFile):
                continue
            key = entry.lfs.sha256 if entry.lfs else entry.blob_id
            if key not in verdicts:
                verdicts[key] = _remote_findings(_range_reader(api, repo_id, repo_type, sha, entry.path), entry.size)
            if verdicts[key]:
                findings.append(f"{entry.path} at {sha[:8]} ({', '.join(sorted(names))}): {'; '.join(verdicts[key])}")
                if len(findings) >= limit:
                    return findings
    return findings


def _remote_findings(read_range: ReadRange, size: int) -> list[str]:
    if not size:
        return []
    head = read_range(0, min(size, TEXT_SAMPLE) - 1)
    if head.startswith(b"PAR1"):
        return parquet_findings(RangeReader(read_range, size), read_strings=False)
    return head_findings(head)


def _range_reader(api: HfApi, repo_id: str, repo_type: str, revision: str, path: str) -> ReadRange:
    url = hf_hub_url(repo_id, path, repo_type=repo_type, revision=revision, endpoint=api.endpoint)
    headers = build_hf_headers(token=api.token, library_name=api.library_name, library_version=api.library_version)

    def read_range(start: int, end: int) -> bytes:
        response = get_session().get(url, headers={**headers, "Range": f"bytes={start}-{end}"}, follow_redirects=True)
        hf_raise_for_status(response)
        return response.content

    return read_range


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over `read_range(start, end)` (inclusive), so pyarrow reads a remote Parquet
    footer with a few small range requests instead of downloading the file."""

    def __init__(self, read_range: ReadRange, size: int):
        self._read_range, self._size, self._position = read_range, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._position + len(buffer), self._size)
        if end <= self._position:
            return 0
        data = self._read_range(self._position, end - 1)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)
