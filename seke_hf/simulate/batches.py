"""The Batch API of the simulated provider: `/v1/files` and `/v1/batches` as OpenAI serves them.

A batch is a JSONL file of requests (`{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`),
uploaded with `purpose="batch"` and run with `client.batches.create(input_file_id=..., endpoint=...,
completion_window="24h")`. Its status goes `validating` -> `in_progress` -> `finalizing` -> `completed`, or ends
`failed` (validation), `expired` (the window closed first) or `cancelling` -> `cancelled`. Each line is answered by
the same model as an online request (same request and seed, same answer); answered lines go to the output file,
failed ones to the error file, in OpenAI's line format (`{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}`).

Timing: `batch_delay` seconds from create to `completed`: a tenth validating, eight tenths in progress (lines answered
evenly over it, so a batch can be caught half done), a tenth finalizing. Faults on demand (`inject`):
`batch_validation` (the next batch fails validation with the provider's enqueued-token-limit error),
`batch_expire` (the next batch expires with half its lines answered; the rest are in the error file as
`batch_expired`), `batch_line_error` (the next lines are answered with a 500 in the error file; also a rate).
Tokens of batch lines are counted apart from online requests and priced at batch prices in `/stats`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from seke_hf.llm.usage import Prices
from seke_hf.simulate.accounting import Accounting
from seke_hf.simulate.files import FILE_PURPOSES, FileStore, StoredFile, parse_multipart
from seke_hf.simulate.request import RequestError, parse_json_body, parse_request

if TYPE_CHECKING:
    from seke_hf.simulate.server import SimulatedVLLM

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
BATCH_FAULTS = ("batch_validation", "batch_expire", "batch_line_error")
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

BATCH_PRICES = Prices().batch()
"""GPT-4o Batch API prices (half the online list prices), US dollars per million tokens."""


@dataclass(frozen=True)
class BatchPlan:
    """How the simulated provider runs batches: timing, provider limits, and the rate of lines that error."""

    batch_delay: float = 0.0
    """Seconds from `batches.create` to `completed`."""
    batch_max_requests: int = 50_000
    """Requests per batch (OpenAI: 50,000); more fails validation."""
    batch_max_bytes: int = 200 * 1024 * 1024
    """Bytes per batch input file (OpenAI: 200 MB); a larger upload is refused."""
    batch_line_error: float = 0.0
    """Chance that a line is answered with a server error (in the error file)."""

    def __post_init__(self) -> None:
        if self.batch_delay < 0:
            raise ValueError(f"batch_delay must be >= 0, got {self.batch_delay}")
        if self.batch_max_requests < 1 or self.batch_max_bytes < 1:
            raise ValueError("batch_max_requests and batch_max_bytes must be positive")
        if not 0.0 <= self.batch_line_error <= 1.0:
            raise ValueError(f"batch_line_error={self.batch_line_error} must be in [0, 1]")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class BatchJob:
    """One batch and what the API reports about it."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    status: str = "validating"
    model: str | None = None
    stamps: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    usage: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def object(self) -> dict[str, Any]:
        stamp_names = (
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
        )
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + 24 * 3600,
            **{name: self.stamps.get(name) for name in stamp_names},
            "request_counts": dict(self.counts),
            "usage": {
                "input_tokens": self.usage["input"],
                "input_tokens_details": {"cached_tokens": self.usage["cached"]},
                "output_tokens": self.usage["output"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.usage["input"] + self.usage["output"],
            },
            "metadata": self.metadata,
        }


