"""`SVUAMCAnnotator`: the `Dataset.map(batched=True)` callable that completes missing emotion labels.

    annotator = SVUAMCAnnotator(model="gpt-4o")          # OPENAI_BASE_URL / OPENAI_API_KEY from the environment
    ds = ds.map(annotator, batched=True, batch_size=32)  # also with num_proc > 1

For each row it asks a vision LLM only for the levels the humans left empty, with the human labels as facts in the
prompt: one temperature-0 answer with descriptions and, in the same moment, a request of label-only votes, then at
most one follow-up sized to the decision (`svuamc`); it writes: the filled levels (a human label is
never overwritten), `provenance`, `uncertainty`, `descriptions` (structs keyed `expression`, `valence_arousal`,
`aus`), `mc_samples`, `requests`, `status` (`accepted`, `rejected`, `failed`) and `status_reason`. Acceptance is
per level: an accepted row may leave a requested level `missing` (too uncertain, or contradicting the human labels;
the reason says which), a rejected row generated nothing. Other columns pass through untouched.

Rows of a batch are annotated concurrently on an event loop owned by the annotator (its own thread, so it also
works inside notebooks). `map` waits for each batch's slowest row, so use batches several times `max_concurrency`,
or call `annotator.prefetch(ds)` first to keep requests flowing across batches. Every answer is cached on disk
(`seke_hf.llm.RequestCache`), so a re-run, or a run resumed after a crash, sends no request twice; a `failed` row is
retried by the next run.

Pickling keeps only configuration: the client, loop and cache connection are re-created lazily. The `datasets`
fingerprint hashes what shapes the outputs (model, endpoint, prompts, sampling and acceptance settings, prices: they
size the follow-up requests, versions) and nothing else: the API key, the cache folder, concurrency and timeouts are
runtime settings, hidden from the hash (`_RuntimeSettings`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import PIL.Image
import pyarrow as pa
import pyarrow.compute as pc
from datasets.utils._dill import pklregister

from seke_hf.annotate import prompts, svuamc
from seke_hf.annotate.batch_run import BatchOptions, annotate_in_batches, fingerprint_outcome
from seke_hf.annotate.svuamc import AU_LEVEL, EXPRESSION, VALENCE_AROUSAL, Sample, SVUAMCConfig
from seke_hf.knowledge import consistency
from seke_hf.llm import (
    DEFAULT_BASE_URL,
    ChatBackend,
    Completion,
    Prices,
    Request,
    RequestCache,
    RequestFailed,
    image_data_url,
    read_number,
)
from seke_hf.llm.budget import Budget
from seke_hf.schema import AUS, EXPRESSIONS, LEVELS, NOT_ANNOTATED

logger = logging.getLogger(__name__)

_PREFETCH_CHUNK = 64
"""Rows read from Arrow at a time by `prefetch`."""

UNREADABLE_IMAGE = "unreadable image"
"""How the reason of a row failed by its image starts: no later run can do better, so it is final."""

GREEDY_ROUND = -1
"""`sample_round` of the greedy (temperature-0) request in its cache key."""

SEED_STRIDE = 1000
"""Seeds of successive rounds differ by this much, so a fallback to single-choice requests (seeds `s + i`) never
reuses another round's seeds."""


@dataclass
class _RuntimeSettings:
    """Settings that never change an output: pickled to workers, but hashed as a constant by `datasets`."""

    api_key: str | None = None
    cache_dir: str | None = None
    max_concurrency: int = 32
    timeout: float = 60.0
    max_retries: int = 6
    backoff: float = 1.0
    progress: bool = True
    batch: BatchOptions | None = None
    max_cost: float | None = None
    batch_prices: Prices | None = None


def _constant() -> None:
    return None


@pklregister(_RuntimeSettings)
def _hash_runtime_settings(pickler: Any, obj: _RuntimeSettings) -> None:
    pickler.save_reduce(_constant, (), obj=obj)


@dataclass
class _Row:
    image: Any
    expression: str | None
    valence: float | None
    arousal: float | None
    aus: dict[str, int]  # coded AUs only
    missing: tuple[str, ...]

    @property
    def human(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "valence": self.valence,
            "arousal": self.arousal,
            "aus": self.aus or None,
        }


