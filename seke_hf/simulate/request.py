"""Reading a Chat Completions request the way the OpenAI API does, with the API's own 400 errors.

Besides validating the protocol, it extracts what the simulated model needs: the image(s), the human labels stated as
priors in the user message, and what answer is wanted (a JSON schema and the candidates its enums allow, a JSON
object, or prose with perhaps an `<answer>` tag).

Prior contract (with the SV-UAMC annotator): in a user message, lines such as ``expression: happiness``,
``valence: 0.62``, ``arousal: 0.31``, ``action units present: AU6, AU12``, ``action units absent: AU4, AU15``
(case-insensitive; any of them may be missing).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seke_hf.schema import AUS, EXPRESSIONS, au_name
from seke_hf.simulate.noise import Priors

MAX_N = 128
"""OpenAI's limit on `n`."""

LEVELS = ("expression", "valence_arousal", "aus")


class RequestError(Exception):
    """An OpenAI-style client error: becomes `{"error": {...}}` with this HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.param, self.code, self.type = status, param, code, type

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Image:
    data: bytes
    detail: str = "auto"


@dataclass(frozen=True)
class AnswerSpec:
    """What the client asked for and which candidates it allows."""

    kind: str = "text"  # text | json_object | json_schema
    schema: Mapping[str, Any] | None = None
    expressions: dict[str, str] | None = None
    """Canonical expression name -> the spelling the schema's enum uses, when an enum restricts them."""
    aus: dict[str, str] | None = None
    """Canonical AU name -> the enum's spelling, when an enum restricts them."""
    levels: tuple[str, ...] = LEVELS
    """The levels asked for (for json_object and prose, read from the prompt)."""
    answer_tag: str | None = None
    """For prose: the level an `<answer>` tag should hold, or None when no tag is asked for."""


@dataclass(frozen=True)
class Question:
    model: str
    messages: list[Mapping[str, Any]]
    images: list[Image]
    user_text: str
    priors: Priors
    answer: AnswerSpec
    n: int = 1
    temperature: float = 1.0
    seed: int | None = None
    max_tokens: int | None = None
    stream: bool = False
    stream_usage: bool = False
    """`stream_options.include_usage`: a last chunk carries the usage."""
    logprobs: bool = False
    """Return the log probability of each output token (`choices[].logprobs`)."""
    top_logprobs: int = 0
    """How many most likely tokens to list at each position (0-20; needs `logprobs`)."""


