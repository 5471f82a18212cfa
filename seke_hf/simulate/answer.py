"""Writing one sampled answer in the form the client asked for: a JSON schema, a JSON object, or prose.

A schema is filled by walking it: the properties the simulated model understands (`expression`, `valence`,
`arousal`, `action_units` as an array of AU names or an object keyed by AU, AU-named properties, and any free-text
string such as `description`) get the sample's values; anything else gets a neutral value of the right type, so the
reply always validates against the schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from seke_hf.knowledge import ACTION_UNITS
from seke_hf.schema import AUS
from seke_hf.simulate.noise import Sample
from seke_hf.simulate.request import AU_LIST_NAMES, EXPRESSION_NAMES, AnswerSpec, resolve_ref, safe_au

REFUSAL = "I'm sorry, but I can't help with identifying the emotions of people in images."


def describe(sample: Sample, level: str | None = None) -> str:
    """A short free-text description consistent with the sample's labels (of one level, or of all three)."""
    mood = "pleasant" if sample.valence > 0.15 else "unpleasant" if sample.valence < -0.15 else "neutral"
    energy = "aroused" if sample.arousal > 0.15 else "calm" if sample.arousal < -0.15 else "moderately calm"
    if sample.action_units:
        cues = "The face shows " + ", ".join(
            f"{ACTION_UNITS[au].facs_name.lower()} ({au})" for au in sample.action_units
        )
    else:
        cues = "The face shows no clear facial action"
    if level == "aus":
        return f"{cues}."
    if level == "valence_arousal":
        return (
            f"The person seems in a {mood}, {energy} state (valence {sample.valence:.2f}, "
            f"arousal {sample.arousal:.2f})."
        )
    if level == "expression":
        return f"{cues}, which reads as {sample.expression}."
    return f"{cues}, which reads as {sample.expression}; the state looks {mood} and {energy}."


def description_level(name: str) -> str | None:
    """Which level a free-text property describes, from its name (`au_description` -> "aus"), or None for all."""
    lowered = name.lower()
    if re.search(r"(^|_)(aus?|action_units?|facs)(_|$)", lowered):
        return "aus"
    if re.search(r"valence|arousal|(^|_)va(_|$)|affect", lowered):
        return "valence_arousal"
    if re.search(r"expression|emotion", lowered):
        return "expression"
    return None


def render(sample: Sample, spec: AnswerSpec) -> str:
    if spec.kind == "json_schema":
        return json.dumps(_fill(spec.schema or {}, spec.schema or {}, sample, spec, ""))
    if spec.kind == "json_object":
        obj: dict[str, Any] = {}
        if "expression" in spec.levels:
            obj["expression"] = sample.expression
        if "valence_arousal" in spec.levels:
            obj["valence"], obj["arousal"] = sample.valence, sample.arousal
        if "aus" in spec.levels:
            obj["action_units"] = list(sample.action_units)
        obj["description"] = describe(sample, _only_level(spec))
        return json.dumps(obj)
    return _prose(sample, spec)


def _only_level(spec: AnswerSpec) -> str | None:
    return spec.levels[0] if len(spec.levels) == 1 else None


def _prose(sample: Sample, spec: AnswerSpec) -> str:
    lines = [describe(sample, _only_level(spec))]
    if "expression" in spec.levels:
        lines.append(f"Expression: {sample.expression}")
    if "valence_arousal" in spec.levels:
        lines.append(f"Valence: {sample.valence:.2f}")
        lines.append(f"Arousal: {sample.arousal:.2f}")
    if "aus" in spec.levels:
        lines.append(f"Action units: {', '.join(sample.action_units) or 'none'}")
    if spec.answer_tag == "expression":
        lines.append(f"<answer>{sample.expression}</answer>")
    elif spec.answer_tag == "valence_arousal":
        lines.append(f"<answer>valence: {sample.valence:.2f}, arousal: {sample.arousal:.2f}</answer>")
    elif spec.answer_tag == "aus":
        lines.append(f"<answer>{', '.join(sample.action_units) or 'none'}</answer>")
    return "\n".join(lines)