@dataclass
class _Result:
    status: str
    reason: str = ""
    levels: dict[str, svuamc.LevelResult] = field(default_factory=dict)
    mc_samples: int = 0
    requests: int = 0
    descriptions: dict[str, str | None] = field(default_factory=dict)  # human levels: from the agreeing sample


class _Asked:
    """What one row's requests have brought back so far: the greedy answer, the votes, and their aggregate."""

    def __init__(self, row: _Row, config: SVUAMCConfig) -> None:
        self.levels = row.missing
        self.greedy: Sample | None = None
        self.samples: list[Sample | None] = []
        self.rounds = self.requests = self.choices = 0
        self.agg = svuamc.aggregate([], self.levels, config)

    def add_greedy(self, completion: Completion, config: SVUAMCConfig) -> None:
        self.greedy = (
            prompts.parse_sample(completion.choices[0], logprobs=completion.logprobs[0])
            if completion.choices
            else None
        )
        self._count(completion, 1, config)

    def add_votes(self, completion: Completion, k: int, config: SVUAMCConfig) -> None:
        parsed = [prompts.parse_sample(text) for text in completion.choices[:k]]
        self.samples += parsed + [None] * (k - len(parsed))  # a missing or bad choice is drawn but has no vote
        self.rounds += 1
        self._count(completion, k, config)

    def _count(self, completion: Completion, choices: int, config: SVUAMCConfig) -> None:
        self.requests += completion.requests
        self.choices += choices
        self.agg = svuamc.aggregate(self.samples, self.levels, config, self.greedy)