class BatchService:
    """Files and batches of one simulated server; `handle` answers the HTTP routes under `/v1/files` and
    `/v1/batches`."""

    def __init__(self, sim: SimulatedVLLM, plan: BatchPlan, prices: Prices = BATCH_PRICES):
        self.sim = sim
        self.plan = plan
        self.prices = prices
        self.files = FileStore()
        self.accounting = Accounting()
        self._jobs: dict[str, BatchJob] = {}
        self._lock = threading.Lock()
        self._queued: Counter[str] = Counter()
        self._rng = np.random.default_rng(sim.plan.fault_seed)

    # ------------------------------------------------------------------ control
    def inject(self, kind: str, count: int = 1) -> None:
        """Force `kind` (one of `BATCH_FAULTS`) on the next `count` batches (lines, for `batch_line_error`)."""
        if kind not in BATCH_FAULTS:
            raise ValueError(f"unknown batch fault {kind!r}; expected one of {BATCH_FAULTS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._queued[kind] += count

    def queued(self) -> dict[str, int]:
        with self._lock:
            return {kind: count for kind, count in self._queued.items() if count}

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()

    def snapshot(self) -> dict[str, Any]:
        """The batch part of `/stats`: batches by status, lines and their tokens, cost at batch prices."""
        counts = self.accounting.snapshot()
        with self._lock:
            statuses = Counter(job.status for job in self._jobs.values())
        cost = self.prices.cost(counts["prompt_tokens"], counts["cached_tokens"], counts["completion_tokens"])
        keep = (
            "requests",
            "completions",
            "choices",
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "total_tokens",
            "faults",
            "errors",
        )
        return {
            "batches": dict(statuses),
            **{key: counts[key] for key in keep},
            "cost_usd": round(cost, 6),
            "prices": {
                "input": self.prices.input,
                "cached_input": self.prices.cached_input,
                "output": self.prices.output,
            },
        }

    def reset(self) -> None:
        self.accounting.reset()

    def max_upload_bytes(self) -> int:
        """The largest body `POST /v1/files` reads: a full batch file plus room for the multipart framing."""
        return self.plan.batch_max_bytes + 64 * 1024

    # ------------------------------------------------------------------ HTTP
    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, content_type: str) -> Any:
        """The reply to one request: a JSON-able object, or `bytes` for file content. Raises `RequestError`."""
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        route = (method, parts[0], len(parts))
        if route == ("POST", "files", 1):
            return self._upload(body, content_type).object()
        if route == ("GET", "files", 1):
            files = self.files.list(query.get("purpose"))
            return _page([f.object() for f in files], has_more=False)
        if route == ("GET", "files", 2):
            return self.files.get(parts[1]).object()
        if route == ("DELETE", "files", 2):
            self.files.delete(parts[1])
            return {"id": parts[1], "object": "file", "deleted": True}
        if route == ("GET", "files", 3) and parts[2] == "content":
            return self.files.get(parts[1]).data
        if route == ("POST", "batches", 1):
            return self._create(parse_json_body(body))
        if route == ("GET", "batches", 1):
            return self._list(query)
        if route == ("GET", "batches", 2):
            return self._job_object(parts[1])
        if route == ("POST", "batches", 3) and parts[2] == "cancel":
            return self._cancel(parts[1])
        raise RequestError(f"Invalid URL ({method} {path})", status=404)

    def _upload(self, body: bytes, content_type: str) -> StoredFile:
        form = parse_multipart(content_type, body)
        purpose = (form.get("purpose") or (None, b""))[1].decode()
        if purpose not in FILE_PURPOSES:
            raise RequestError(f"Invalid value for 'purpose': {purpose!r}.", param="purpose", code="invalid_value")
        if "file" not in form:
            raise RequestError(
                "Missing the 'file' part of the upload.", param="file", code="missing_required_parameter"
            )
        filename, data = form["file"]
        if purpose == "batch":
            if not (filename or "").endswith(".jsonl"):
                raise RequestError("Batch files must be .jsonl files.", param="file", code="invalid_file_format")
            if len(data) > self.plan.batch_max_bytes:
                raise RequestError(
                    f"File is too large ({len(data)} bytes): batch input files are limited to "
                    f"{self.plan.batch_max_bytes} bytes.",
                    param="file",
                    code="file_too_large",
                )
        return self.files.add(filename or "upload", purpose, data)

    def _create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("input_file_id"):
            raise RequestError(
                "Missing required parameter: 'input_file_id'.", param="input_file_id", code="missing_required_parameter"
            )
        if body.get("endpoint") != CHAT_ENDPOINT:
            raise RequestError(
                f"Invalid 'endpoint': the simulator runs batches of {CHAT_ENDPOINT} only.",
                param="endpoint",
                code="invalid_value",
            )
        if body.get("completion_window") != COMPLETION_WINDOW:
            raise RequestError(
                "Invalid 'completion_window': only '24h' is supported.", param="completion_window", code="invalid_value"
            )
        source = self.files.get(body["input_file_id"])
        if source.purpose != "batch":
            raise RequestError(
                f"File {source.id} has purpose {source.purpose!r}, not 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        job = BatchJob(
            id=f"batch_sim{uuid.uuid4().hex[:24]}",
            input_file_id=source.id,
            endpoint=CHAT_ENDPOINT,
            completion_window=COMPLETION_WINDOW,
            metadata=body.get("metadata"),
            created_at=int(time.time()),
        )
        with self._lock:
            self._jobs[job.id] = job
            snapshot = job.object()
        threading.Thread(target=self._run, args=(job, source.data), name=f"sim-{job.id}", daemon=True).start()
        return snapshot

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            limit = min(max(int(query.get("limit", 20)), 1), 100)
        except ValueError:
            raise RequestError("Invalid 'limit': expected an integer.", param="limit") from None
        with self._lock:
            jobs = list(reversed(self._jobs.values()))
            ids = [job.id for job in jobs]
            start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
            chosen = [job.object() for job in jobs[start : start + limit]]
        return _page(chosen, has_more=start + limit < len(jobs))

    def _job(self, batch_id: str) -> BatchJob:
        job = self._jobs.get(batch_id)
        if job is None:
            raise RequestError(f"No batch found with id '{batch_id}'.", status=404, param="batch_id")
        return job

    def _job_object(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            return self._job(batch_id).object()

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(batch_id)
            if job.status in TERMINAL:
                raise RequestError(
                    f"Cannot cancel a batch with status '{job.status}'.", status=409, code="batch_not_cancellable"
                )
            job.status = "cancelling"
            job.stamps["cancelling_at"] = int(time.time())
            job.cancel.set()
            return job.object()

    # ------------------------------------------------------------------ running a batch
    def _set(self, job: BatchJob, status: str, **changes: Any) -> None:
        with self._lock:
            if job.status == "cancelling" and status in ("in_progress", "finalizing"):
                return
            job.status = status
            job.stamps[f"{status}_at"] = int(time.time())
            for name, value in changes.items():
                setattr(job, name, value)

    def _sleep(self, job: BatchJob, seconds: float) -> bool:
        """Wait; True if the batch was cancelled or the server is stopping meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            if job.cancel.is_set() or self.sim.wait(0):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            job.cancel.wait(min(left, 0.05))

    def _run(self, job: BatchJob, data: bytes) -> None:
        delay = self.plan.batch_delay
        if self._sleep(job, 0.1 * delay):
            return self._close(job, [], [])
        requests, errors = validate_batch(data, job.endpoint, self.plan.batch_max_requests)
        if not errors and self._take("batch_validation"):
            self.accounting.fault("batch_validation")
            errors = [
                {
                    "code": "token_limit_exceeded",
                    "line": None,
                    "param": None,
                    "message": "Enqueued token limit reached for this model in your organization. Please try "
                    "again once some in_progress batches have been completed.",
                }
            ]
        if errors:
            self._set(job, "failed", errors=errors)
            return None
        with self._lock:
            job.model = requests[0][1].get("model")
            job.counts["total"] = len(requests)
        self._set(job, "in_progress")
        model = copy.copy(self.sim.model)  # the same model, its tokens counted as batch tokens
        model.accounting = self.accounting
        expire_at = len(requests) // 2 if self._take("batch_expire") else None
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        started = time.monotonic()
        for index, (custom_id, body) in enumerate(requests):
            if index == expire_at:
                self.accounting.fault("batch_expire")
                for late_id, _ in requests[index:]:
                    failures.append(
                        _line(
                            late_id,
                            None,
                            {
                                "code": "batch_expired",
                                "message": "This request could not be executed before the completion window expired.",
                            },
                        )
                    )
                with self._lock:
                    job.counts["failed"] += len(requests) - index
                self._write_files(job, outputs, failures)
                self._set(job, "expired")
                return None
            wait = started + 0.8 * delay * (index + 1) / len(requests) - time.monotonic()
            if self._sleep(job, max(wait, 0.0)):
                return self._close(job, outputs, failures)
            line = self._answer(model, custom_id, body, job)
            (outputs if line["response"]["status_code"] == 200 else failures).append(line)
        self._set(job, "finalizing")
        if self._sleep(job, 0.1 * delay):
            return self._close(job, outputs, failures)
        self._write_files(job, outputs, failures)
        self._set(job, "completed")
        return None

    def _close(self, job: BatchJob, outputs: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
        """A cancelled batch keeps what it answered (lines never run are in no file)."""
        if job.cancel.is_set():
            self._write_files(job, outputs, failures)
            self._set(job, "cancelled")

    def _answer(self, model: Any, custom_id: str, body: dict[str, Any], job: BatchJob) -> dict[str, Any]:
        self.accounting.begin()
        status = 500
        try:
            if self._take("batch_line_error") or (
                self.plan.batch_line_error and self._rng.random() < self.plan.batch_line_error
            ):
                self.accounting.fault("batch_line_error")
                raise RequestError("The server had an error processing this request.", status=500, type="server_error")
            plan = self.sim.plan
            question = parse_request(body, **plan.request_options())
            response = model.complete(question)
            status = 200
            usage = response["usage"]
            with self._lock:
                job.counts["completed"] += 1
                job.usage.update(
                    input=usage["prompt_tokens"],
                    output=usage["completion_tokens"],
                    cached=usage["prompt_tokens_details"]["cached_tokens"],
                )
            return _line(custom_id, {"status_code": 200, "request_id": _request_id(), "body": response}, None)
        except RequestError as e:
            status = e.status
            with self._lock:
                job.counts["failed"] += 1
            return _line(custom_id, {"status_code": e.status, "request_id": _request_id(), "body": e.body()}, None)
        finally:
            self.accounting.end(status)

    def _write_files(self, job: BatchJob, outputs: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
        def store(lines: list[dict[str, Any]], kind: str) -> str | None:
            if not lines:
                return None
            data = "".join(json.dumps(line) + "\n" for line in lines).encode()
            return self.files.add(f"{job.id}_{kind}.jsonl", "batch_output", data).id

        output_id, error_id = store(outputs, "output"), store(failures, "error")
        with self._lock:
            job.output_file_id, job.error_file_id = output_id, error_id

    def _take(self, kind: str) -> bool:
        with self._lock:
            if self._queued[kind] > 0:
                self._queued[kind] -= 1
                return True
        return False


def validate_batch(
    data: bytes, endpoint: str, max_requests: int
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The requests of a batch input file, or the API's validation errors (1-based line numbers)."""
    requests: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()

    def error(line: int | None, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "line": line, "message": message, "param": param})

    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        error(None, "empty_file", "The input file is empty.")
    if len(lines) > max_requests:
        error(None, "request_limit_exceeded", f"The batch has {len(lines)} requests; the limit is {max_requests}.")
        return [], errors
    for number, text in enumerate(lines, start=1):
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            error(number, "invalid_json", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(request, dict) or not isinstance(request.get("custom_id"), str):
            error(number, "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if request["custom_id"] in seen:
            error(number, "duplicate_custom_id", "The custom_id for this request is a duplicate.", "custom_id")
            continue
        if request.get("method") != "POST":
            error(number, "invalid_value", "Only POST requests are supported.", "method")
            continue
        if request.get("url") != endpoint:
            error(number, "mismatched_endpoint", f"The url must be the batch's endpoint {endpoint}.", "url")
            continue
        body = request.get("body")
        if not isinstance(body, dict):
            error(number, "invalid_request", "The 'body' must be a JSON object.", "body")
            continue
        seen.add(request["custom_id"])
        models.add(str(body.get("model")))
        requests.append((request["custom_id"], body))
    if len(models) > 1:
        error(None, "mismatched_model", f"A batch may use one model; this one uses {sorted(models)}.", "body.model")
    return requests, errors


def _line(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": custom_id, "response": response, "error": error}


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


def _page(items: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }
