"""FEAB reports: every figure in JSON, the headline numbers in Markdown, and plots, for several models side by side.

Each task keeps its own table and its own scale (accuracy and F1 in [0, 1], CCC and r in [-1, 1], RMSE in label
units): nothing is summed into one number. Answers that could not be used are shown next to the scores they cost.
Plots (a confusion matrix per model, per-AU F1 of all models) need matplotlib (`pip install "seke-hf[plot]"`);
without it the report is written without them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from seke_hf.evaluate.metrics import UNANSWERED
from seke_hf.evaluate.runner import Evaluation
from seke_hf.evaluate.tasks import FEAB_PROMPT_VERSION
from seke_hf.schema import AUS

logger = logging.getLogger(__name__)

Results = Mapping[str, Mapping[str, Any]]
"""Model name -> the dict `score` returns (or an `Evaluation`, whose run info is kept too)."""


def _normalise(results: Mapping[str, Any] | list[Evaluation]) -> dict[str, dict[str, Any]]:
    if isinstance(results, list):
        results = {e.name: e for e in results}
    models: dict[str, dict[str, Any]] = {}
    for name, value in results.items():
        if isinstance(value, Evaluation):
            models[name] = {**value.scores, "run": value.info}
        else:
            models[name] = dict(value)
    if not models:
        raise ValueError("no results to report")
    return models


def write_report(
    results: Mapping[str, Any] | list[Evaluation], out_dir: str | os.PathLike, *, plots: bool = True
) -> dict[str, str]:
    """Write `report.json`, `report.md` and (with matplotlib) PNG plots into `out_dir`; returns their paths."""
    models = _normalise(results)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "report.json"), "markdown": os.path.join(out_dir, "report.md")}
    images = _plots(models, out_dir) if plots else {}
    paths.update(images)
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump({"prompt_version": FEAB_PROMPT_VERSION, "models": models}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(markdown_report(models, images={k: os.path.basename(v) for k, v in images.items()}))
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _scopes(models: dict[str, dict[str, Any]]) -> list[str]:
    sources = sorted({s for scores in models.values() for s in scores.get("by_source", {})})
    return ["overall", *sources]


def _scope(scores: Mapping[str, Any], scope: str) -> Mapping[str, Any]:
    return scores.get("overall", {}) if scope == "overall" else scores.get("by_source", {}).get(scope, {})


def _unusable(answers: Mapping[str, Any]) -> list[str]:
    lost = answers.get("error", 0) + answers.get("missing", 0)
    return [_pct(answers.get("unparseable_rate")), _pct(answers.get("refusal_rate")), str(lost)]


def markdown_report(results: Mapping[str, Any] | list[Evaluation], images: Mapping[str, str] | None = None) -> str:
    """The report as Markdown: one table per task, rows per scope (overall, then each source corpus) and model."""
    models = _normalise(results)
    images = images or {}
    first = next(iter(models.values()))
    settings = first.get("settings", {})
    labels = "human and generated labels" if settings.get("include_generated") else "human labels only"
    out = [
        "# FEAB evaluation",
        "",
        f"Scored on {labels}. Unparseable answers, refusals, failed requests (`errors`) and missing predictions "
        "count as wrong; valence/arousal metrics are computed on the answered faces, with their coverage. Each "
        f"task has its own scale: scores are never added up across tasks. Prompts: `{FEAB_PROMPT_VERSION}`.",
        "",
    ]
    expression, va, aus = [], [], []
    for scope in _scopes(models):
        for name, scores in models.items():
            s = _scope(scores, scope)
            if "expression" in s:
                expression.append([scope, name, *_expression_cells(s["expression"])])
            if "valence_arousal" in s:
                va.append([scope, name, *_va_cells(s["valence_arousal"])])
            if "aus" in s:
                aus.append([scope, name, *_au_cells(s["aus"])])
    failures = ["unparseable", "refusals", "errors + missing"]
    if expression:
        out += ["## Expression", "", "Accuracy, macro-F1 and UAR over the classes present in the references.", ""]
        out += [_table(["scope", "model", "n", "accuracy", "macro-F1", "UAR", *failures], expression), ""]
        confusions = {
            key.removeprefix("confusion_"): path for key, path in images.items() if key.startswith("confusion")
        }
        out += [f"![confusion matrix, {name}]({path})" for name, path in confusions.items()]
        out += [""] if confusions else []
    if va:
        header = ["scope", "model", "n", "coverage", "V CCC", "V RMSE", "V r", "A CCC", "A RMSE", "A r", *failures]
        out += ["## Valence and arousal", "", _table(header, va), ""]
    if aus:
        out += [
            "## Action units",
            "",
            "Mean F1 over the AUs with at least one human-coded positive reference (`AUs` counts them).",
            "",
            _table(["scope", "model", "n", "mean F1", "AUs", *failures], aus),
            "",
            _per_au_table(models),
            "",
        ]
        if "au_f1" in images:
            out += [f"![per-AU F1]({images['au_f1']})", ""]
    return "\n".join(out)


def _expression_cells(e: Mapping[str, Any]) -> list[str]:
    return [str(e["n"]), _num(e["accuracy"]), _num(e["macro_f1"]), _num(e["uar"]), *_unusable(e["answers"])]


def _va_cells(v: Mapping[str, Any]) -> list[str]:
    scores = [_num(v[dim][key]) for dim in ("valence", "arousal") for key in ("ccc", "rmse", "pearson")]
    return [str(v["valence"]["n"]), _pct(v["valence"]["coverage"]), *scores, *_unusable(v["answers"])]


def _au_cells(a: Mapping[str, Any]) -> list[str]:
    return [str(a["n"]), _num(a["mean_f1"]), str(len(a["averaged_over"])), *_unusable(a["answers"])]


def _per_au_table(models: dict[str, dict[str, Any]]) -> str:
    rows = []
    for au in AUS:
        cells = []
        positives = None
        for scores in models.values():
            m = scores.get("overall", {}).get("aus", {}).get("per_au", {}).get(au)
            cells.append(_num(m["f1"]) if m else "–")
            positives = positives if positives is not None else (m["positives"] if m else None)
        if any(c != "–" for c in cells) or positives:
            rows.append([au, "–" if positives is None else str(positives), *cells])
    return "Per-AU F1 (overall):\n\n" + _table(["AU", "positives", *models], rows)


# ---------------------------------------------------------------------------------------------------------------
# Plots


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _plots(models: dict[str, dict[str, Any]], out_dir: str | os.PathLike) -> dict[str, str]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.info('matplotlib is not installed: the report has no plots (pip install "seke-hf[plot]")')
        return {}
    paths: dict[str, str] = {}
    for name, scores in models.items():
        confusion = scores.get("overall", {}).get("expression", {}).get("confusion")
        if confusion and confusion["rows"]:
            path = os.path.join(out_dir, f"confusion_{_slug(name)}.png")
            _confusion_plot(Figure, confusion, name, path)
            paths[f"confusion_{name}"] = path
    if any(scores.get("overall", {}).get("aus") for scores in models.values()):
        path = os.path.join(out_dir, "au_f1.png")
        _au_plot(Figure, models, path)
        paths["au_f1"] = path
    return paths


def _confusion_plot(figure_class: Any, confusion: Mapping[str, Any], name: str, path: str) -> None:
    rows, columns, matrix = confusion["rows"], confusion["columns"], confusion["matrix"]
    shares = [[count / max(sum(row), 1) for count in row] for row in matrix]
    fig = figure_class(figsize=(1.0 + 0.75 * len(columns), 1.0 + 0.6 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if shares[i][j] > 0.5 else "black")
    ax.set_xticks(range(len(columns)), [c if c != UNANSWERED else "unanswered" for c in columns], rotation=45)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{name}: expression (counts; colour = share of the row)")
    fig.savefig(path, dpi=100)


def _au_plot(figure_class: Any, models: dict[str, dict[str, Any]], path: str) -> None:
    per_model = {name: s.get("overall", {}).get("aus", {}).get("per_au", {}) for name, s in models.items()}
    aus = [au for au in AUS if any(per_au.get(au, {}).get("f1") is not None for per_au in per_model.values())]
    fig = figure_class(figsize=(min(16.0, max(6.0, 1.5 + 0.3 * len(aus) * len(models))), 3.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(per_model)
    for k, (name, per_au) in enumerate(per_model.items()):
        values = [per_au.get(au, {}).get("f1") or 0.0 for au in aus]
        ax.bar([i + k * width - 0.4 + width / 2 for i in range(len(aus))], values, width, label=name)
    ax.set_xticks(range(len(aus)), aus, rotation=45)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("F1")
    ax.set_title("Per-AU F1 (AUs with positive references)")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
