"""Scoring predictions against FEAB references: which labels count, how answers are matched, what is reported.

References are rows in the unified schema (a `datasets.Dataset` or dicts). Which labels count:
- by default only human labels. A row may carry the annotator's `provenance` struct (`expression`,
  `valence_arousal`, `aus`, each `human`, `generated` or `missing`); a level marked `generated` counts only with
  `include_generated=True`, and `missing` never. A row without provenance counts as human wherever it is labelled
  (expression != -1, valence and arousal not null, an AU coded 0 or 1; an AU coded -1 is left out for that AU).
  Provenance is per level: a partly human, partly generated AU struct follows its level's mark.

Predictions are records, one per (sample, task), as `run` writes them and as anyone can write them for a model run
elsewhere (JSONL, one object per line)::

    {"sample_id": "rafdb/test_0001", "task": "expression", "answer": "<answer>happiness</answer>"}
    {"sample_id": "rafdb/test_0001", "task": "valence_arousal", "valence": 0.41, "arousal": 0.12}
    {"sample_id": "rafdb/test_0001", "task": "aus", "aus": ["AU6", "AU12"]}
    {"sample_id": "rafdb/test_0002", "expression": "sadness", "valence": -0.5, "arousal": -0.2, "aus": []}

A raw `answer` is read by the strict parser (the current parser is always the judge, so old prediction files are
re-read when it improves). Without `answer`, the label fields are read through the same parser's JSON path, so
"joy" still means happiness and an out-of-range valence is unparseable, exactly as if the model had written them. A
record without `task` may carry fields of several tasks. Without an answer, `"refusal": "..."` marks a refusal the
server reported (OpenAI's `message.refusal`) and `"error": "..."` a request that failed.

Every labelled reference is scored: a reference with no prediction counts as `missing` (wrong, like an unparseable
answer), so a partial run cannot look better than it is. Predictions for unknown sample ids are counted and ignored.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from seke_hf.evaluate import metrics
from seke_hf.evaluate.parse import MISSING, OK, REFUSAL, UNPARSEABLE, ParsedAnswer, parse_answer
from seke_hf.evaluate.tasks import TASK_NAMES, check_tasks
from seke_hf.schema import AUS, EXPRESSIONS, NOT_ANNOTATED

logger = logging.getLogger(__name__)

ERROR = "error"
"""Status of a question whose request failed (after the backend's retries)."""

STATUSES = (OK, REFUSAL, UNPARSEABLE, ERROR, MISSING)

HUMAN, GENERATED = "human", "generated"

REFERENCE_COLUMNS = ("sample_id", "source", "expression", "valence", "arousal", "aus", "provenance")

MAX_EXAMPLES = 5
"""Unusable answers quoted per task and status in a score, so a reader sees what the parser refused."""

MAX_QUOTE = 200
"""Characters of a quoted answer."""

_TASK_FIELDS = {"expression": ("expression",), "valence_arousal": ("valence", "arousal"), "aus": ("aus",)}


# ---------------------------------------------------------------------------------------------------------------
# References


def reference_rows(references: Any) -> list[dict[str, Any]]:
    """The label columns of `references` (a Dataset without decoding its images, or an iterable of dicts)."""
    column_names = getattr(references, "column_names", None)
    if column_names is not None and hasattr(references, "select_columns"):
        keep = [c for c in REFERENCE_COLUMNS if c in column_names]
        if "sample_id" not in keep:
            raise ValueError(f"references have no 'sample_id' column (columns: {', '.join(column_names)})")
        rows = list(references.select_columns(keep))
    else:
        rows = [dict(row) for row in references]
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if "sample_id" not in row:
            raise ValueError(f"reference row {i} has no 'sample_id'")
        if row["sample_id"] in seen:
            raise ValueError(f"reference row {i}: sample_id {row['sample_id']!r} appears twice")
        seen.add(row["sample_id"])
    return rows


def reference_labels(row: Mapping[str, Any], task: str, include_generated: bool = False) -> dict[str, Any] | None:
    """The labels of `row` that count for `task`, or None when it has none (see the module docstring)."""
    provenance = row.get("provenance") or {}
    mark = provenance.get(task) if isinstance(provenance, Mapping) else None
    if mark is not None and mark != HUMAN and not (include_generated and mark == GENERATED):
        return None
    if task == "expression":
        value = row.get("expression")
        if value is None or value == NOT_ANNOTATED:
            return None
        name = EXPRESSIONS[int(value)] if isinstance(value, numbers.Integral) else str(value)
        if name not in EXPRESSIONS:
            raise ValueError(f"reference {row.get('sample_id')!r} has unknown expression {value!r}")
        return {"expression": name}
    if task == "valence_arousal":
        valence, arousal = row.get("valence"), row.get("arousal")
        if valence is None or arousal is None or math.isnan(valence) or math.isnan(arousal):
            return None
        return {"valence": float(valence), "arousal": float(arousal)}
    aus = row.get("aus") or {}
    coded = {au: int(aus[au]) for au in AUS if aus.get(au) in (0, 1)}
    return {"aus": coded} if coded else None


def questions(
    references: Iterable[Mapping[str, Any]], tasks: Iterable[str] = TASK_NAMES, include_generated: bool = False
) -> list[tuple[str, str]]:
    """(sample_id, task) pairs worth asking: those with a reference label that will be scored."""
    return [
        (row["sample_id"], task)
        for row in references
        for task in tasks
        if reference_labels(row, task, include_generated) is not None
    ]


# ---------------------------------------------------------------------------------------------------------------
# Predictions


def load_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records from a JSONL file; a malformed line is an error naming the file and line."""
    return list(iter_predictions(path))


def iter_predictions(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records from a JSONL file one at a time (`score` keeps only what it scores, not the file's records)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{os.fspath(path)}, line {number}: not JSON ({e})") from None
            if not isinstance(record, dict):
                kind = type(record).__name__
                raise ValueError(f"{os.fspath(path)}, line {number}: expected a JSON object, got {kind}")
            record.setdefault("_line", number)
            yield record


def write_predictions(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")


def read_prediction(record: Mapping[str, Any], task: str) -> ParsedAnswer:
    """One record's answer to `task`, through the strict parser (see the module docstring)."""
    if record.get("answer") is None and "refusal" in record:
        return ParsedAnswer(REFUSAL, reason=str(record["refusal"] or "a reply without content (a refusal)"))
    if record.get("answer") is None and record.get("error"):
        return ParsedAnswer(ERROR, reason=str(record["error"]))
    if "answer" in record:
        return parse_answer(task, record["answer"])
    fields = {k: record[k] for k in _TASK_FIELDS[task] if k in record}
    if not fields:
        return ParsedAnswer(MISSING, reason=f"no {task} fields")
    key = "action_units" if task == "aus" else None
    payload = {key: fields["aus"]} if key else fields
    return parse_answer(task, json.dumps(payload))


_Answer = tuple[ParsedAnswer, Any]
"""A parsed answer and, for an unusable one, the start of the raw text it came from (to quote it)."""


def _index_predictions(
    predictions: Iterable[Mapping[str, Any]], tasks: tuple[str, ...], known: Mapping[str, str]
) -> tuple[dict[tuple[str, str], _Answer], set[str]]:
    """The parsed answers to the questions of `known` sample ids, and the other sample ids predicted.

    Records are read one at a time and only their parse is kept (and the quotable start of an unusable answer), so
    scoring a large predictions file takes memory in proportion to the references, not to the file.
    """
    index: dict[tuple[str, str], _Answer] = {}
    unmatched: set[str] = set()
    shared: dict[tuple[str, ...], _Answer] = {}
    for i, record in enumerate(predictions):
        where = f"prediction line {record.get('_line', i + 1)}"
        sample_id = record.get("sample_id")
        if not isinstance(sample_id, str):
            raise ValueError(f"{where}: no 'sample_id' string")
        task = record.get("task")
        if task is not None and task not in TASK_NAMES:
            raise ValueError(f"{where}: unknown task {task!r}; expected one of {', '.join(TASK_NAMES)}")
        if task is None and "answer" in record:
            raise ValueError(f"{where}: a raw 'answer' needs a 'task' to say which question it answers")
        if sample_id not in known:
            unmatched.add(sample_id)
            continue
        sample_id = known[sample_id]  # the references' own string, not one more copy per record
        covered = [task] if task else [t for t in TASK_NAMES if any(k in record for k in _TASK_FIELDS[t])]
        for t in covered:
            if t not in tasks:
                continue
            if (sample_id, t) in index:
                raise ValueError(f"{where}: a second prediction for {sample_id!r}, task {t!r}")
            index[(sample_id, t)] = _compact(t, read_prediction(record, t), record.get("answer"), shared)
    return index, unmatched


def _compact(task: str, answer: ParsedAnswer, text: Any, shared: dict[tuple[str, ...], _Answer]) -> _Answer:
    """The answer with the quotable start of an unusable one's text; an answer many share (an expression, a set of
    AUs, the same error) is one object, so a large file costs little more than its index."""
    quote = None if answer.ok or text is None else str(text)[: MAX_QUOTE + 1]
    if (task == "valence_arousal" and answer.ok) or quote is not None:  # (nearly) unique: sharing would cost more
        return answer, quote
    key = (task, answer.status, answer.reason, json.dumps(answer.fields, sort_keys=True))
    return shared.setdefault(key, (answer, None))


# ---------------------------------------------------------------------------------------------------------------
# Scores


def score(
    predictions: Iterable[Mapping[str, Any]] | str | os.PathLike,
    references: Any,
    *,
    tasks: Iterable[str] = TASK_NAMES,
    include_generated: bool = False,
    by: str | None = "source",
) -> dict[str, Any]:
    """Score predictions (records or a JSONL path) against references (see the module docstring).

    Returns a JSON-ready dict: `overall` and, per value of the `by` column, `by_source`; each holds per task the
    metrics of `metrics.py` and `answers` (counts and rates of ok / refusal / unparseable / error / missing
    answers, with a few quoted examples of the unusable ones).
    """
    tasks = check_tasks(tasks)
    if isinstance(predictions, (str, os.PathLike)):
        predictions = iter_predictions(predictions)
    rows = reference_rows(references)
    index, unmatched = _index_predictions(predictions, tasks, {row["sample_id"]: row["sample_id"] for row in rows})
    if unmatched:
        logger.warning("%d predicted sample ids are not in the references (e.g. %s)", len(unmatched), min(unmatched))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if by:
        for row in rows:
            groups[str(row.get(by) or "unknown")].append(row)
    result = {
        "settings": {"tasks": list(tasks), "include_generated": include_generated, "by": by},
        "overall": _scope(rows, index, tasks, include_generated),
        "by_source": {name: _scope(group, index, tasks, include_generated) for name, group in sorted(groups.items())},
        "unmatched_predictions": len(unmatched),
    }
    return result


def failures(scores: Mapping[str, Any]) -> tuple[int, int, str | None]:
    """Questions whose request failed, questions scored, and one failure's reason, over the tasks of a score."""
    failed = total = 0
    reason = None
    for task in TASK_NAMES:
        answers = scores["overall"].get(task, {}).get("answers")
        if answers:
            failed, total = failed + answers[ERROR], total + answers["n"]
            reason = reason or next((e["reason"] for e in answers["examples"].get(ERROR, [])), None)
    return failed, total, reason


def _scope(
    rows: list[dict[str, Any]],
    index: Mapping[tuple[str, str], _Answer],
    tasks: tuple[str, ...],
    include_generated: bool,
) -> dict[str, Any]:
    scope: dict[str, Any] = {"samples": len(rows)}
    for task in tasks:
        refs, answers, raw, ids = [], [], [], []
        for row in rows:
            labels = reference_labels(row, task, include_generated)
            if labels is not None:
                answer, text = index.get((row["sample_id"], task), _NO_PREDICTION)
                refs.append(labels)
                answers.append(answer)
                raw.append(text)
                ids.append(row["sample_id"])
        if not refs:
            continue
        scope[task] = _task_scores(task, refs, answers)
        scope[task]["answers"] = _answer_stats(answers, raw, ids)
    return scope


_NO_PREDICTION: _Answer = (ParsedAnswer(MISSING, reason="no prediction"), None)


def _task_scores(task: str, refs: list[dict[str, Any]], answers: list[ParsedAnswer]) -> dict[str, Any]:
    if task == "expression":
        return metrics.expression_metrics(
            [r["expression"] for r in refs], [a.fields["expression"] if a.ok else None for a in answers]
        )
    if task == "valence_arousal":
        return {
            dim: metrics.regression_metrics([r[dim] for r in refs], [a.fields[dim] if a.ok else None for a in answers])
            for dim in ("valence", "arousal")
        }
    return metrics.au_metrics([r["aus"] for r in refs], [a.fields["aus"] if a.ok else None for a in answers])


def _answer_stats(answers: list[ParsedAnswer], raw: list[Any], ids: list[str]) -> dict[str, Any]:
    counts = Counter(a.status for a in answers)
    n = len(answers)
    stats: dict[str, Any] = {"n": n}
    for status in STATUSES:
        stats[status] = counts.get(status, 0)
        stats[f"{status}_rate"] = counts.get(status, 0) / n if n else None
    examples: dict[str, list[dict[str, str]]] = {}
    for sample_id, answer, text in zip(ids, answers, raw, strict=True):
        if answer.status != OK and len(examples.setdefault(answer.status, [])) < MAX_EXAMPLES:
            quoted = None if text is None else str(text)[:MAX_QUOTE] + ("..." if len(str(text)) > MAX_QUOTE else "")
            examples[answer.status].append({"sample_id": sample_id, "reason": answer.reason, "answer": quoted})
    stats["examples"] = examples
    return stats
