"""FEAB: evaluate any OpenAI-compatible vision LLM on facial emotion perception, with scoring people can trust.

    from seke_hf.evaluate import run, score, write_report
    result = run(feab_test, model="gpt-4o")                        # ask, parse strictly, score
    scores = score("my_model_predictions.jsonl", feab_test)        # or score answers produced elsewhere
    write_report({"gpt-4o": result.scores, "mine": scores}, "report/")

Modules: `parse` (the strict answer parser), `metrics` (pure metric functions), `tasks` (questions, schemas,
answer tags), `scoring` (which labels count, prediction records), `runner` (asking a model through the model layer,
`seke_hf.llm`), `report` (JSON, Markdown and plots, several models side by side).
"""

from __future__ import annotations

from seke_hf.evaluate.parse import ParsedAnswer, parse_answer
from seke_hf.evaluate.report import markdown_report, write_report
from seke_hf.evaluate.runner import Evaluation, EvaluationSettings, arun, run
from seke_hf.evaluate.scoring import load_predictions, score, write_predictions
from seke_hf.evaluate.tasks import TASK_NAMES

__all__ = [
    "TASK_NAMES",
    "Evaluation",
    "EvaluationSettings",
    "ParsedAnswer",
    "arun",
    "load_predictions",
    "markdown_report",
    "parse_answer",
    "run",
    "score",
    "write_predictions",
    "write_report",
]
