"""SV-UAMC through the Batch API: every sampling round of all the rows that need one becomes one batch job.

How, without touching the sampling algorithm: the annotator runs over the pending rows with its backend in collect
mode (a `Collector` gate): a request already answered comes from the request cache as usual; a cache miss is
recorded and the row stops there (it is deferred). The recorded requests of the pass are sent as one batch (split
within the provider's limits); their answers are written into the same request cache; the next pass moves each
answered row one round further. When a pass records nothing, every row is decided, and the ordinary map over the
dataset reads all its answers from the cache: the output is exactly the online one for the same answers.

Resumable: the batches in flight, the round and the spend live in a `BatchState` file beside the request cache,
saved before each batch is created (and the batch tagged with the run in its metadata), so a process killed at any
point finds its batches again and pays for nothing twice. `wait=False` submits and raises `BatchPending`; running the
same thing again polls, reads what is done and submits the next round. Lines that come back without an answer (a
failed, expired or cancelled batch, an error line) are asked again in the next round, up to `max_attempts`; then
their row ends `failed` (and the next run tries again). `export_dir` writes each round as a JSONL file for an
offline runner (`vllm run-batch -i round.jsonl -o results.jsonl ...`) and `import_files` reads results back.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from datasets.fingerprint import Hasher

from seke_hf.llm import Completion, Request, RequestFailed, Usage
from seke_hf.llm.batch import TERMINAL_STATUSES, BatchClient, BatchLimits, BatchResults, request_line, split_lines
from seke_hf.llm.batch_state import BatchState, Submission
from seke_hf.llm.budget import BudgetExceeded, CostModel, usage_cost

if TYPE_CHECKING:
    from seke_hf.annotate.annotator import SVUAMCAnnotator

logger = logging.getLogger(__name__)

DEFERRED = "deferred to the next batch round"
"""In the `status_reason` of a row a collecting pass stopped at a cache miss."""

PASS_ROWS = 256
"""Rows annotated together in a collecting pass."""


@dataclass(frozen=True)
class BatchOptions:
    """How a batch run proceeds (runtime settings: they never change an output)."""

    wait: bool = True
    """Wait for each batch (polling every `poll_interval` seconds); False: submit, then raise `BatchPending`."""
    poll_interval: float = 30.0
    export_dir: str | None = None
    """Write each round's requests here as JSONL (for `vllm run-batch`) instead of calling the Batch API."""
    import_files: tuple[str, ...] = ()
    """Result JSONL files of exported rounds, read before anything else."""
    max_attempts: int = 3
    """Rounds a request may come back without an answer before its row ends `failed`."""
    limits: BatchLimits = field(default_factory=BatchLimits)


class BatchPending(Exception):
    """The run is waiting for batches (submitted without waiting, or exported): run the same command again."""


class Collector:
    """The backend gate of a batch run: a cache miss is recorded for the next batch instead of being sent."""

    def __init__(self, state: BatchState, max_attempts: int) -> None:
        self.state = state
        self.max_attempts = max_attempts
        self.collected: dict[str, Request] = {}
        self.refused: dict[str, str] = {}
        self.in_flight: set[str] = set()
        """Keys submitted and not read back yet (set before each pass): recorded once, never twice."""
        self.closed = False

    def before_send(self, key: str, request: Request) -> Any:
        if key in self.refused:
            raise BudgetExceeded(self.refused[key])
        attempts = self.state.attempts.get(key, 0)
        if attempts >= self.max_attempts:
            raise RequestFailed(f"no batch answer after {attempts} rounds: {self.state.errors.get(key, 'unknown')}")
        if self.closed:
            raise RequestFailed("not answered by the batch run; run it again to continue")
        if key not in self.in_flight:
            self.collected[key] = request
        raise RequestFailed(DEFERRED)

    def after_send(self, ticket: Any, usage: Any) -> None:  # never reached: nothing is sent
        return None


def state_path(annotator: SVUAMCAnnotator, job: str) -> Path:
    return Path(annotator.backend.cache.path).parent / "batches" / f"{job}.json"


def job_id(annotator: SVUAMCAnnotator, dataset: datasets.Dataset) -> str:
    """The same annotator settings over the same data are the same job, in any process. Only the settings count:
    marks that change the annotator's `datasets` fingerprint as rows fail (deferred rows fail in every pass) do not
    make a new job."""
    settings = {k: v for k, v in annotator.__getstate__().items() if not k.startswith("_")}
    return Hasher.hash([settings, dataset._fingerprint])[:16]