def _fill(schema: Any, root: Mapping[str, Any], sample: Sample, spec: AnswerSpec, name: str) -> Any:
    schema = resolve_ref(schema, root)
    if "const" in schema:
        return schema["const"]
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            options = [resolve_ref(o, root) for o in schema[keyword]]
            usable = [o for o in options if o.get("type") != "null"] or options
            return _fill(usable[0], root, sample, spec, name)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    lowered = name.lower()
    if kind == "object":
        props = schema.get("properties") or {}
        if lowered in AU_LIST_NAMES:
            return {key: _au_value(sample, key, prop, root) for key, prop in props.items()}
        if _TEXT_CONTAINER.search(lowered):  # {"descriptions": {"expression": "...", "aus": "..."}}
            return {key: _text(prop, root, sample, spec, key) for key, prop in props.items()}
        return {key: _fill(prop, root, sample, spec, key) for key, prop in props.items()}
    if name[:2].upper() == "AU" and safe_au(name) in AUS:
        return _au_value(sample, name, schema, root)
    if kind == "array":
        items = resolve_ref(schema.get("items", {}), root)
        if lowered in AU_LIST_NAMES or lowered in EXPRESSION_NAMES:
            if lowered in EXPRESSION_NAMES:
                values = [_expression(sample, spec)]
            elif items.get("type") == "object" or "properties" in items:  # [{"au": "AU12", "present": true}]
                values = [_au_object(sample, au, spec, items, root) for au in sample.action_units]
            else:
                values = [_au_spelling(au, spec) for au in sample.action_units]
            max_items = schema.get("maxItems")
            return values[:max_items] if isinstance(max_items, int) else values
        return [_fill(items, root, sample, spec, name) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        if lowered in EXPRESSION_NAMES:
            return _expression(sample, spec)
        if "enum" in schema:
            return schema["enum"][0]
        return describe(sample, description_level(name))
    if kind in ("number", "integer"):
        if lowered in ("valence", "arousal"):
            value = getattr(sample, lowered)
        elif any(word in lowered for word in ("confidence", "certainty", "probability")):
            value = sample.confidence
        else:
            value = 0.0
        value = _clamp(value, schema)
        return round(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return describe(sample)


_TEXT_CONTAINER = re.compile(r"descr|reason|explan|rational|justif")


def _text(schema: Any, root: Mapping[str, Any], sample: Sample, spec: AnswerSpec, name: str) -> Any:
    """A field of a description object: free text about the level its key names."""
    resolved = resolve_ref(schema, root)
    kind = resolved.get("type", "string")
    if "string" in (kind if isinstance(kind, list) else [kind]) and "enum" not in resolved:
        return describe(sample, description_level(name))
    return _fill(schema, root, sample, spec, name)


def _expression(sample: Sample, spec: AnswerSpec) -> str:
    if spec.expressions and sample.expression in spec.expressions:
        return spec.expressions[sample.expression]
    return sample.expression


def _au_spelling(au: str, spec: AnswerSpec) -> str:
    return spec.aus[au] if spec.aus and au in spec.aus else au


def _au_object(sample: Sample, au: str, spec: AnswerSpec, items: Mapping[str, Any], root: Mapping[str, Any]) -> dict:
    """One active AU as an object: its name in the name-like field, "present" in the others."""
    obj = {}
    for key, prop in (items.get("properties") or {}).items():
        prop = resolve_ref(prop, root)
        kind = prop.get("type", "string")
        kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
        enum = prop.get("enum")
        if kind == "string" and ((enum and any(safe_au(v) in AUS for v in enum)) or key.lower() in _AU_NAME_KEYS):
            obj[key] = _au_spelling(au, spec)
        elif kind == "string":
            obj[key] = enum[0] if enum else f"{ACTION_UNITS[au].facs_name.lower()} ({au})"
        else:
            obj[key] = _au_value(sample, au, prop, root)
    return obj


_AU_NAME_KEYS = frozenset({"au", "name", "id", "code", "action_unit", "unit"})


def _au_value(sample: Sample, key: str, schema: Any, root: Mapping[str, Any]) -> Any:
    """An AU's presence in whatever type the schema gives it (boolean, 0/1, a probability, or an enum)."""
    schema = resolve_ref(schema, root)
    present = safe_au(key) in sample.action_units
    kind = schema.get("type", "boolean")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "boolean")
    if "enum" in schema:
        enum = schema["enum"]
        wanted = ("present", "yes", "true", "1") if present else ("absent", "no", "false", "0")
        return next((v for v in enum if str(v).lower() in wanted), enum[0])
    if kind in ("integer", "number"):
        return 1 if present else 0
    return present


def _clamp(value: float, schema: Mapping[str, Any]) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, (int, float)):
        value = max(value, low)
    if isinstance(high, (int, float)):
        value = min(value, high)
    return value
