"""Asking a vision LLM the FEAB questions, through the model layer (`seke_hf.llm`: concurrency, retries, cache).

Each (sample, task) pair with a reference label that will be scored is asked once, at temperature 0 with a fixed
seed, in a forced answer slot (`tasks.py`). With `answer_format="auto"` the first question probes the server:
if it accepts a strict JSON schema, every question uses one; if the backend had to fall back (the server rejects
`response_format`), every question, the probe included, is asked with an `<answer>` tag instead, so all answers of a
run share one prompt. The probe's verdict is remembered in the request cache, so a re-run makes the same choice
without asking and is answered from the cache.

A choice without any text (the OpenAI API's structured-output refusal puts its text in `message.refusal` and leaves
`content` empty) is recorded as a refusal. A request that still fails after the backend's retries is recorded as an
`error`; both count against the model when scored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import PIL.Image

from seke_hf.evaluate.scoring import ERROR, questions, read_prediction, reference_rows, score, write_predictions
from seke_hf.evaluate.tasks import ANSWER_FORMATS, FEAB_PROMPT_VERSION, TASK_NAMES, check_tasks, get_task
from seke_hf.llm import ChatBackend, Request, RequestCache, RequestFailed, image_data_url, open_image, request_key
from seke_hf.urls import public_url

logger = logging.getLogger(__name__)

ROWS_PER_CHUNK = 64
"""Rows whose images are encoded and asked about at once: bounds memory on a large benchmark."""


@dataclass
class Evaluation:
    """One model's run on a benchmark: its predictions (JSONL records) and their scores."""

    name: str
    scores: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationSettings:
    """How one model is asked the FEAB questions: the model and server, what is asked, sampling, and runtime.

    `tasks` the questions (task names); `answer_format` "auto" (probe the server), "json_schema" or "tag";
    `temperature`, `seed`, `max_tokens` sampling; `image_column`, `image_max_side` the images sent; `limit` the first
    rows only; `include_generated` also asks where the reference label was generated; `max_concurrency`, `timeout`,
    `max_retries` the client; `cache_dir` (default that of the annotator) and `use_cache` the request cache;
    `predictions_path` where the JSONL predictions go; `progress` a progress bar.
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    tasks: Iterable[str] = TASK_NAMES
    name: str | None = None
    answer_format: str = "auto"
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int | None = None
    image_column: str = "image"
    image_max_side: int = 512
    limit: int | None = None
    include_generated: bool = False
    max_concurrency: int = 32
    timeout: float = 60.0
    max_retries: int = 6
    cache_dir: str | os.PathLike | None = None
    use_cache: bool = True
    predictions_path: str | os.PathLike | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", check_tasks(self.tasks))
        if self.answer_format not in ("auto", *ANSWER_FORMATS):
            raise ValueError(f"answer_format must be 'auto' or one of {ANSWER_FORMATS}, got {self.answer_format!r}")

    @classmethod
    def of(
        cls, model: str | EvaluationSettings, base_url: str | None = None, api_key: str | None = None, **options: Any
    ) -> EvaluationSettings:
        """Settings from `run`'s arguments: a model name and keyword options, or settings with options overriding."""
        if isinstance(model, EvaluationSettings):
            given = {"base_url": base_url, "api_key": api_key}
            return dataclasses.replace(model, **{k: v for k, v in given.items() if v is not None}, **options)
        return cls(model, base_url, api_key, **options)