def parse_request(
    body: Any, *, max_n: int | None = MAX_N, structured_output: bool = True, logprobs_supported: bool = True
) -> Question:
    """Validate a `POST /v1/chat/completions` body; raises `RequestError` with the API's kind of message."""
    if not isinstance(body, Mapping):
        raise RequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", param="model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array.", param="messages")
    n = _int_param(body, "n", 1, 1, MAX_N)
    if max_n is not None and n > max_n:
        raise RequestError(
            f"Invalid 'n': this model supports at most n={max_n} (got {n}).", param="n", code="unsupported_value"
        )
    temperature = _number_param(body, "temperature", 1.0, 0.0, 2.0)
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("Invalid type for 'seed': expected an integer.", param="seed", code="invalid_type")
    logprobs, top_logprobs = _logprobs_params(body, logprobs_supported)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise RequestError("'max_tokens' must be a positive integer.", param="max_tokens")

    images: list[Image] = []
    user_parts: list[str] = []
    all_parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise RequestError(f"Invalid message at messages[{i}]: a 'role' is required.", param=f"messages[{i}]")
        for j, part in enumerate(_content_parts(message.get("content"), i)):
            if part.get("type") == "text":
                all_parts.append(str(part.get("text", "")))
                if message["role"] == "user":
                    user_parts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                if message["role"] != "user":
                    raise RequestError("Image URLs are only allowed for messages with role 'user'.", param="messages")
                images.append(_image(part.get("image_url"), f"messages[{i}].content[{j}].image_url"))
            else:
                raise RequestError(
                    f"Invalid content type {part.get('type')!r} at messages[{i}].content[{j}].",
                    param=f"messages[{i}].content[{j}].type",
                )
    user_text = "\n".join(user_parts)
    text = "\n".join(all_parts)
    answer = _answer_spec(body.get("response_format"), text, user_text, structured_output)
    return Question(
        model=model,
        messages=messages,
        images=images,
        user_text=user_text,
        priors=parse_priors(user_text),
        answer=answer,
        n=n,
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        stream=bool(body.get("stream", False)),
        stream_usage=bool((body.get("stream_options") or {}).get("include_usage", False)),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


MAX_TOP_LOGPROBS = 20
"""OpenAI's limit on `top_logprobs`."""


def _logprobs_params(body: Mapping[str, Any], supported: bool) -> tuple[bool, int]:
    """`logprobs` and `top_logprobs` as the API checks them: `top_logprobs` needs `logprobs: true`."""
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise RequestError(
            f"Invalid type for 'logprobs': expected a boolean, got {logprobs!r}.", param="logprobs", code="invalid_type"
        )
    top_logprobs = _int_param(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    if body.get("top_logprobs") is not None and not logprobs:
        raise RequestError(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    if logprobs and not supported:
        raise RequestError("logprobs are not supported by this model.", param="logprobs", code="unsupported_parameter")
    return bool(logprobs), top_logprobs


# ---------------------------------------------------------------------- priors
_END = r"[ \t]*\.?[ \t]*(?=$|[;,])"
_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))"
_LINE_START = r"(?:^|[;,])[ \t\-*•]*"
_EXPRESSION_PRIOR = re.compile(_LINE_START + r"expression[ \t]*[:=][ \t]*([a-z]+)" + _END, re.I | re.M)
_VALENCE_PRIOR = re.compile(_LINE_START + r"valence[ \t]*[:=][ \t]*" + _NUMBER + _END, re.I | re.M)
_AROUSAL_PRIOR = re.compile(_LINE_START + r"arousal[ \t]*[:=][ \t]*" + _NUMBER + _END, re.I | re.M)
_AUS_PRIOR = re.compile(r"^[ \t\-*•]*action units (present|absent)[ \t]*:[ \t]*([^\n]*)$", re.I | re.M)
_AU = re.compile(r"\bAU[ \t]*(\d+)\b", re.I)


def parse_priors(text: str) -> Priors:
    """Human labels stated in the user message (see the module docstring); anything unreadable is no prior."""
    expression = None
    for m in _EXPRESSION_PRIOR.finditer(text):
        if m.group(1).lower() in EXPRESSIONS:
            expression = m.group(1).lower()
    valence = _last_number(_VALENCE_PRIOR, text)
    arousal = _last_number(_AROUSAL_PRIOR, text)
    present: set[str] = set()
    absent: set[str] = set()
    for m in _AUS_PRIOR.finditer(text):
        names = {au_name(n) for n in _AU.findall(m.group(2))} & set(AUS)
        (present if m.group(1).lower() == "present" else absent).update(names)
    return Priors(expression, valence, arousal, frozenset(present), frozenset(absent - present))


def _last_number(pattern: re.Pattern, text: str) -> float | None:
    values = [float(m.group(1)) for m in pattern.finditer(text)]
    values = [v for v in values if -1.0 <= v <= 1.0]
    return values[-1] if values else None


# ---------------------------------------------------------------------- answer format
_LEVEL_WORDS = {
    "expression": re.compile(r"\b(expression|emotion)s?\b", re.I),
    "valence_arousal": re.compile(r"\b(valence|arousal)\b", re.I),
    "aus": re.compile(r"\b(action units?|AUs?)\b|\bAU\d+\b", re.I),
}
_ANSWER_TEMPLATE = re.compile(r"<answer>(.*?)</answer>", re.I | re.S)


def _answer_spec(response_format: Any, text: str, user_text: str, structured_output: bool) -> AnswerSpec:
    kind = "text"
    if response_format is not None:
        if not isinstance(response_format, Mapping) or "type" not in response_format:
            raise RequestError("Invalid 'response_format': an object with 'type' is required.", param="response_format")
        kind = response_format["type"]
        if kind not in ("text", "json_object", "json_schema"):
            raise RequestError(
                f"Invalid value {kind!r} for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
                param="response_format.type",
                code="invalid_value",
            )
        if kind != "text" and not structured_output:
            raise RequestError(
                f"'response_format' of type '{kind}' is not supported with this model.",
                param="response_format",
                code="unsupported_parameter",
            )
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or "schema" not in spec:
            raise RequestError(
                "Missing required parameter: 'response_format.json_schema' needs 'name' and 'schema'.",
                param="response_format.json_schema",
                code="missing_required_parameter",
            )
        schema = spec["schema"]
        if spec.get("strict"):
            check_strict_schema(schema, spec["name"])
        expressions, aus = _enum_candidates(schema)
        return AnswerSpec("json_schema", schema, expressions, aus)
    if kind == "json_object" and not re.search("json", text, re.I):
        raise RequestError(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            param="messages",
        )
    # The system prompt is static (it may list every level and label); the user message says what this request wants.
    asked = _without_priors(user_text)
    levels = tuple(level for level in LEVELS if _LEVEL_WORDS[level].search(asked))
    levels = levels or tuple(level for level in LEVELS if _LEVEL_WORDS[level].search(text)) or LEVELS
    aus = {name: name for name in sorted({au_name(n) for n in _AU.findall(asked)} & set(AUS), key=AUS.index)}
    answer_tag = None
    template = _ANSWER_TEMPLATE.search(text)
    if kind == "text" and (template or re.search(r"<answer>", text, re.I)):
        answer_tag = _tag_level(template.group(1) if template else "", asked or text)
    return AnswerSpec(kind, None, _mentioned_expressions(asked), aus or None, levels, answer_tag)


def _without_priors(text: str) -> str:
    for pattern in (_EXPRESSION_PRIOR, _VALENCE_PRIOR, _AROUSAL_PRIOR, _AUS_PRIOR):
        text = pattern.sub("", text)
    return text


def _mentioned_expressions(text: str) -> dict[str, str] | None:
    """Expressions listed as options in the instructions: at least two named means the answer must be among them."""
    named = [e for e in EXPRESSIONS if re.search(rf"\b{e}\b", text, re.I)]
    if len([e for e in named if e != "other"]) < 2:  # "other" is too common a word to count as an option
        return None
    return {e: e for e in named}


def _tag_level(template: str, instructions: str) -> str:
    """What an `<answer>` tag holds: the template's own words decide, else the level the prompt names most."""
    if any(re.search(rf"\b{e}\b", template, re.I) for e in EXPRESSIONS if e != "other"):
        return "expression"  # an example answer such as <answer>happiness</answer>
    for source in (template, instructions):
        counts = {level: len(pattern.findall(source)) for level, pattern in _LEVEL_WORDS.items()}
        if any(counts.values()):
            return max(LEVELS, key=lambda level: (counts[level], -LEVELS.index(level)))
    return "expression"


def _enum_candidates(schema: Mapping[str, Any]) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """The candidates enums allow for `expression` and for the items of `action_units`."""
    expressions = aus = None
    for name, prop in _properties(schema).items():
        lowered = name.lower()
        if lowered in EXPRESSION_NAMES:
            enum = _enum_of(prop, schema)
            if enum is not None:
                expressions = {str(v).lower(): str(v) for v in enum if str(v).lower() in EXPRESSIONS}
                if not expressions:
                    raise RequestError(f"The enum of {name!r} names no known expression.", param="response_format")
        elif lowered in AU_LIST_NAMES:
            items = resolve_ref(resolve_ref(prop, schema).get("items"), schema)
            enum = _enum_of(items, schema)
            for item_prop in (items.get("properties") or {}).values():  # [{"au": enum, ...}]
                enum = enum or _enum_of(item_prop, schema)
            if enum is not None:
                aus = {safe_au(v): str(v) for v in enum if safe_au(v) in AUS}
    return expressions, aus


EXPRESSION_NAMES = frozenset({"expression", "emotion", "facial_expression", "label"})
AU_LIST_NAMES = frozenset({"action_units", "aus", "au", "active_aus", "active_action_units"})


def safe_au(value: Any) -> str:
    try:
        return au_name(value)
    except ValueError:
        return ""


def _properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    resolved = resolve_ref(schema, schema)
    props = resolved.get("properties")
    return dict(props) if isinstance(props, Mapping) else {}


def _enum_of(prop: Any, root: Mapping[str, Any]) -> list[Any] | None:
    prop = resolve_ref(prop, root)
    if "enum" in prop:
        return list(prop["enum"])
    for option in prop.get("anyOf", ()) or prop.get("oneOf", ()):
        option = resolve_ref(option, root)
        if "enum" in option:
            return [v for v in option["enum"] if v is not None]
    return None


def resolve_ref(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/$defs/...` or `#/definitions/...`)."""
    seen = 0
    while isinstance(schema, Mapping) and "$ref" in schema and seen < 32:
        node: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        schema, seen = node, seen + 1
    return schema if isinstance(schema, Mapping) else {}


def check_strict_schema(schema: Any, name: str, path: str = "") -> None:
    """OpenAI's strict-mode rules that matter most: every object closes `additionalProperties` and requires all."""
    if not isinstance(schema, Mapping):
        return
    where = f"context=({path})" if path else "context=()"
    types = schema.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        if schema.get("additionalProperties", True) is not False:
            raise RequestError(
                f"Invalid schema for response_format '{name}': In {where}, 'additionalProperties' is required to be "
                "supplied and to be false.",
                param="response_format",
                code="invalid_json_schema",
            )
        props = schema.get("properties") or {}
        missing = [key for key in props if key not in (schema.get("required") or [])]
        if missing:
            raise RequestError(
                f"Invalid schema for response_format '{name}': In {where}, 'required' is required to be supplied and "
                f"to be an array including every key in properties. Missing '{missing[0]}'.",
                param="response_format",
                code="invalid_json_schema",
            )
        for key, prop in props.items():
            check_strict_schema(prop, name, f"{path}, 'properties', '{key}'".lstrip(", "))
    if isinstance(schema.get("items"), Mapping):
        check_strict_schema(schema["items"], name, f"{path}, 'items'".lstrip(", "))
    for keyword in ("anyOf", "$defs", "definitions"):
        options = schema.get(keyword)
        values = options.values() if isinstance(options, Mapping) else options or ()
        for option in values:
            check_strict_schema(option, name, f"{path}, '{keyword}'".lstrip(", "))


# ---------------------------------------------------------------------- content
def _content_parts(content: Any, index: int) -> list[Mapping[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
        return content
    raise RequestError(f"Invalid 'messages[{index}].content': expected a string or an array of parts.")


def _image(image_url: Any, param: str) -> Image:
    if not isinstance(image_url, Mapping) or not isinstance(image_url.get("url"), str):
        raise RequestError(f"Missing required parameter: '{param}.url'.", param=param)
    detail = image_url.get("detail", "auto")
    if detail not in ("auto", "low", "high"):
        raise RequestError(f"Invalid value for '{param}.detail': {detail!r}.", param=f"{param}.detail")
    url = image_url["url"]
    match = re.match(r"data:image/[\w.+-]+;base64,", url)
    if not match:
        raise RequestError(
            "The simulated model only reads images sent inline as base64 'data:image/...;base64,' URLs.",
            param=param,
            code="invalid_image_url",
        )
    try:
        return Image(base64.b64decode(url[match.end() :], validate=True), detail)
    except (binascii.Error, ValueError):
        raise RequestError("Invalid base64 image data.", param=param, code="invalid_image_format") from None


def _int_param(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(
            f"Invalid value for '{name}': expected an integer between {low} and {high}, got {value!r}.",
            param=name,
            code="invalid_value",
        )
    return value


def _number_param(body: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(
            f"Invalid value for '{name}': expected a number between {low} and {high}, got {value!r}.",
            param=name,
            code="invalid_value",
        )
    return float(value)


def parse_json_body(raw: bytes) -> Any:
    """A request body as JSON (None when empty), or the API's `invalid_json` error."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"We could not parse the JSON body of your request. ({e})", code="invalid_json") from None
