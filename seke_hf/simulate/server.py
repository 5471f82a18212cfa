"""The HTTP side: an OpenAI-compatible server on 127.0.0.1 that the official `openai` client talks to unchanged.

Endpoints: `POST /v1/chat/completions` (also with `stream: true`, as server-sent events), `GET /v1/models` (and
`/v1/models/{id}`), the Batch API (`/v1/files` and `/v1/batches`, see `batches.py`), `GET /stats` (`POST
/stats/reset` or `DELETE /stats` to reset), `GET`/`POST /control/faults` (inject faults or change the fault plan at
run time), `GET /health`. With an `api_key`, every endpoint but `/health` requires it. One thread per connection
(HTTP/1.1 keep-alive) and a listen backlog of 512, so many concurrent requests are held at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import urllib.parse
from dataclasses import asdict, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from seke_hf.simulate.accounting import Accounting, PromptCache
from seke_hf.simulate.batches import BATCH_FAULTS, BatchPlan, BatchService
from seke_hf.simulate.faults import FAULT_KINDS, FaultInjector, FaultPlan
from seke_hf.simulate.model import SimulatedModel
from seke_hf.simulate.noise import NoiseModel
from seke_hf.simulate.request import RequestError, parse_json_body, parse_request
from seke_hf.simulate.truth import DEFAULT_MATCH_THRESHOLD, TruthTable, truth_from_dataset

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "seke-sim-vllm"
MAX_BODY_BYTES = 64 * 1024 * 1024
STREAM_PIECE = 16
"""Characters per streamed content delta."""


class SimulatedVLLM:
    """A simulated vision LLM behind a real OpenAI-compatible HTTP server.

    ```python
    with SimulatedVLLM(truth=truth_from_dataset(ds), latency=0.2, rate_limit=0.05) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sim")
        ...
        print(server.stats())
    ```

    `truth` is a `TruthTable`, the path of a truth JSONL file, a labelled unified-schema `Dataset`, or None (every
    face unknown). `profile` names the noise regime (`seke_hf.simulate.noise.PROFILES`: "default",
    "ambivalent-aus", "noisy-va", "confident-errors", "weak"). Keyword arguments named like a `NoiseModel`,
    `FaultPlan` or `BatchPlan` field override that field; e.g. `logprobs="ignore"` answers `logprobs: true` with
    `"logprobs": null` and `logprobs="refuse"` with an HTTP 400, where the default "return" answers token log
    probabilities of the model's raw belief (`seke_hf.simulate.logprobs`).
    """

    def __init__(
        self,
        truth: Any = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        noise: NoiseModel | None = None,
        profile: str | None = None,
        faults: FaultPlan | None = None,
        match_threshold: float = DEFAULT_MATCH_THRESHOLD,
        **params: Any,
    ):
        unknown = set(params) - NoiseModel.field_names() - FaultPlan.field_names() - BatchPlan.field_names()
        if unknown:
            raise TypeError(
                f"unknown parameter(s) {sorted(unknown)}; noise parameters are {sorted(NoiseModel.field_names())}, "
                f"fault parameters are {sorted(FaultPlan.field_names())}, "
                f"batch parameters are {sorted(BatchPlan.field_names())}"
            )
        if noise is not None and profile is not None:
            raise TypeError("give either noise= or profile=, not both")
        noise = noise or NoiseModel.from_profile(profile or "default")
        noise = replace(noise, **{k: v for k, v in params.items() if k in NoiseModel.field_names()})
        plan = replace(faults or FaultPlan(), **{k: v for k, v in params.items() if k in FaultPlan.field_names()})
        self.truth = _as_truth(truth, match_threshold)
        self.model_name = model
        self.api_key = api_key
        self.accounting = Accounting()
        self.prompt_cache = PromptCache()
        self.faults = FaultInjector(plan)
        self.model = SimulatedModel(self.truth, noise, self.faults, self.accounting, self.prompt_cache)
        self.batches = BatchService(
            self, BatchPlan(**{k: v for k, v in params.items() if k in BatchPlan.field_names()})
        )
        self._host, self._port = host, port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._open = threading.Event()
        self._open.set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimulatedVLLM:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="seke-sim-vllm", daemon=True)
        self._thread.start()
        logger.debug("simulated vision LLM listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes sleeping (paused, latency, timeout) handlers
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI's mode)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> SimulatedVLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager or call start()")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What `openai.OpenAI(base_url=...)` takes."""
        return f"{self.url}/v1"

    # ------------------------------------------------------------------ control
    @property
    def noise(self) -> NoiseModel:
        return self.model.noise

    @property
    def plan(self) -> FaultPlan:
        return self.faults.plan

    def stats(self) -> dict[str, Any]:
        return {**self.accounting.snapshot(), "batch": self.batches.snapshot()}

    def reset_stats(self, *, prompt_cache: bool = False) -> None:
        self.accounting.reset()
        self.batches.reset()
        if prompt_cache:
            self.prompt_cache.clear()

    def inject(self, kind: str, count: int = 1) -> None:
        """Force fault `kind` on the next `count` requests (choices, for `truncate` and `refusal`; batches or batch
        lines, for the `BATCH_FAULTS`)."""
        if kind in BATCH_FAULTS:
            self.batches.inject(kind, count)
        else:
            self.faults.inject(kind, count)

    def set_faults(self, **changes: Any) -> FaultPlan:
        """Change fault rates, provider behaviours or `BatchPlan` settings while serving (queued injections are
        kept)."""
        unknown = set(changes) - FaultPlan.field_names() - BatchPlan.field_names()
        if unknown:
            raise TypeError(f"unknown fault parameter(s) {sorted(unknown)}")
        batch = {k: v for k, v in changes.items() if k in BatchPlan.field_names()}
        self.batches.plan = replace(self.batches.plan, **batch)
        self.faults.plan = replace(self.faults.plan, **{k: v for k, v in changes.items() if k not in batch})
        return self.faults.plan

    def pause(self) -> None:
        """Hold every new request (after validation) until `resume()`: lets a test fill the server deterministically."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def hold_if_paused(self) -> bool:
        """Wait while paused; True if the server stops meanwhile."""
        while not self._open.wait(0.05):
            if self._stopping.is_set():
                return True
        return self._stopping.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if it is stopping."""
        return self._stopping.wait(seconds)