def run(
    dataset: Any,
    model: str | EvaluationSettings,
    base_url: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> Evaluation:
    """Ask `model` (any OpenAI-compatible vision LLM at `base_url`) the FEAB `tasks` on `dataset`, and score it.

    `options` are the fields of `EvaluationSettings` (or pass settings as `model`). `dataset` holds rows in the
    unified schema (a `datasets.Dataset`, e.g. FEAB's test split); `limit` keeps its first rows. Only questions with
    a reference label that counts (human by default) are asked. Answers are cached (`cache_dir`, default that of the
    annotator), so a re-run costs nothing; `predictions_path` writes the JSONL. Works inside a running event loop too
    (a notebook): the run then gets a thread of its own.
    """
    return _run_sync(arun(dataset, EvaluationSettings.of(model, base_url, api_key, **options)))


async def arun(
    dataset: Any,
    model: str | EvaluationSettings,
    base_url: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> Evaluation:
    """The coroutine behind `run` (same arguments), for callers that own an event loop."""
    settings = EvaluationSettings.of(model, base_url, api_key, **options)
    if settings.limit is not None:
        dataset = _head(dataset, settings.limit)
    cache = RequestCache.in_folder(settings.cache_dir) if settings.use_cache else None
    backend = ChatBackend(
        settings.model,
        settings.base_url,
        settings.api_key,
        max_concurrency=settings.max_concurrency,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        cache=cache,
    )
    asker = _Asker(backend, dataset, settings)
    try:
        rows = reference_rows(dataset)
        wanted = questions(rows, settings.tasks, settings.include_generated)
        position = {row["sample_id"]: i for i, row in enumerate(rows)}
        numbered = [(position[sample_id], sample_id, task) for sample_id, task in wanted]
        records = await asker.ask_all(numbered, settings.answer_format, settings.progress)
    finally:
        await backend.aclose()
        if cache is not None:
            cache.close()
    if settings.predictions_path is not None:
        write_predictions(records, settings.predictions_path)
    info = {
        "model": settings.model,
        "endpoint": public_url(backend.endpoint),
        "answer_format": asker.answer_format,
        "prompt_version": FEAB_PROMPT_VERSION,
        "temperature": settings.temperature,
        "seed": settings.seed,
        "questions": len(records),
        "failed_questions": sum(record["status"] == ERROR for record in records),
        "requests": backend.tally.requests,
        "cache_hits": backend.tally.cache_hits,
        "prompt_tokens": backend.tally.usage.prompt_tokens,
        "completion_tokens": backend.tally.usage.completion_tokens,
        "estimated_cost_usd": round(backend.tally.cost(backend.prices), 6),
    }
    logger.info("evaluated %s: %s", settings.model, backend.summary())
    scores = score(records, rows, tasks=settings.tasks, include_generated=settings.include_generated)
    return Evaluation(settings.name or settings.model, scores, records, info)


class _Asker:
    """Asks the questions of one run, chunk by chunk, each image encoded once for all its tasks."""

    def __init__(self, backend: ChatBackend, dataset: Any, settings: EvaluationSettings) -> None:
        self.backend, self.dataset, self.settings = backend, dataset, settings
        self.answer_format = "json_schema"

    async def ask_all(
        self, wanted: list[tuple[int, str, str]], answer_format: str, progress: bool
    ) -> list[dict[str, Any]]:
        """Records for `wanted` (row index, sample id, task), in that order."""
        from tqdm.auto import tqdm

        if not wanted:
            return []
        by_row: dict[int, list[tuple[str, str]]] = {}
        for row, sample_id, task in wanted:
            by_row.setdefault(row, []).append((sample_id, task))
        records: dict[tuple[str, str], dict[str, Any]] = {}
        stopped: str | None = None
        with tqdm(total=len(wanted), desc="FEAB questions", unit="q", disable=not progress) as bar:
            first_row, first_id, first_task = wanted[0]
            probe = await self._choose_format(answer_format, first_id, first_task, self._image_url(first_row))
            records[(first_id, first_task)] = probe
            bar.update()
            if probe["status"] == ERROR and not self.backend.tally.choices:  # not one answer: nothing to ask
                stopped = f"the first question failed ({probe['error']})"
            order = list(by_row)
            for start in range(0, len(order), ROWS_PER_CHUNK) if stopped is None else ():
                urls = {row: self._image_url(row) for row in order[start : start + ROWS_PER_CHUNK]}

                async def ask(url: str, sample_id: str, task: str) -> None:
                    records[(sample_id, task)] = await self._ask(sample_id, task, url, self.answer_format)
                    bar.update()

                pending = [(url, q) for row, url in urls.items() for q in by_row[row] if q not in records]
                await asyncio.gather(*(ask(url, *question) for url, question in pending))
                failed = [records[q] for _, q in pending if records[q]["status"] == ERROR]
                if pending and len(failed) == len(pending):
                    stopped = f"all {len(pending)} questions of a chunk failed (e.g. {failed[0]['error']})"
                    break
        if stopped is not None:
            unasked = [(sample_id, task) for _, sample_id, task in wanted if (sample_id, task) not in records]
            logger.warning(
                "%s at %s: not asking the %d remaining questions", stopped, self.backend.endpoint, len(unasked)
            )
            for sample_id, task in unasked:
                records[(sample_id, task)] = self._record(sample_id, task, self.answer_format)
                records[(sample_id, task)].update(answer=None, error=f"not asked: {stopped}")
                self._read(records[(sample_id, task)])
        return [records[(sample_id, task)] for _, sample_id, task in wanted]

    async def _choose_format(self, requested: str, sample_id: str, task: str, url: str) -> dict[str, Any]:
        """Settle the answer format; returns the record of the first question, asked alone (a server that cannot
        answer it stops the run then, not after every question has been retried)."""
        if requested != "auto":
            self.answer_format = requested
            return await self._ask(sample_id, task, url, requested)
        cache, memo_key = self.backend.cache, self._format_memo_key()
        memo = cache.get(memo_key) if cache is not None else None
        if memo is not None and memo.get("answer_format") in ANSWER_FORMATS:  # a bad entry is a miss
            self.answer_format = memo["answer_format"]
            return await self._ask(sample_id, task, url, self.answer_format)
        record = await self._ask(sample_id, task, url, "json_schema")
        if record["status"] == ERROR:
            return record  # nothing learned; keep structured output and ask again next run
        self.answer_format = "json_schema" if self.backend.schema_support == "json_schema" else "tag"
        if self.answer_format == "tag":
            logger.warning("the server rejects structured output: asking for <answer> tags instead")
        if cache is not None:
            cache.put(memo_key, {"answer_format": self.answer_format})
        return record if self.answer_format == "json_schema" else await self._ask(sample_id, task, url, "tag")

    def _format_memo_key(self) -> str:
        return request_key(
            {"seke_hf.evaluate": "answer_format", "model": self.backend.model, "endpoint": self.backend.endpoint}
        )

    def _record(self, sample_id: str, task_name: str, answer_format: str) -> dict[str, Any]:
        return {
            "sample_id": sample_id,
            "task": task_name,
            "model": self.backend.model,
            "answer_format": answer_format,
            "prompt_version": FEAB_PROMPT_VERSION,
        }

    @staticmethod
    def _read(record: dict[str, Any]) -> None:
        parsed = read_prediction(record, record["task"])  # the same reading as `score` gives the saved record
        record.update(status=parsed.status, fields=parsed.fields or None, reason=parsed.reason)

    async def _ask(self, sample_id: str, task_name: str, url: str, answer_format: str) -> dict[str, Any]:
        task = get_task(task_name)
        record = self._record(sample_id, task_name, answer_format)
        try:
            completion = await self.backend.send(
                Request(
                    task.messages(url, answer_format),
                    temperature=self.settings.temperature,
                    seed=self.settings.seed,
                    response_format=task.response_format(answer_format),
                    max_tokens=self.settings.max_tokens,
                )
            )
        except RequestFailed as e:
            record.update(answer=None, error=str(e))
        else:
            text = completion.choices[0] if completion.choices else None
            record["answer"] = text
            if text is None:
                record["refusal"] = ""  # no content: the API puts a structured-output refusal in message.refusal
        self._read(record)
        return record

    def _image_url(self, row: int) -> str:
        column = self.settings.image_column
        example = self.dataset[row]
        if column not in example:
            raise ValueError(f"no {column!r} column (columns: {', '.join(example)}); pass image_column=...")
        return image_data_url(_image(example[column], example.get("sample_id", row)), self.settings.image_max_side)


def _image(cell: Any, sample: Any) -> PIL.Image.Image:
    """A decoded image from a decoded or undecoded `Image()` cell, or a clear error naming the sample."""
    if isinstance(cell, Mapping) and (cell.get("bytes") or cell.get("path")):
        try:
            return open_image(cell)
        except (OSError, PIL.UnidentifiedImageError, PIL.Image.DecompressionBombError) as e:
            raise ValueError(f"{sample}: unreadable image {cell.get('path') or '(embedded bytes)'}: {e}") from e
    if not isinstance(cell, PIL.Image.Image):
        raise ValueError(f"{sample}: no image (got {type(cell).__name__})")
    return cell


def _head(dataset: Any, limit: int) -> Any:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if hasattr(dataset, "select"):
        return dataset.select(range(min(limit, len(dataset))))
    return list(dataset)[:limit]


def _run_sync(coroutine: Coroutine[Any, Any, Evaluation]) -> Evaluation:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
