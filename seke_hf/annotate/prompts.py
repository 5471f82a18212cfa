"""Knowledge-enhanced prompts, response schemas and tolerant answer parsing for SV-UAMC.

Layout, for providers' automatic prompt caching: the system message (instructions, the emotion knowledge of
`seke_hf.knowledge`, the answer format) is identical for every request; the user message then says which levels to
give, states the example's human labels as facts, one per line, and ends with the image:

    expression: happiness
    valence: 0.62
    arousal: 0.31
    action units present: AU6, AU12
    action units absent: AU4, AU15

(the line format is a contract shared with `seke_hf.simulate`). Images travel as JPEG data URLs, the longer side at
most `image_max_side` pixels (`seke_hf.llm.images`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from seke_hf.annotate.svuamc import AU_LEVEL, EXPRESSION, VALENCE_AROUSAL, Sample
from seke_hf.knowledge import knowledge_prompt
from seke_hf.llm import json_object, read_number
from seke_hf.llm.logprobs import ValueLogprob
from seke_hf.schema import AUS, EXPRESSIONS, LEVELS

SVUAMC_PROMPT_VERSION = "3"
"""The version of the SV-UAMC annotation prompts' wording: bumped whenever it changes (enters the annotator's
fingerprint, as `versions["prompts"]`, along with the text itself). 3: label-only votes beside the described
greedy answer; no verification prompt."""

_INSTRUCTIONS = """\
You are an expert annotator of facial affect, trained in the Facial Action Coding System (FACS).
You look at one face image and complete the emotion labels it is missing, at up to three levels:
- expression: one discrete category from: {expressions};
- valence and arousal: numbers in [-1, 1] on Russell's circumplex (valence: unpleasant -1 to pleasant 1; arousal:
  calm -1 to excited 1);
- action units: the FACS action units visibly present, from: {aus}.
Labels given as known are human annotations: treat them as true, and make your answers consistent with them and
with each other, using the knowledge below. Judge from the face itself; do not guess from the background.

{knowledge}

Answer with one JSON object only, with exactly the requested fields:
- "expression": a category name from the list;
- "valence", "arousal": numbers in [-1, 1];
- "action_units": an array of the present action unit names (empty if none);
- "descriptions": an object with "expression", "valence_arousal" and "aus", each one or two sentences on the
  visible facial evidence for that level's label (the known one or yours)."""


def system_prompt(knowledge: str | None = None) -> str:
    """The static system message; `knowledge` defaults to `seke_hf.knowledge.knowledge_prompt()`."""
    if knowledge is None:
        knowledge = knowledge_prompt()
    return _INSTRUCTIONS.format(expressions=", ".join(EXPRESSIONS), aus=", ".join(AUS), knowledge=knowledge.strip())


_LEVEL_WORDS = {
    EXPRESSION: "the expression",
    VALENCE_AROUSAL: "valence and arousal",
    AU_LEVEL: "the action units",
}


def known_label_lines(
    expression: str | None = None,
    valence: float | None = None,
    arousal: float | None = None,
    aus: Mapping[str, int | None] | None = None,
) -> list[str]:
    """The human labels as the contract's `name: value` lines (only what is known)."""
    lines = []
    if expression is not None:
        lines.append(f"expression: {expression}")
    if valence is not None and arousal is not None:
        lines += [f"valence: {valence:.2f}", f"arousal: {arousal:.2f}"]
    if aus:
        present = [au for au in AUS if aus.get(au) == 1]
        absent = [au for au in AUS if aus.get(au) == 0]
        if present:
            lines.append(f"action units present: {', '.join(present)}")
        if absent:
            lines.append(f"action units absent: {', '.join(absent)}")
    return lines


def sampling_messages(
    system: str, levels: Sequence[str], known: Sequence[str], image_url: str, *, describe: bool = True
) -> list[dict[str, Any]]:
    """Messages asking for `levels` of the face in `image_url`, with the `known` label lines as facts; `describe`
    asks for the per-level descriptions too (votes go without: their completion tokens are the dearest part)."""
    wanted = " and ".join(_LEVEL_WORDS[level] for level in levels)
    detail = ", with a description of the evidence for each level." if describe else ". Labels only."
    text = f"Give {wanted} of this face{detail}"
    if known:
        text += "\nKnown labels (human annotation):\n" + "\n".join(known)
    return _messages(system, text, image_url)


def _messages(system: str, text: str, image_url: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_url}}],
        },
    ]