class SVUAMCAnnotator:
    """Complete the missing emotion labels of a face dataset with a vision LLM (SV-UAMC; see `svuamc`).

    Sampling: with `verify`, one temperature-0 answer (the anchor, verifier and describer, counted `greedy_weight`
    votes) alongside `min_samples` label-only votes at `temperature`; then, while a level is unsettled, at most
    `max_rounds - 1` follow-ups (sized by projection and by the request overhead at `prices`, or `round_samples`
    each), at most `max_samples` votes; settled at `confidence` (expression), `au_confidence` (each AU decisive, or
    ambiguous within 1/2 +- `ambiguous_band`), `va_tolerance` (standard error of valence/arousal). With `logprobs`,
    the greedy request also asks for token logprobs, and the model's own probabilities of its expression and AU set
    weigh in the posteriors as `logprob_weight` votes (a server that refuses logprobs is asked without them; one
    that ignores them leaves the votes alone). Acceptance:
    `consistency_threshold` (a label set must score above it) and `on_inconsistent` ("fallback", "reject", "keep")
    for the knowledge check, `max_uncertainty` per level (merged into the defaults). `knowledge` replaces the system
    prompt's knowledge block. Runtime only (outside the fingerprint): `api_key`, `cache_dir`, `max_concurrency`,
    `timeout`, `max_retries`, `backoff`, `progress`, and how answers are bought: `batch` (True or a `BatchOptions`:
    each sampling round of all rows as one Batch API job at `batch_prices`, by default half of `prices`; see
    `batch_run`) and `max_cost` (US dollars this run may spend; requests that would pass it are not sent and their
    rows end `failed`, reason "budget").
    """

    def __init__(
        self,
        model: str = "gpt-4o",
        base_url: str | None = None,
        api_key: str | None = None,
        min_samples: int = 4,
        max_samples: int = 12,
        temperature: float = 0.8,
        confidence: float = 0.95,
        verify: bool = True,
        max_concurrency: int = 32,
        image_max_side: int = 512,
        cache_dir: str | os.PathLike | None = None,
        *,
        image_column: str = "image",
        round_samples: int | None = None,
        max_rounds: int = 2,
        va_tolerance: float = 0.1,
        au_confidence: float | None = 0.8,
        ambiguous_band: float = 0.3,
        greedy_weight: int = 2,
        logprobs: bool = True,
        logprob_weight: float = 12.0,
        consistency_threshold: float = 0.5,
        on_inconsistent: str = "fallback",
        max_uncertainty: Mapping[str, float] | None = None,
        seed: int = 0,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        prices: Prices | None = None,
        progress: bool = True,
        batch: bool | BatchOptions = False,
        max_cost: float | None = None,
        batch_prices: Prices | None = None,
        knowledge: str | None = None,
    ) -> None:
        self.model = model
        # Resolved now, so the fingerprint names the server the answers come from.
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.temperature = temperature
        self.image_max_side = image_max_side
        self.image_column = image_column
        self.seed = seed
        defaults = SVUAMCConfig().max_uncertainty
        self.config = SVUAMCConfig(
            min_samples=min_samples,
            max_samples=max_samples,
            round_samples=round_samples,
            max_rounds=max_rounds,
            confidence=confidence,
            va_tolerance=va_tolerance,
            verify=verify,
            au_confidence=au_confidence,
            ambiguous_band=ambiguous_band,
            greedy_weight=greedy_weight,
            logprobs=logprobs,
            logprob_weight=logprob_weight,
            consistency_threshold=consistency_threshold,
            on_inconsistent=on_inconsistent,
            max_uncertainty=dict(sorted({**defaults, **(max_uncertainty or {})}.items())),
        )
        self.prices = prices or Prices()  # sizes the follow-up requests, so it shapes outputs
        self.system_prompt = prompts.system_prompt(knowledge)
        self.versions = {"svuamc": svuamc.VERSION, "prompts": prompts.SVUAMC_PROMPT_VERSION}
        self.runtime = _RuntimeSettings(
            api_key=api_key,
            cache_dir=None if cache_dir is None else str(cache_dir),
            max_concurrency=max_concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            batch=BatchOptions() if batch is True else batch or None,
            max_cost=max_cost,
            batch_prices=batch_prices,
            progress=progress,
        )
        self._init_runtime()

    @property
    def logprob_fields(self) -> tuple[str, ...]:
        """The answer fields whose token probabilities the greedy request asks for (none with `logprobs=False`)."""
        return prompts.LOGPROB_FIELDS if self.config.logprobs else ()

    # -- runtime state, never pickled ------------------------------------------------------------------------------
    def _init_runtime(self) -> None:
        self._backend: ChatBackend | None = None
        self._budget: Budget | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._progress: Any = None
        self._prefetching: asyncio.Task[None] | None = None
        self._prefetch_on_first_batch: datasets.Dataset | None = None
        self._hinted = False
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        # After a failed request, results mapped before it may hold `failed` rows: a new mark in the fingerprint
        # makes `datasets` compute the next map instead of serving one of them from its cache as if it were final.
        mark = RequestCache.in_folder(self.runtime.cache_dir).failure_mark()
        if mark is not None:
            state["_failure_mark"] = mark
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    @property
    def backend(self) -> ChatBackend:
        """The process's backend (created on first use; its `tally` holds this process's usage)."""
        if self._backend is None:
            rt = self.runtime
            self._backend = ChatBackend(
                self.model,
                self.base_url,
                rt.api_key,
                max_concurrency=rt.max_concurrency,
                timeout=rt.timeout,
                max_retries=rt.max_retries,
                backoff=rt.backoff,
                cache=RequestCache.in_folder(rt.cache_dir),
                prices=self.paid_prices,
            )
            if rt.max_cost is not None:
                self._backend.gate = self.budget
        return self._backend

    @property
    def budget(self) -> Budget:
        """What this process spent (and may spend: `max_cost`), reserved before each request is sent."""
        if self._budget is None:
            self._budget = Budget(self.runtime.max_cost, self.paid_prices)
        return self._budget

    @property
    def paid_prices(self) -> Prices:
        """What answers cost in this mode: `batch_prices` (default: half of `prices`) in batch mode."""
        return self.prices_for(batch=self.runtime.batch is not None)

    def prices_for(self, *, batch: bool) -> Prices:
        """The prices of answers bought online, or through the Batch API."""
        rt = self.runtime
        return (rt.batch_prices or self.prices.batch()) if batch else self.prices

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run on the annotator's own event loop thread (works whether or not the caller has a running loop)."""
        self._start_loop()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _start_loop(self) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="seke-hf-annotator", daemon=True)
                self._thread.start()

    def prefetch(self, dataset: datasets.Dataset, *, rows_ahead: int | None = None) -> None:
        """Start annotating `dataset` in the background; a following `dataset.map(self, ...)` gives the same output.

        Why: `map` hands rows over one batch at a time and waits for each batch's slowest row, so small batches leave
        most of `max_concurrency` idle. Prefetching keeps up to `rows_ahead` rows (default 4 x max_concurrency) in
        flight across batch boundaries; `map` then joins the requests in flight or reads them from the cache. It
        sends the same requests `map` would, never twice. For single-process maps (`num_proc` workers would only
        share what is already in the cache).
        """
        ahead = rows_ahead or 4 * self.runtime.max_concurrency
        self._start_loop()
        self._stop_prefetch()
        self._prefetching = self._run(_started(self._prefetch(dataset, ahead)))

    def annotate(
        self, dataset: datasets.Dataset, *, batch_size: int = 256, num_proc: int | None = None, desc: str = "SV-UAMC"
    ) -> datasets.Dataset:
        """`dataset.map(self, ...)` done the way that keeps requests flowing: prefetched in a single process, with
        `output_features` so a plain dataset gets a ClassLabel expression. The same output as a bare `map`.
        With `batch`, through the Batch API (`batch_run`); with `max_cost`, in one process (one budget).

        The prefetch starts with the map's first batch, so a result `datasets` serves from its cache starts none. A
        cached result holding `failed` rows is never returned as final: it is computed again (answers already
        received come from the request cache; the failed rows are asked again).
        """
        if self.runtime.batch is not None:
            return annotate_in_batches(self, dataset, batch_size=batch_size, desc=desc)
        if self.runtime.max_cost is not None and num_proc:
            raise ValueError("max_cost needs a single process (one budget): drop num_proc")
        started = time.time()
        result = self._map(dataset, batch_size, num_proc, desc)
        if _failed_rows(result) and not _written_since(result, started):
            logger.info("SV-UAMC: the cached result of this map holds failed rows: annotating again to retry them")
            result = self._map(dataset, batch_size, num_proc, desc, load_from_cache_file=False)
        return fingerprint_outcome(result)

    def _map(
        self, dataset: datasets.Dataset, batch_size: int, num_proc: int | None, desc: str, **kwargs: Any
    ) -> datasets.Dataset:
        self._prefetch_on_first_batch = None if num_proc else dataset
        try:
            result = dataset.map(
                self,
                batched=True,
                batch_size=batch_size,
                num_proc=num_proc,
                features=self.output_features(dataset.features),
                desc=desc,
                **kwargs,
            )
        except BaseException:
            self._stop_prefetch()
            raise
        finally:
            self._prefetch_on_first_batch = None
        self._stop_prefetch(wait=True)
        return result

    async def _prefetch(self, dataset: datasets.Dataset, rows_ahead: int) -> None:
        names = [n for n in (self.image_column, "expression", "valence", "arousal", "aus") if n in dataset.column_names]
        arrow = dataset.with_format("arrow").select_columns(names)
        window = asyncio.Semaphore(rows_ahead)
        running: set[asyncio.Task[Any]] = set()

        async def one(row: _Row) -> None:
            try:
                await self._annotate(row)
            finally:
                window.release()

        try:
            for start in range(0, len(dataset), _PREFETCH_CHUNK):
                table = await asyncio.to_thread(arrow.__getitem__, slice(start, start + _PREFETCH_CHUNK))
                columns = {name: table.column(name).to_pylist() for name in names}
                for i in range(table.num_rows):
                    await window.acquire()
                    task = asyncio.ensure_future(one(self._read_row(columns, i)))
                    running.add(task)
                    task.add_done_callback(running.discard)
            await asyncio.gather(*running)
        finally:  # cancelled (or failed): no row of ours is left pending on the loop
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _stop_prefetch(self, wait: bool = False) -> None:
        """End a prefetch: let it finish (`wait`, after a map that read every row) or cancel it, and return once
        none of its tasks is left, so nothing of ours is pending when the loop closes."""
        task, self._prefetching = self._prefetching, None
        if task is None:
            return
        if not wait:
            self._loop.call_soon_threadsafe(task.cancel)
        outcome = self._run(_outcome(task))
        if isinstance(outcome, Exception):  # the map reads the same rows and reports what is wrong with them
            logger.debug("SV-UAMC prefetch ended early: %s", outcome)

    def close(self) -> None:
        """Close the client, the loop and the cache connection (they reopen on next use)."""
        if self._loop is not None:
            self._stop_prefetch()
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        if self._backend is not None and self._backend.cache is not None:
            self._backend.cache.close()
        if self._progress is not None:
            self._progress.close()
        self._init_runtime()

    async def _shutdown(self) -> None:
        """Cancel what still runs on the loop, close the client and let worker threads finish, so that no "Task was
        destroyed" or "Event loop is closed" message reaches the user after `close`."""
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._backend is not None:
            await self._backend.aclose()
        await asyncio.get_running_loop().shutdown_asyncgens()
        await asyncio.get_running_loop().shutdown_default_executor()

    def usage_summary(self, since: float | None = None) -> str:
        """Requests, tokens (with the provider-cached share) and estimated cost: of this process so far, or, with
        `since` (a `time.time()`), of everything fetched since then by every process (`num_proc` workers too)."""
        summary = self.backend.summary(None if since is None else self.backend.fetched_since(since))
        if self.runtime.max_cost is not None or self.runtime.batch is not None:
            summary += f"; budget: {self.budget.summary()}"
        return summary

    # -- the map function ------------------------------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, list[pa.Scalar]]:
        if self.image_column not in batch:
            raise KeyError(
                f"no image column {self.image_column!r} in the dataset (columns: {sorted(batch)}); "
                "pass image_column=... to SVUAMCAnnotator"
            )
        if self._prefetch_on_first_batch is not None:  # `annotate`: this map is computed, not read from a cache
            dataset, self._prefetch_on_first_batch = self._prefetch_on_first_batch, None
            self.prefetch(dataset)
        batch = _read_columns(batch, (self.image_column, "expression", "valence", "arousal", "aus"))
        rows = [self._read_row(batch, i) for i in range(len(batch[self.image_column]))]
        if not self._hinted and self._prefetching is None and len(rows) < 2 * self.runtime.max_concurrency:
            logger.info(
                "SV-UAMC: batches of %d rows keep at most that many requests in flight and wait for their slowest "
                "row; batch_size=%d or more (or annotator.prefetch(ds) first) keeps max_concurrency=%d busy",
                len(rows),
                4 * self.runtime.max_concurrency,
                self.runtime.max_concurrency,
            )
        self._hinted = True
        results = self._run(self._annotate_all(rows))
        backend = self.backend
        logger.debug("SV-UAMC batch of %d rows done; this process so far: %s", len(rows), backend.summary())
        return self._output(batch, rows, results)

    def output_features(self, features: datasets.Features | None = None) -> datasets.Features:
        """The features of the mapped dataset (pass as `ds.map(..., features=...)` to get a ClassLabel expression
        on a dataset that had no expression column)."""
        out = dict(features or {})
        if not isinstance(out.get("expression"), datasets.Value):
            out["expression"] = datasets.ClassLabel(names=EXPRESSIONS)
        out["valence"] = out.get("valence", datasets.Value("float32"))
        out["arousal"] = out.get("arousal", datasets.Value("float32"))
        out["aus"] = out.get("aus", {au: datasets.Value("int8") for au in AUS})
        out.update(_OUTPUT_FEATURES)
        return datasets.Features(out)

    # -- reading rows ----------------------------------------------------------------------------------------------
    def _read_row(self, batch: Mapping[str, Sequence[Any]], i: int) -> _Row:
        expression = _expression_name(_cell(batch, "expression", i))
        valence, arousal = _number(_cell(batch, "valence", i)), _number(_cell(batch, "arousal", i))
        if valence is None or arousal is None:
            valence = arousal = None
        aus_cell = _cell(batch, "aus", i) or {}
        aus = {au: int(v) for au, v in aus_cell.items() if au in AUS and v in (0, 1)}
        have = {EXPRESSION: expression is not None, VALENCE_AROUSAL: valence is not None, AU_LEVEL: bool(aus)}
        missing = tuple(level for level in LEVELS if not have[level])
        return _Row(batch[self.image_column][i], expression, valence, arousal, aus, missing)

    # -- annotating ------------------------------------------------------------------------------------------------
    async def _annotate_all(self, rows: list[_Row]) -> list[_Result]:
        progress = self._progress_bar()

        async def one(row: _Row) -> _Result:
            try:
                return await self._annotate(row)
            finally:
                if progress is not None:
                    progress.update(1)

        results = await asyncio.gather(*(one(row) for row in rows))
        if progress is not None:
            t, prices = self.backend.tally, self.backend.prices
            progress.set_postfix(
                requests=t.requests, cached=t.cache_hits, cost=prices.format(t.cost(prices), 4), refresh=True
            )
        return results

    def _progress_bar(self) -> Any:
        if not self.runtime.progress:
            return None
        if self._progress is None:
            from tqdm.auto import tqdm

            self._progress = tqdm(desc="SV-UAMC", unit="row", dynamic_ncols=True, leave=False)
        return self._progress

    async def _annotate(self, row: _Row) -> _Result:
        if not row.missing:
            return _Result("accepted")
        try:
            image_url = await asyncio.to_thread(image_data_url, row.image, self.image_max_side)
        except (OSError, ValueError, TypeError, PIL.Image.DecompressionBombError) as e:
            where = row.image.get("path") if isinstance(row.image, Mapping) else None
            return _Result("failed", f"{UNREADABLE_IMAGE}{f' {where!r}' if where else ''}: {e}")
        asked = _Asked(row, self.config)
        try:
            await self._sample(row, image_url, asked)
        except RequestFailed as e:
            if self.backend.cache is not None:
                await asyncio.to_thread(self.backend.cache.note_failure)
            return _Result("failed", str(e), mc_samples=asked.choices, requests=asked.requests)
        decision = svuamc.decide(asked.samples, asked.agg, self.config, human=row.human, consistency=consistency)
        return _Result(
            decision.status,
            decision.reason,
            decision.levels,
            mc_samples=asked.choices,
            requests=asked.requests,
            descriptions=_agreeing_descriptions(asked.greedy, asked.samples, decision.levels),
        )

    async def _sample(self, row: _Row, image_url: str, asked: _Asked) -> None:
        """The greedy answer and the first votes (two requests at once), then follow-ups while a level is unsettled.

        Both requests share the system prompt and the image, so a provider's prompt cache serves the second; the
        votes ask for labels only, the greedy answer also for the descriptions.
        """
        config, backend = self.config, self.backend
        known = prompts.known_label_lines(row.expression, row.valence, row.arousal, row.aus)
        seed = self.seed + _example_seed(image_url, known)
        describe_votes = not config.verify
        vote_messages = prompts.sampling_messages(
            self.system_prompt, row.missing, known, image_url, describe=describe_votes
        )
        vote_format = prompts.response_format(row.missing, descriptions=describe_votes)

        async def votes(k: int, sample_round: int) -> Completion:
            return await backend.complete(
                vote_messages,
                n=k,
                temperature=self.temperature,
                seed=seed + SEED_STRIDE * sample_round,
                response_format=vote_format,
                sample_round=sample_round,
            )

        async def greedy() -> Completion:
            return await backend.send(
                Request(
                    prompts.sampling_messages(self.system_prompt, row.missing, known, image_url),
                    temperature=0.0,
                    seed=seed,
                    response_format=prompts.response_format(row.missing),
                    sample_round=GREEDY_ROUND,
                    logprob_fields=self.logprob_fields,
                )
            )

        first = svuamc.next_round(asked.agg, config)
        jobs = [greedy()] if config.verify else []
        if first:
            jobs.append(votes(first, 0))
        answers = await asyncio.gather(*jobs)
        if config.verify:
            asked.add_greedy(answers[0], config)
        if first:
            asked.add_votes(answers[-1], first, config)
        overhead = _overhead(answers[-1], first or 1, self.prices) if first else 0.0
        while (k := svuamc.next_round(asked.agg, config, asked.rounds, overhead)) > 0:
            asked.add_votes(await votes(k, asked.rounds), k, config)

    # -- writing the output columns --------------------------------------------------------------------------------
    def _output(
        self, batch: Mapping[str, Sequence[Any]], rows: list[_Row], results: list[_Result]
    ) -> dict[str, list[pa.Scalar]]:
        string_expressions = "expression" in batch and any(isinstance(v, str) for v in batch["expression"])
        expressions, valences, arousals, aus_out = [], [], [], []
        provenance, uncertainty, descriptions, au_uncertainty = [], [], [], []
        for i, (row, result) in enumerate(zip(rows, results, strict=True)):
            generated = result.levels if result.status == "accepted" else {}
            prov, unc, desc = {}, {}, {}
            for level in LEVELS:
                if level not in row.missing:
                    prov[level], unc[level] = "human", None
                    desc[level] = result.descriptions.get(level) if result.status == "accepted" else None
                elif level in generated:
                    prov[level], unc[level] = "generated", float(generated[level].uncertainty)
                    desc[level] = generated[level].description
                else:
                    prov[level], unc[level], desc[level] = "missing", None, None
            expression = generated[EXPRESSION].value if EXPRESSION in generated else row.expression
            if string_expressions:
                expressions.append(expression if expression is not None else batch["expression"][i])
            else:
                expressions.append(NOT_ANNOTATED if expression is None else EXPRESSIONS.index(expression))
            valence, arousal = _cell(batch, "valence", i), _cell(batch, "arousal", i)
            if VALENCE_AROUSAL in generated:  # a lone human valence (or arousal) is kept
                valence = generated[VALENCE_AROUSAL].value[0] if _number(valence) is None else valence
                arousal = generated[VALENCE_AROUSAL].value[1] if _number(arousal) is None else arousal
            valences.append(valence)
            arousals.append(arousal)
            per_au = generated[AU_LEVEL].per_au if AU_LEVEL in generated else None
            au_uncertainty.append({au: per_au.get(au) if per_au else None for au in AUS})  # nulls, as `uncertainty`
            if AU_LEVEL in generated:
                aus_out.append({au: int(au in generated[AU_LEVEL].value) for au in AUS})
            else:
                original = _cell(batch, "aus", i) or {}
                aus_out.append({au: original.get(au, NOT_ANNOTATED) for au in AUS})
            provenance.append(prov)
            uncertainty.append(unc)
            descriptions.append(desc)
        columns = {
            "expression": pa.array(expressions, pa.string() if string_expressions else pa.int64()),
            "valence": pa.array(valences, pa.float32()),
            "arousal": pa.array(arousals, pa.float32()),
            "aus": pa.array(aus_out, _AUS_TYPE),
            "provenance": pa.array(provenance, _struct(pa.string())),
            "uncertainty": pa.array(uncertainty, _struct(pa.float32())),
            "au_uncertainty": pa.array(au_uncertainty, _AU_UNCERTAINTY_TYPE),
            "descriptions": pa.array(descriptions, _struct(pa.string())),
            "mc_samples": pa.array([r.mc_samples for r in results], pa.int32()),
            "requests": pa.array([r.requests for r in results], pa.int32()),
            "status": pa.array([r.status for r in results], pa.string()),
            "status_reason": pa.array([r.reason for r in results], pa.string()),
        }
        # Lists of Arrow scalars: `datasets` keeps their exact types, so a batch whose values are all null (say, no
        # generated valence) never fixes a column's type to `null` (a returned pa.Table would drop the other columns).
        return {name: list(array) for name, array in columns.items()}

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SVUAMCAnnotator(model={self.model!r}, base_url={self.base_url!r}, min_samples={c.min_samples}, "
            f"max_samples={c.max_samples}, temperature={self.temperature}, confidence={c.confidence}, "
            f"verify={c.verify})"
        )