class BatchRun:
    """One dataset through rounds of batches (see the module docstring); `run()` returns the annotated dataset."""

    def __init__(self, annotator: SVUAMCAnnotator, dataset: datasets.Dataset, options: BatchOptions) -> None:
        self.annotator, self.dataset, self.options = annotator, dataset, options
        self.backend = annotator.backend
        self.prices = annotator.paid_prices
        self.job = job_id(annotator, dataset)
        self.path = state_path(annotator, self.job)
        self.state = BatchState.load(self.path, self.job)
        self.collector = Collector(self.state, options.max_attempts)
        self.budget = annotator.budget  # one budget for the process (FEID and FEAB of a build share it) ...
        self.budget.spent += self.state.spent  # ... plus what earlier processes of this job paid and have in flight
        self.budget.reserved += self.state.reserved()
        if self.state.cost_model:
            self.budget.model.merge(CostModel(**self.state.cost_model))
        self._client: BatchClient | None = None
        self._earlier = dict(self.state.answered)  # read back by earlier processes: joins this tally at the end
        self._shown: dict[str, tuple[str, str]] = {}
        self._requests: dict[str, Request] = {}  # sent by this process: their answers calibrate the projection
        self._pending: list[int] = list(range(len(dataset)))

    @property
    def client(self) -> BatchClient:
        if self._client is None:
            self._client = BatchClient(self.backend.endpoint, self.backend.resolved_api_key())
        return self._client

    # -- the loop --------------------------------------------------------------------------------------------------
    def run(self, *, batch_size: int = 256, desc: str = "SV-UAMC") -> datasets.Dataset:
        backend, annotator = self.backend, self.annotator
        saved = backend.gate, annotator.runtime.progress
        backend.gate, annotator.runtime.progress = self.collector, False
        try:
            for path in self.options.import_files:
                self._import(Path(path))
            while True:
                self._settle()
                if any(s.batch_id for s in self.state.submissions):
                    if not self.options.wait:
                        raise BatchPending(self._waiting())
                    time.sleep(self.options.poll_interval)
                    continue
                if self.state.submissions:  # exported files not read back yet
                    raise BatchPending(self._waiting())
                self._pass()
                if not self.collector.collected:
                    break
                self._submit_round()
                if self.state.submissions and (self.options.export_dir is not None or not self.options.wait):
                    raise BatchPending(self._waiting())
            self.collector.closed = True
            annotator.runtime.progress = saved[1]
            # Every answer is in the cache now; `datasets` must not serve an older result of this map (it may
            # hold rows that failed then), so the map is recomputed (from the cache: nothing is sent).
            self._count_earlier_answers()
            result = dataset_map(annotator, self.dataset, batch_size=batch_size, desc=desc)
            self.path.unlink(missing_ok=True)
            logger.info("batch run %s done in %d rounds; %s", self.job, self.state.round, self.budget.summary())
            return result
        finally:
            backend.gate, annotator.runtime.progress = saved
            if self._client is not None:
                self._client.close()

    def _pass(self) -> None:
        """Annotate the pending rows as far as the cache goes; record the requests of their next round."""
        self.collector.collected.clear()
        self.collector.in_flight = self.state.in_flight()
        view = _undecoded(self.dataset, self.annotator.image_column)
        tally = self.backend.tally
        counted = tally.cache_hits, copy.copy(tally.cached_usage)  # passes re-read answers: the final map counts them
        still: list[int] = []
        for start in range(0, len(self._pending), PASS_ROWS):
            rows = self._pending[start : start + PASS_ROWS]
            out = self.annotator(view[rows])
            still += [i for i, reason in zip(rows, out["status_reason"], strict=True) if DEFERRED in reason.as_py()]
        tally.cache_hits, tally.cached_usage = counted
        self._pending = still
        self.state.rows_total = len(self.dataset)
        if not self.state.pending_history or self.state.pending_history[-1] != len(still):
            self.state.pending_history.append(len(still))
        self._save()
        if self.collector.collected:
            logger.info(
                "batch run %s: %d of %d rows need round %d (%d requests); %s",
                self.job,
                len(still),
                len(self.dataset),
                self.state.round + 1,
                len(self.collector.collected),
                self.progress(),
            )

    def _submit_round(self) -> None:
        """Send the recorded requests that fit the budget as this round's batch (in parts within the limits).

        A request that does not fit waits for the next round while others are answered (their usage makes the
        projections sharper, or frees what was held for them); when nothing fits and nothing is in flight, it is
        refused for good and its row ends `failed` (budget)."""
        admitted: list[tuple[str, Request, float]] = []
        left_out: dict[str, float] = {}
        for key, request in self.collector.collected.items():
            cost = self.budget.model.cost(request, self.prices)
            if self.budget.reserve(cost):
                admitted.append((key, request, cost))
            else:
                left_out[key] = cost
        if not admitted and not self.state.submissions:
            self.collector.refused.update((key, self.budget.refusal(cost)) for key, cost in left_out.items())
        self.collector.collected.clear()
        if not admitted:
            return
        self.state.round += 1
        self._requests.update((key, request) for key, request, _ in admitted)
        lines = [request_line(key, self.backend.wire_params(request)) for key, request, _ in admitted]
        offset = 0
        for part, chunk in enumerate(split_lines(lines, self.options.limits)):
            entries = admitted[offset : offset + len(chunk)]
            offset += len(chunk)
            submission = Submission(
                self.state.round, part, [key for key, _, _ in entries], sum(cost for _, _, cost in entries)
            )
            self.state.submissions.append(submission)
            if self.options.export_dir is not None:
                folder = Path(self.options.export_dir)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{self.job}-round{submission.round:03d}-part{part}.jsonl"
                path.write_bytes(b"".join(chunk))
                submission.path = str(path)
                self._save()
                logger.info("wrote %d requests to %s", len(chunk), path)
                continue
            self._save()  # intent first: a process killed inside `submit` finds the batch by its metadata
            submission.batch_id = self.client.submit(chunk, self._metadata(submission))
            self._save()
            logger.info(
                "submitted %s: round %d part %d, %d requests", submission.batch_id, submission.round, part, len(chunk)
            )

    # -- reading results back --------------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Poll the batches in flight; read those that ended."""
        for submission in list(self.state.submissions):
            if submission.path is not None:
                continue
            if submission.batch_id is None and not self._adopt(submission):
                continue
            batch = self.client.retrieve(submission.batch_id)
            counts = batch.request_counts
            if batch.status not in TERMINAL_STATUSES:
                done = f"{counts.completed + counts.failed}/{counts.total}" if counts else "?"
                if self._shown.get(batch.id) != (batch.status, done):  # a line per change, not per poll
                    self._shown[batch.id] = (batch.status, done)
                    logger.info(
                        "batch %s (round %d): %s, %s lines done; %s",
                        batch.id,
                        submission.round,
                        batch.status,
                        done,
                        self.progress(),
                    )
                continue
            results = self.client.results(batch, set(submission.keys), self.annotator.logprob_fields)
            logger.info("batch %s (round %d) %s: %s", batch.id, submission.round, batch.status, results.summary())
            self._apply(submission, results, f"batch {batch.status}")

    def _adopt(self, submission: Submission) -> bool:
        """A submission saved without its batch id (the process died inside `submit`): find the batch by its
        metadata, or forget the submission (nothing was created, so its requests are asked again)."""
        found = self.client.find(self._metadata(submission))
        if found:
            submission.batch_id = found[0].id
        else:
            self.state.submissions.remove(submission)
            self.budget.settle(submission.projected_cost, 0.0)
        self._save()
        return bool(found)

    def _import(self, path: Path) -> None:
        """Read an offline runner's results into the rounds this job exported. A file holding none of their
        requests (another job's, say FEID's while FEAB runs, or a round read already) changes nothing."""
        exported = [s for s in self.state.submissions if s.path is not None]
        if not exported:
            return
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ValueError(f"--batch-import {path}: cannot read it ({e})") from None
        results = BatchResults()
        results.read(text.splitlines(), set().union(*(s.keys for s in exported)), self.annotator.logprob_fields)
        if not results.answers and not results.errors:
            logger.info("%s holds no result of job %s's exported round %d", path, self.job, exported[0].round)
            return
        logger.info("read %s: %s", path, results.summary())
        for submission in exported:
            self._apply(submission, results, "no result in the imported file")

    def _apply(self, submission: Submission, results: BatchResults, why: str) -> None:
        """Answers into the request cache first, then the state: killed in between, a re-run reads them again."""
        spent = 0.0
        for key in submission.keys:
            completion = results.answers.get(key)
            if completion is not None:
                self.backend.remember(key, completion)
                self._count(completion)
                if key in self._requests:
                    self.budget.model.observe(self._requests.pop(key), completion.usage)
                    self.state.cost_model = asdict(self.budget.model)
                spent += usage_cost(completion.usage, self.prices)
            else:
                self.state.attempts[key] = self.state.attempts.get(key, 0) + 1
                self.state.errors[key] = results.errors.get(key, why)
        self.state.submissions.remove(submission)
        self.state.spent += spent
        self.budget.settle(submission.projected_cost, spent)
        self._save()

    def _count(self, completion: Completion) -> None:
        answered, usage = self.state.answered, completion.usage
        for name, value in (
            ("requests", completion.requests),
            ("choices", len(completion.choices)),
            ("prompt_tokens", usage.prompt_tokens),
            ("completion_tokens", usage.completion_tokens),
            ("cached_tokens", usage.cached_tokens),
        ):
            answered[name] = answered.get(name, 0) + value

    def _count_earlier_answers(self) -> None:
        """The run's usage is the whole job's: what earlier processes read back joins this process's tally."""
        earlier, tally = self._earlier, self.backend.tally
        tally.requests += earlier.get("requests", 0)
        tally.choices += earlier.get("choices", 0)
        tally.usage += Usage(
            earlier.get("prompt_tokens", 0), earlier.get("completion_tokens", 0), earlier.get("cached_tokens", 0)
        )
        self._earlier = {}

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _metadata(self, submission: Submission) -> dict[str, str]:
        return {"seke_hf_job": self.job, "round": str(submission.round), "part": str(submission.part)}

    def _save(self) -> None:
        self.state.save(self.path)

    def progress(self) -> str:
        """Spend, what is in flight, and the projected total of the run.

        The projection assumes each later round carries on the share of rows the last round did (rows pending after
        a round / before it): the rounds in flight cost `c`, then `c * f + c * f^2 + ...`. Known from round 2 on."""
        spent, flying = self.budget.spent, self.budget.reserved
        cap = f" of max ${self.budget.max_cost:.2f}" if self.budget.max_cost is not None else ""
        text = f"spent ${spent:.4f}{cap}, in flight ${flying:.4f}"
        history = self.state.pending_history
        if len(history) >= 2 and history[-2]:
            share = min(history[-1] / history[-2], 0.9)
            text += f", projected total ${spent + flying / (1 - share):.4f}"
        return text

    def _waiting(self) -> str:
        files = [s.path for s in self.state.submissions if s.path]
        batches = [s.batch_id for s in self.state.submissions if s.batch_id]
        if files:
            return (
                f"round {self.state.round} written to {', '.join(files)}; run it (e.g. vllm run-batch -i FILE -o "
                "RESULTS --model ...) and run the same command again with --batch-import RESULTS"
            )
        return (
            f"round {self.state.round} in flight ({', '.join(batches)}); {self.progress()}; run the same command "
            "again to pick up the results"
        )