def response_format(
    levels: Iterable[str],
    *,
    expressions: Sequence[str] = EXPRESSIONS,
    aus: Sequence[str] = AUS,
    descriptions: bool = True,
) -> dict[str, Any]:
    """Strict `json_schema` response format asking for `levels` (and the per-level `descriptions`), with the enums
    restricted as given."""
    properties: dict[str, Any] = {}
    levels = set(levels)
    if EXPRESSION in levels:
        properties["expression"] = {"type": "string", "enum": list(expressions)}
    if VALENCE_AROUSAL in levels:
        properties["valence"] = {"type": "number", "minimum": -1, "maximum": 1}
        properties["arousal"] = {"type": "number", "minimum": -1, "maximum": 1}
    if AU_LEVEL in levels:
        properties["action_units"] = {"type": "array", "items": {"type": "string", "enum": list(aus)}}
    if descriptions:  # one text per level (human-labelled ones too): each instruction answer explains its level
        properties["descriptions"] = {
            "type": "object",
            "properties": {level: {"type": "string"} for level in LEVELS},
            "required": list(LEVELS),
            "additionalProperties": False,
        }
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "facial_affect",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


LOGPROB_FIELDS = ("expression", "action_units")
"""The answer fields whose token probabilities the greedy request keeps (`seke_hf.llm.logprobs`)."""


# -- tolerant parsing ------------------------------------------------------------------------------------------------
_AU_TOKEN = re.compile(r"AU\s*0*(\d+)", re.IGNORECASE)


def parse_sample(
    text: str | None,
    *,
    expressions: Sequence[str] = EXPRESSIONS,
    aus: Sequence[str] = AUS,
    logprobs: Mapping[str, ValueLogprob] | None = None,
) -> Sample | None:
    """One choice's text -> `Sample`, or None if it holds no JSON object (truncated, prose only).

    Tolerant where it is safe: code fences, text around the object, case, "AU06"/"au 6"/6 for AU names, numbers
    as strings. Values outside the allowed sets or ranges are dropped (read as missing), never coerced. `logprobs`
    (the choice's `LOGPROB_FIELDS`) gives the model's own probabilities of its expression and AU set.
    """
    data = json_object(text, inside_fences=False)
    if data is None:
        data = _labelled_lines(text)  # servers without JSON modes may answer "Expression: fear" lines
    if data is None:
        return None
    lowered = {str(k).lower(): v for k, v in data.items()}
    expression = lowered.get("expression")
    expression = expression.strip().lower() if isinstance(expression, str) else None
    expression = expression if expression in expressions else None
    valence, arousal = (read_number(lowered.get(dim), bounds=(-1.0, 1.0)) for dim in ("valence", "arousal"))
    action_units = lowered.get("action_units", lowered.get("aus"))
    active: frozenset[str] | None = None
    if isinstance(action_units, list):
        names = {_au_name(item) for item in action_units}
        active = frozenset(n for n in names if n in aus)
    description = lowered.get("descriptions", lowered.get("description"))
    if isinstance(description, dict):
        description = {str(k).lower(): v for k, v in description.items()}
    elif not isinstance(description, str):
        description = None
    logprobs = logprobs or {}
    expression_probs = _expression_probs(logprobs.get("expression"), expression, expressions)
    au_set = logprobs.get("action_units") if active is not None else None
    aus_probability = au_set.probability if au_set is not None else None
    return Sample(expression, valence, arousal, active, description, expression_probs, aus_probability)


def _expression_probs(
    value: ValueLogprob | None, expression: str | None, expressions: Sequence[str]
) -> dict[str, float] | None:
    """{expression: the model's probability}: the answer's own (every token of its value), and each alternative
    first token that starts exactly one other expression's name (a token such as "s" that could begin "sadness" or
    "surprise" tells nothing)."""
    if value is None or expression is None:
        return None
    probs = {expression: value.probability}
    for token, logprob in value.alternatives.items():
        stem = token.strip().strip('"').lower()
        named = [e for e in expressions if stem and e.startswith(stem)]
        if len(named) == 1 and named[0] != expression:
            probs[named[0]] = max(probs.get(named[0], 0.0), math.exp(logprob))
    return probs


_LINE = re.compile(r"^[ \t\-*•]*(expression|valence|arousal|action units)[ \t]*[:=][ \t]*(.*?)[ \t.]*$", re.I | re.M)


def _labelled_lines(text: str | None) -> dict[str, Any] | None:
    """`Expression: fear` / `Valence: -0.50` / `Action units: AU1, AU2` (or `none`) lines -> a JSON-like dict."""
    if not text:
        return None
    data: dict[str, Any] = {}
    for key, value in _LINE.findall(text):
        key = key.lower()
        if key == "action units":
            data["action_units"] = [] if value.strip().lower() in ("none", "") else _AU_TOKEN.findall(value)
            data["action_units"] = [f"AU{n}" for n in data["action_units"]]
        else:
            data[key] = value.strip()
    if not data:
        return None
    prose = _LINE.sub("", text).strip()
    data["description"] = re.sub(r"\s*\n\s*", " ", prose) or None
    return data


def _au_name(item: Any) -> str | None:
    if isinstance(item, int) and not isinstance(item, bool):
        return f"AU{item}"
    if isinstance(item, str):
        match = _AU_TOKEN.search(item)
        if match:
            return f"AU{int(match.group(1))}"
        if item.strip().isdigit():
            return f"AU{int(item)}"
    return None
