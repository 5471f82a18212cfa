"""Batch API jobs: a round of chat-completion requests as JSONL, sent through the official client or written for
`vllm run-batch`, and the answers read back.

    lines = [request_line(key, params) for key, params in requests]   # custom_id = the request cache key
    parts = split_lines(lines, BatchLimits())                          # within the provider's per-batch limits
    client = BatchClient(base_url, api_key)
    batch_id = client.submit(parts[0], metadata={"seke_hf_job": job, "round": "1", "part": "0"})
    batch = client.retrieve(batch_id)                                  # status, request_counts
    results = client.results(batch, expected=set(keys))                # answers, errors, bad lines counted

The line formats are OpenAI's (and vLLM's): a request `{"custom_id", "method": "POST", "url", "body"}`; a result
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`. A result line that cannot be read,
names a `custom_id` we did not ask for, or repeats one already read is counted and skipped: it costs that line only.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from seke_hf.llm.client import Completion, choice_logprobs
from seke_hf.llm.usage import Usage

logger = logging.getLogger(__name__)

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class BatchLimits:
    """A provider's limits on one batch (OpenAI: 50,000 requests and 200 MB per input file)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024


def request_line(custom_id: str, params: Mapping[str, Any]) -> bytes:
    """One line of a batch input file (`params`: the keyword arguments of `chat.completions.create`)."""
    line = {"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": dict(params)}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def split_lines(lines: Sequence[bytes], limits: BatchLimits) -> list[list[bytes]]:
    """`lines` in order, cut into parts that each stay within `limits` (a request too large on its own is an
    error: no batch could carry it)."""
    parts: list[list[bytes]] = []
    size = 0
    for line in lines:
        if len(line) > limits.max_bytes:
            raise ValueError(f"a batch request of {len(line)} bytes exceeds the {limits.max_bytes}-byte file limit")
        if not parts or len(parts[-1]) >= limits.max_requests or size + len(line) > limits.max_bytes:
            parts.append([])
            size = 0
        parts[-1].append(line)
        size += len(line)
    return parts


@dataclass
class BatchResults:
    """What a batch's output and error files said about the requests we asked."""

    answers: dict[str, Completion] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    unknown: int = 0
    """Lines whose `custom_id` was not asked for."""
    duplicates: int = 0
    """Lines repeating a `custom_id` already read."""
    malformed: int = 0
    """Lines that are not a result (bad JSON, no `custom_id`, an unreadable body)."""

    def read(self, lines: Iterable[str | bytes], expected: set[str], logprob_fields: tuple[str, ...] = ()) -> None:
        """Add the result lines of one output or error file (keeping the token probabilities of `logprob_fields`
        where a line has them)."""
        for raw in lines:
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                custom_id = line["custom_id"]
                response = line.get("response") or {}
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
                self.malformed += 1
                continue
            if custom_id not in expected:
                self.unknown += 1
            elif custom_id in self.answers or custom_id in self.errors:
                self.duplicates += 1
            elif response.get("status_code") == 200:
                try:
                    self.answers[custom_id] = completion_from_body(response["body"], logprob_fields)
                except (KeyError, TypeError, AttributeError, ValueError):
                    self.malformed += 1
            else:
                self.errors[custom_id] = _error_text(line)

    def summary(self) -> str:
        bad = {"unknown": self.unknown, "duplicate": self.duplicates, "malformed": self.malformed}
        skipped = ", ".join(f"{count} {name}" for name, count in bad.items() if count)
        tail = f" ({skipped} lines skipped)" if skipped else ""
        return f"{len(self.answers)} answered, {len(self.errors)} failed{tail}"


def completion_from_body(body: Mapping[str, Any], logprob_fields: tuple[str, ...] = ()) -> Completion:
    """A `chat.completion` response body (one batch result) as the `Completion` an online request gives."""
    choices = sorted(body["choices"], key=lambda c: c["index"])
    messages = [choice.get("message") or {} for choice in choices]
    texts = [message.get("content") for message in messages]
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Completion(
        texts,
        Usage(
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            int(details.get("cached_tokens") or 0),
        ),
        requests=1,
        refusals=[message.get("refusal") for message in messages],
        logprobs=[choice_logprobs(c, t, logprob_fields) for c, t in zip(choices, texts, strict=True)],
    )


def _error_text(line: Mapping[str, Any]) -> str:
    error = line.get("error") or {}
    response = line.get("response") or {}
    if not error and isinstance(response.get("body"), Mapping):
        error = response["body"].get("error") or {}
    status = response.get("status_code")
    text = f"{error.get('code') or 'error'}: {error.get('message') or 'no message'}"
    return f"{status} {text}" if status else text


class BatchClient:
    """Batch jobs through the official `openai` client: upload, create, retrieve, read results, find, cancel.

    Holds its client for its lifetime; never pickled (batch runs happen in the calling process).
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 120.0, max_retries: int = 6) -> None:
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def submit(self, lines: Sequence[bytes], metadata: Mapping[str, str]) -> str:
        """Upload one part and create its batch; returns the batch id."""
        name = f"seke-hf-{metadata.get('seke_hf_job', 'batch')}-r{metadata.get('round', 0)}.jsonl"
        uploaded = self._client.files.create(file=(name, io.BytesIO(b"".join(lines))), purpose="batch")
        batch = self._client.batches.create(
            input_file_id=uploaded.id,
            endpoint=CHAT_ENDPOINT,
            completion_window=COMPLETION_WINDOW,
            metadata=dict(metadata),
        )
        return batch.id

    def retrieve(self, batch_id: str) -> Any:
        return self._client.batches.retrieve(batch_id)

    def cancel(self, batch_id: str) -> Any:
        return self._client.batches.cancel(batch_id)

    def find(self, metadata: Mapping[str, str], *, limit: int = 200) -> list[Any]:
        """Recent batches whose metadata holds `metadata` (a batch created by a process killed before it could
        record the id is found here, not paid for again)."""
        found = []
        for i, batch in enumerate(self._client.batches.list(limit=100)):
            if i >= limit:
                break
            if all((batch.metadata or {}).get(k) == v for k, v in metadata.items()):
                found.append(batch)
        return found

    def results(self, batch: Any, expected: set[str], logprob_fields: tuple[str, ...] = ()) -> BatchResults:
        """The answers and errors of a finished batch (output file, then error file)."""
        results = BatchResults()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                results.read(self._client.files.content(file_id).text.splitlines(), expected, logprob_fields)
        for error in getattr(getattr(batch, "errors", None), "data", None) or []:
            logger.warning("batch %s: %s %s", batch.id, error.code, error.message)
        return results

    def close(self) -> None:
        self._client.close()