def annotate_in_batches(
    annotator: SVUAMCAnnotator, dataset: datasets.Dataset, *, batch_size: int = 256, desc: str = "SV-UAMC"
) -> datasets.Dataset:
    """`annotator.annotate(dataset)` through the Batch API (see the module docstring)."""
    options = annotator.runtime.batch
    if not isinstance(options, BatchOptions):
        options = BatchOptions()
    return BatchRun(annotator, dataset, options).run(batch_size=batch_size, desc=desc)


def dataset_map(
    annotator: SVUAMCAnnotator, dataset: datasets.Dataset, *, batch_size: int, desc: str
) -> datasets.Dataset:
    """The final map of a batch run, recomputed rather than loaded from `datasets`' cache."""
    result = dataset.map(
        annotator,
        batched=True,
        batch_size=batch_size,
        features=annotator.output_features(dataset.features),
        desc=desc,
        load_from_cache_file=False,
    )
    return fingerprint_outcome(result)


def fingerprint_outcome(result: datasets.Dataset) -> datasets.Dataset:
    """A result with failed rows (a budget, batches that never answered) gets a fingerprint of its own, so that
    `datasets` never serves it, or the maps computed after it, to a later run as if it were the complete result."""
    statuses = result.data.column("status")
    if "failed" in statuses.to_pylist():
        reasons = result.data.column("status_reason").to_pylist()
        result._fingerprint = Hasher.hash([result._fingerprint, "with failed rows", reasons])
    return result


def _undecoded(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """The dataset with its images left as stored bytes (the annotator re-encodes them anyway)."""
    feature = dataset.features.get(column)
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(column, datasets.Image(decode=False))
    return dataset