def _failed_rows(dataset: datasets.Dataset) -> int:
    """Rows that failed for a reason another run may not meet (not an image that cannot be read)."""
    table = dataset.data
    failed = pc.equal(table.column("status"), "failed")
    retryable = pc.invert(pc.starts_with(table.column("status_reason"), UNREADABLE_IMAGE))
    return pc.sum(pc.and_(failed, retryable)).as_py() or 0


def _written_since(dataset: datasets.Dataset, started: float) -> bool:
    """Whether `dataset` was computed after `started` (an in-memory one always was; a cached one has older files)."""
    files = [f["filename"] for f in dataset.cache_files]
    return not files or any(os.path.getmtime(name) >= started - 1 for name in files)


async def _started(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """`coroutine` as a task of the running loop: a handle that can be cancelled and then awaited to its end."""
    return asyncio.ensure_future(coroutine)


async def _outcome(task: asyncio.Task[Any]) -> BaseException | None:
    """Wait for `task` to end, however it ends; its exception, if any."""
    (outcome,) = await asyncio.gather(task, return_exceptions=True)
    return outcome if isinstance(outcome, BaseException) else None


def _struct(value_type: pa.DataType) -> pa.StructType:
    return pa.struct([(level, value_type) for level in LEVELS])


_AUS_TYPE = pa.struct([(au, pa.int8()) for au in AUS])
_AU_UNCERTAINTY_TYPE = pa.struct([(au, pa.float32()) for au in AUS])
_OUTPUT_FEATURES = {
    "provenance": {level: datasets.Value("string") for level in LEVELS},
    "uncertainty": {level: datasets.Value("float32") for level in LEVELS},
    "au_uncertainty": {au: datasets.Value("float32") for au in AUS},  # each generated AU's own (null: not generated)
    "descriptions": {level: datasets.Value("string") for level in LEVELS},
    "mc_samples": datasets.Value("int32"),
    "requests": datasets.Value("int32"),
    "status": datasets.Value("string"),
    "status_reason": datasets.Value("string"),
}


def _read_columns(batch: Mapping[str, Sequence[Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The columns the annotator reads, taken from the Arrow data where `datasets` hands over a lazy batch.

    Reading `batch["image"]` would decode every image, and `map` would then write the decoded images back,
    re-encoded as PNG: the raw `{"bytes", "path"}` cells leave the image column byte-for-byte untouched.
    """
    table = getattr(batch, "pa_table", None)
    pending = getattr(batch, "keys_to_format", ())
    columns = {}
    for name in names:
        if name in batch:
            raw = table is not None and name in pending
            columns[name] = table.column(name).to_pylist() if raw else list(batch[name])
    return columns


def _cell(batch: Mapping[str, Sequence[Any]], column: str, i: int) -> Any:
    values = batch.get(column)
    return None if values is None else values[i]


def _expression_name(value: Any) -> str | None:
    """A ClassLabel index or a name -> canonical name; anything else (-1, None, "", unknown) is not annotated."""
    if isinstance(value, str):
        name = value.strip().lower()
        return name if name in EXPRESSIONS else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(EXPRESSIONS):
        return EXPRESSIONS[value]
    return None


def _number(value: Any) -> float | None:
    """A valence or arousal cell: a finite number in [-1, 1], else not annotated."""
    return read_number(value, bounds=(-1.0, 1.0))


def _example_seed(image_url: str, known: Sequence[str]) -> int:
    """A per-example seed (stable across processes): each example gets its own sampling stream."""
    digest = hashlib.sha256((image_url + "\n".join(known)).encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - SEED_STRIDE * 64)


def _agreeing_descriptions(
    greedy: Sample | None, samples: Sequence[Sample | None], levels: Mapping[str, svuamc.LevelResult]
) -> dict[str, str | None]:
    """Per level, the description of the first answer (greedy first) agreeing with every generated label (else the
    first one that has a description)."""
    usable = [s for s in (greedy, *samples) if s is not None]
    agreeing = [s for s in usable if all(svuamc.agrees(s, level, r.value) for level, r in levels.items())]
    return {level: next((text for s in (*agreeing, *usable) if (text := s.describe(level))), None) for level in LEVELS}


def _overhead(completion: Completion, choices: int, prices: Prices) -> float:
    """The request's prompt cost in units of one choice's completion cost, from its observed token usage (at GPT-4o
    list prices where the annotator's prices are unknown: only their ratio matters)."""
    usage = completion.usage
    prices = prices if prices.known else Prices()
    return svuamc.request_overhead(
        prices.cost(usage.prompt_tokens, usage.cached_tokens, 0), prices.cost(0, 0, usage.completion_tokens), choices
    )
