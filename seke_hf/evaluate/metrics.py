"""The FEAB metrics, as pure functions of reference and predicted labels (no I/O, no datasets).

A prediction of None is an answer that could not be used (unparseable, a refusal, or missing). How each task counts
it, and why:
- expression: a wrong answer. It stays in every denominator (accuracy, recall) and never counts as any class;
  the confusion matrix gives it its own column.
- valence and arousal: a number cannot be "wrong" without inventing one, so CCC, RMSE and Pearson r are computed on
  the answered samples only, and `coverage` (answered / labelled) is reported beside them. Read the two together:
  a model that answers half the faces well has not solved the task.
- AUs: a wrong answer for every coded AU (a false negative where the AU is present, a false positive where it is
  absent), so refusing never helps an AU's F1.

F1 of one class or AU is 2TP / (2TP + FP + FN): 0 when there is nothing right, undefined (None) when there is
nothing to find and nothing found. Metrics of different scales are reported separately and never added up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from seke_hf.schema import AUS, EXPRESSIONS

UNANSWERED = "(unanswered)"
"""Confusion-matrix column of expression answers that named no class."""


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def f1_score(tp: int, fp: int, fn: int) -> float | None:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def expression_metrics(references: Sequence[str], predictions: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy, macro-F1 and UAR over the classes present in `references`, with the confusion matrix.

    Macro-F1 and UAR (unweighted average recall) average over the reference classes only: a class nobody showed
    cannot be recalled. A predicted class outside them is an error (it lowers accuracy and the true class's recall)
    but has no F1 of its own.
    """
    _same_length(references, predictions)
    unknown = {label for label in (*references, *predictions) if label is not None and label not in EXPRESSIONS}
    if unknown:
        raise ValueError(f"unknown expression(s) {sorted(unknown)}; expected names from {EXPRESSIONS}")
    n = len(references)
    classes = [e for e in EXPRESSIONS if e in set(references)]
    columns = [e for e in EXPRESSIONS if e in set(references) | set(predictions)]
    if any(p is None for p in predictions):
        columns.append(UNANSWERED)
    matrix = [[0] * len(columns) for _ in classes]
    for ref, pred in zip(references, predictions, strict=True):
        matrix[classes.index(ref)][columns.index(UNANSWERED if pred is None else pred)] += 1
    per_class: dict[str, dict[str, Any]] = {}
    for label in classes:
        tp = sum(r == label and p == label for r, p in zip(references, predictions, strict=True))
        support = sum(r == label for r in references)
        predicted = sum(p == label for p in predictions)
        per_class[label] = {
            "support": support,
            "predicted": predicted,
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, support),
            "f1": f1_score(tp, predicted - tp, support - tp),
        }
    correct = sum(r == p for r, p in zip(references, predictions, strict=True))
    return {
        "n": n,
        "answered": sum(p is not None for p in predictions),
        "accuracy": _ratio(correct, n),
        "macro_f1": _mean([per_class[c]["f1"] for c in classes]),
        "uar": _mean([per_class[c]["recall"] for c in classes]),
        "classes": classes,
        "per_class": per_class,
        "confusion": {"rows": classes, "columns": columns, "matrix": matrix},
    }


def ccc(references: Sequence[float], predictions: Sequence[float]) -> float | None:
    """Lin's concordance correlation coefficient, with population (1/n) moments as in AVEC and ABAW.

    Undefined (None) for fewer than two pairs or a zero denominator var_x + var_y + (mean_x - mean_y)^2 (both
    series constant and equal).
    """
    x, y = _arrays(references, predictions)
    if len(x) < 2:
        return None
    covariance = float(np.mean((x - x.mean()) * (y - y.mean())))
    denominator = float(x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    return _ratio(2 * covariance, denominator)


def rmse(references: Sequence[float], predictions: Sequence[float]) -> float | None:
    x, y = _arrays(references, predictions)
    return float(math.sqrt(np.mean((x - y) ** 2))) if len(x) else None


def pearson(references: Sequence[float], predictions: Sequence[float]) -> float | None:
    """Pearson r; None when either series is constant (the correlation is undefined, not 0)."""
    x, y = _arrays(references, predictions)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = float(math.sqrt(np.sum(dx**2) * np.sum(dy**2)))
    return _ratio(float(np.sum(dx * dy)), denominator)


def regression_metrics(references: Sequence[float], predictions: Sequence[float | None]) -> dict[str, Any]:
    """CCC, RMSE and Pearson r of one dimension (valence or arousal) on the answered samples, with coverage."""
    _same_length(references, predictions)
    pairs = [(r, p) for r, p in zip(references, predictions, strict=True) if p is not None]
    refs, preds = [r for r, _ in pairs], [p for _, p in pairs]
    return {
        "n": len(references),
        "answered": len(pairs),
        "coverage": _ratio(len(pairs), len(references)),
        "ccc": ccc(refs, preds),
        "rmse": rmse(refs, preds),
        "pearson": pearson(refs, preds),
    }


def au_metrics(references: Sequence[Mapping[str, int]], predictions: Sequence[Sequence[str] | None]) -> dict[str, Any]:
    """Per-AU precision, recall and F1, and their mean F1.

    `references` are AU structs (1 present, 0 absent, anything else = not coded, left out for that AU);
    `predictions` are lists of active AU names, or None for an unusable answer (wrong on every coded AU).

    Averaging rule: mean F1 is taken over exactly the AUs with at least one coded *positive* reference. An AU coded
    only as absent has no F1 (nothing to detect); it is listed with its false positives but left out of the mean.
    AUs never coded do not appear.
    """
    _same_length(references, predictions)
    per_au: dict[str, dict[str, Any]] = {}
    for au in AUS:
        tp = fp = fn = tn = coded = 0
        for ref, pred in zip(references, predictions, strict=True):
            truth = ref.get(au)
            if truth not in (0, 1):
                continue
            coded += 1
            said = (truth == 0) if pred is None else (au in pred)
            tp += truth == 1 and said
            fn += truth == 1 and not said
            fp += truth == 0 and said
            tn += truth == 0 and not said
        if not coded:
            continue
        positives = tp + fn
        per_au[au] = {
            "n": coded,
            "positives": positives,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, positives),
            "f1": f1_score(tp, fp, fn) if positives else None,
        }
    averaged = [au for au, m in per_au.items() if m["positives"] > 0]
    coded_rows = [p for ref, p in zip(references, predictions, strict=True) if any(v in (0, 1) for v in ref.values())]
    return {
        "n": len(coded_rows),
        "answered": sum(p is not None for p in coded_rows),
        "mean_f1": _mean([per_au[au]["f1"] for au in averaged]),
        "averaged_over": averaged,
        "per_au": per_au,
    }


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _arrays(references: Sequence[float], predictions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    _same_length(references, predictions)
    return np.asarray(references, dtype=np.float64), np.asarray(predictions, dtype=np.float64)


def _same_length(references: Sequence[Any], predictions: Sequence[Any]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