def _as_truth(truth: Any, match_threshold: float) -> TruthTable:
    if truth is None:
        return TruthTable(match_threshold=match_threshold)
    if isinstance(truth, TruthTable):
        return truth
    if isinstance(truth, (str, os.PathLike)):
        return TruthTable.load(truth, match_threshold=match_threshold)
    if hasattr(truth, "features") and hasattr(truth, "__iter__"):
        return truth_from_dataset(truth, match_threshold=match_threshold)
    raise TypeError(f"truth must be a TruthTable, a truth JSONL path or a labelled Dataset, not {type(truth).__name__}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, sim: SimulatedVLLM):
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so their handler threads exit with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "seke-sim-vllm/0.1"
    timeout = 300
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # headers and body leave in one send (with Nagle, two small sends cost 40 ms each)
    server: _Server

    # ------------------------------------------------------------------ routing
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        sim = self.server.sim
        if path == "/health":
            self._json(200, {"status": "ok"})
        elif not self._authorised():
            return
        elif _is_batch_route(path):
            self._batch_api("GET", path, b"")
        elif path == "/v1/models":
            self._json(200, {"object": "list", "data": [self._model_card()]})
        elif path == f"/v1/models/{sim.model_name}":
            self._json(200, self._model_card())
        elif path.startswith("/v1/models/"):
            self._error(RequestError(f"The model '{path[11:]}' does not exist", status=404, code="model_not_found"))
        elif path == "/stats":
            self._json(200, sim.stats())
        elif path == "/control/faults":
            self._json(200, self._fault_state())
        else:
            self._error(RequestError(f"Invalid URL (GET {self.path})", status=404))

    def do_DELETE(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self._authorised():
            return
        if _is_batch_route(path):
            self._batch_api("DELETE", path, b"")
        elif path == "/stats":
            self.server.sim.reset_stats()
            self._json(200, {"reset": True})
        else:
            self._error(RequestError(f"Invalid URL (DELETE {self.path})", status=404))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self._authorised():  # before reading a body: a caller without the key costs us no memory
            return
        if _is_batch_route(path):
            limit = self.server.sim.batches.max_upload_bytes() if path == "/v1/files" else MAX_BODY_BYTES
            try:
                raw = self._read_body(limit)
            except RequestError as e:
                self._error(e)
                return
            self._batch_api("POST", path, raw)
            return
        try:
            body = parse_json_body(self._read_body(MAX_BODY_BYTES))
        except RequestError as e:
            self._error(e)
            return
        if path == "/v1/chat/completions":
            self._chat_completions(body)
        elif path == "/stats/reset":
            self.server.sim.reset_stats(prompt_cache=bool((body or {}).get("prompt_cache")))
            self._json(200, {"reset": True})
        elif path == "/control/faults":
            self._control(body or {})
        else:
            self._error(RequestError(f"Invalid URL (POST {self.path})", status=404))

    # ------------------------------------------------------------------ chat completions
    def _chat_completions(self, body: Any) -> None:
        sim = self.server.sim
        sim.accounting.begin()
        status = 500
        try:
            plan = sim.plan
            try:
                question = parse_request(body, **plan.request_options())
            except RequestError as e:
                if e.param == "n" and e.code == "unsupported_value":
                    sim.accounting.fault("reject_n")
                elif e.code == "unsupported_parameter":  # response_format or logprobs
                    sim.accounting.fault(f"reject_{e.param}")
                raise
            if sim.hold_if_paused() or (plan.latency and sim.wait(plan.latency)):
                return
            fault = sim.faults.request_fault()
            if fault is not None:
                sim.accounting.fault(fault)
            if fault == "rate_limit":
                status = 429
                self._rate_limited(plan.retry_after)
                return
            if fault == "server_error":
                raise RequestError(
                    "The server had an error while processing your request. Sorry about that!",
                    status=500,
                    type="server_error",
                )
            if fault == "timeout" and sim.wait(plan.timeout_delay):
                return
            response = sim.model.complete(question)
            status = 200
            if question.stream:
                self._stream(response, question.stream_usage)
            else:
                self._json(200, response)
        except RequestError as e:
            status = e.status
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            status = 499  # the client gave up (e.g. its timeout fired)
        except Exception as e:  # a bug in the simulator: answer like a server, log it for us
            logger.exception("simulated model failed")
            status = 500
            self._error(RequestError(f"Internal error in the simulator: {e}", status=500, type="server_error"))
        finally:
            sim.accounting.end(status)

    def _stream(self, response: dict[str, Any], include_usage: bool) -> None:
        """The same answer as server-sent `chat.completion.chunk` events, one choice after the other (their
        `logprobs` are null: the pieces are not tokens)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        head = {key: response[key] for key in ("id", "created", "model", "system_fingerprint")}
        head["object"] = "chat.completion.chunk"

        def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            self.wfile.write(f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n".encode())

        for choice in response["choices"]:
            index, message = choice["index"], choice["message"]
            text = message["content"] or ""
            deltas = [{"role": "assistant", "content": ""}]
            deltas += [{"content": text[i : i + STREAM_PIECE]} for i in range(0, len(text), STREAM_PIECE)]
            deltas += [{"refusal": message["refusal"]}] if message["refusal"] else []
            for delta in deltas:
                send([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])
            send([{"index": index, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}])
        if include_usage:
            send([], usage=response["usage"])
        self.wfile.write(b"data: [DONE]\n\n")

    def _rate_limited(self, retry_after: float) -> None:
        error = RequestError(
            "Rate limit reached for requests (simulated). Please try again later.",
            status=429,
            type="requests",
            code="rate_limit_exceeded",
        )
        headers = {
            "retry-after": str(max(1, math.ceil(retry_after))),
            "retry-after-ms": str(int(retry_after * 1000)),
            "x-ratelimit-remaining-requests": "0",
        }
        self._json(429, error.body(), headers)

    def _control(self, body: dict[str, Any]) -> None:
        sim = self.server.sim
        try:
            for kind, count in (body.get("inject") or {}).items():
                sim.inject(kind, int(count))
            if body.get("plan"):
                sim.set_faults(**body["plan"])
        except (TypeError, ValueError) as e:
            kinds = ", ".join(FAULT_KINDS + BATCH_FAULTS)
            self._error(RequestError(f"{e} (fault kinds: {kinds})", param="inject"))
            return
        self._json(200, self._fault_state())

    def _fault_state(self) -> dict[str, Any]:
        sim = self.server.sim
        plan = {**asdict(sim.plan), **asdict(sim.batches.plan)}  # `plan` changes both, so it shows both
        return {"plan": plan, "queued": {**sim.faults.queued(), **sim.batches.queued()}}

    # ------------------------------------------------------------------ batch API
    def _batch_api(self, method: str, path: str, body: bytes) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        try:
            reply = self.server.sim.batches.handle(method, path, query, body, self.headers.get("Content-Type", ""))
        except RequestError as e:
            self._error(e)
            return
        if isinstance(reply, bytes):
            self._send(200, reply, "application/octet-stream")
        else:
            self._json(200, reply)

    # ------------------------------------------------------------------ plumbing
    def _model_card(self) -> dict[str, Any]:
        return {"id": self.server.sim.model_name, "object": "model", "created": 0, "owned_by": "seke-hf"}

    def _authorised(self) -> bool:
        key = self.server.sim.api_key
        if key is None or self.headers.get("Authorization", "") == f"Bearer {key}":
            return True
        self._error(RequestError("Incorrect API key provided.", status=401, code="invalid_api_key"))
        return False

    def _read_body(self, limit: int) -> bytes:
        """The request body, at most `limit` bytes. A length that is missing on a chunked body, not a number,
        negative or over the limit is refused before anything is read, and the connection is closed (the unread
        body must not be taken for the next request)."""
        text = self.headers.get("Content-Length")
        if text is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise RequestError("A Content-Length is required (chunked bodies are not accepted).", status=411)
            return b""
        if not text.strip().isdigit():
            self.close_connection = True
            raise RequestError(f"Invalid Content-Length {text!r}.", status=400)
        length = int(text)
        if length > limit:
            self.close_connection = True
            raise RequestError(f"Request too large ({length} bytes; the limit is {limit}).", status=413)
        return self.rfile.read(length) if length else b""

    def _error(self, error: RequestError) -> None:
        self._json(error.status, error.body())

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


def _is_batch_route(path: str) -> bool:
    return path.split("/")[:3] in (["", "v1", "files"], ["", "v1", "batches"])
