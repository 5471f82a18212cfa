"""Reading what a model answered: the JSON object in a reply, and numbers in it.

Shared mechanics only; each caller keeps its own policy. The annotator reads tolerantly (a value it cannot read is a
missing vote); the FEAB evaluator reads strictly (a number must be written as a plain decimal, a broken JSON reply is
an unparseable answer, not prose): see `seke_hf.annotate.prompts` and `seke_hf.evaluate.parse`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

DECIMAL = r"[+\-]?(?:\d+(?:\.\d*)?|\.\d+)"
"""A number as models write one in prose: optional sign, digits, optional decimals (no exponent, no `nan`)."""

_DECIMAL = re.compile(DECIMAL)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def json_object(text: str | None, *, inside_fences: bool = True) -> dict[str, Any] | None:
    """The JSON object a reply holds, or None: the whole reply, else a fenced block (```json ... ```), else the text
    from the first `{` to the last `}` (an object with prose around it). The first candidate that parses wins.

    `inside_fences`: also look for an object among prose inside a fenced block. SV-UAMC reads without it (as its
    cached answers were always read, so they keep their votes); the FEAB parser with it.
    """
    if not text:
        return None
    candidates = [text]
    for fenced in _FENCE.findall(text):
        candidates += [fenced, _braced(fenced)] if inside_fences else [fenced]
    candidates.append(_braced(text))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _braced(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else ""


def read_number(value: Any, *, strict: bool = False, bounds: tuple[float, float] | None = None) -> float | None:
    """A number from a JSON value: an int or float, or a string holding one; None when there is none.

    Booleans never count (JSON `true` is not 1). `strict`: a string must be a plain decimal (`DECIMAL`), and nothing
    but numbers and strings is read; else whatever `float()` accepts. `bounds`: a value outside them, or not finite,
    is None (never clipped).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif strict and not (isinstance(value, str) and _DECIMAL.fullmatch(value.strip())):
        return None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
    if bounds is not None and not (math.isfinite(number) and bounds[0] <= number <= bounds[1]):
        return None
    return number
