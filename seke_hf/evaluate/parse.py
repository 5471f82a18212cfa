"""A strict parser for what vision LLMs answer to the three FEAB questions.

Free-text scorers of peer benchmarks silently turn bad answers into labels (an unparseable answer counted as
happiness, "no AU12" counted as AU12, "nose" read as a negation: see docs/peers.md §2). This parser takes the opposite
stance: it returns a label only when the answer names one unambiguously, and otherwise says why it could not.

Where it looks, in order:
1. the `<answer>...</answer>` tag(s), if any (only their content counts; several tags must agree);
2. a JSON object (bare, fenced or embedded), read by its keys;
3. a bare label ("Happiness.", "none", "0.3, -0.2");
4. prose: clauses are split at sentence ends and contrastive conjunctions ("but", "however"), refusal clauses are
   dropped, pseudo-negations ("no doubt", "not only") are blanked, and each mention is checked for negation.

Negation is list-aware and local: a prefix cue ("no", "not", "without", "rather than", ...) negates the first list of
mentions that follows it within a few words of the same clause ("no AU1, AU2 or AU4" negates all three); a postfix
cue ("is absent", "are not present", "AU4: no") negates the list just before it. Commas end a prefix cue's reach unless
they separate mentions, so "not frowning, so AU12 is active" keeps AU12. All matching is on word boundaries: "nose"
and "normal" are not negations, and "AU1" never matches inside "AU12".

Expression words: the canonical names plus unambiguous synonyms (happy, joy -> happiness; angry -> anger; scared,
afraid -> fear; ...). No word belongs to two classes. Words for affective *states* that are not an expression class
are deliberately not mapped: "calm", "relaxed" and "content" name low-arousal positive states, not the neutral
expression, so an answer of "calm" has not chosen a class and is unparseable. "other" counts only as a whole answer
(a tag, a JSON value or the bare word), never inside prose, where "other" is an ordinary word.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from seke_hf.knowledge import ACTION_UNITS
from seke_hf.llm.answers import DECIMAL, json_object, read_number
from seke_hf.schema import AUS, EXPRESSIONS

OK = "ok"
REFUSAL = "refusal"
UNPARSEABLE = "unparseable"
MISSING = "missing"
"""Answer statuses. MISSING is used by scoring for a reference with no prediction at all."""

EXPRESSION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality", "expressionless"),
    "anger": ("anger", "angry", "angered", "furious", "fury", "rage", "enraged", "irritated", "irritation",
              "annoyed", "annoyance"),
    "disgust": ("disgust", "disgusted", "disgusting", "revulsion", "repulsed", "revolted"),
    "fear": ("fear", "fearful", "afraid", "scared", "frightened", "fright", "terrified", "terror"),
    "happiness": ("happiness", "happy", "joy", "joyful", "joyous", "glad", "cheerful", "delighted", "delight",
                  "elated", "elation", "amused", "amusement"),
    "sadness": ("sadness", "sad", "sorrow", "sorrowful", "grief", "grieving", "melancholy", "dejected", "downcast"),
    "surprise": ("surprise", "surprised", "astonished", "astonishment", "amazed", "amazement"),
    "contempt": ("contempt", "contemptuous", "disdain", "disdainful", "scorn", "scornful"),
    "other": (),
}  # fmt: skip
"""Words read as each expression in prose. `other` is recognised only as a whole answer (see the module docstring)."""

VALENCE_AROUSAL_RANGE = (-1.0, 1.0)
"""The unified schema's scale for valence and arousal; answers outside it are unparseable, never clipped."""


@dataclass(frozen=True)
class ParsedAnswer:
    """One parsed answer: `status` is OK, REFUSAL or UNPARSEABLE; `fields` is filled only when OK.

    Fields per task: {"expression": "happiness"}, {"valence": 0.3, "arousal": -0.1}, {"aus": ["AU6", "AU12"]}.
    """

    status: str
    fields: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "fields": self.fields or None, "reason": self.reason}


def _ok(**fields: Any) -> ParsedAnswer:
    return ParsedAnswer(OK, fields)


def _unparseable(reason: str) -> ParsedAnswer:
    return ParsedAnswer(UNPARSEABLE, reason=reason)


def _refusal(reason: str = "the model declined to answer") -> ParsedAnswer:
    return ParsedAnswer(REFUSAL, reason=reason)


# ---------------------------------------------------------------------------------------------------------------
# Shared text machinery


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u2212", "-").replace("\u2013", "-")
    return re.sub(r"[*_`]{1,3}(?=\w)|(?<=\w)[*_`]{1,3}", "", text)  # markdown emphasis around words


_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)


def _answer_slots(text: str) -> list[str] | None:
    """Contents of the `<answer>` tags; a final unclosed tag (a truncated reply) counts; None when there is no tag."""
    closed = list(_TAG.finditer(text))
    tail = text[closed[-1].end() :] if closed else text
    opened = list(_OPEN_TAG.finditer(tail))
    if not closed and not opened:
        return None
    slots = [m.group(1) for m in closed] + ([tail[opened[-1].end() :]] if opened else [])
    return [slot for slot in slots if slot.strip()]


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object an answer holds (bare, fenced or embedded in prose); None when it holds none.

    Raises ValueError when the text clearly is JSON but broken (a truncated reply), so it is not read as prose.
    """
    obj = json_object(text)
    if obj is None and text.strip().startswith("{"):
        raise ValueError("malformed JSON")
    return obj


def _json_get(obj: Mapping[str, Any], keys: Iterable[str]) -> tuple[bool, Any]:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return True, lowered[key]
    return False, None


# Sentence ends (not decimal points), newlines, semicolons and contrastive conjunctions end a clause.
_CLAUSE_SPLIT = re.compile(
    r"(?<!\d)[.!?](?!\d)|[;\n]|\b(?:but|however|although|though|whereas|while|except)\b", re.IGNORECASE
)

_PSEUDO_NEGATIONS = re.compile(
    r"\b(?:no doubt|without (?:a |any )?doubt|not only|not just|not merely|nothing but|no question|"
    r"(?:happy|glad) to (?:help|assist|analy[sz]e|answer|provide|describe|explain|take a look))\b",
    re.IGNORECASE,
)

_REFUSAL = re.compile(
    r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) (?:sorry|afraid)\b|\bi apologi[sz]e\b"
    # inability: "I cannot tell ...", "I'm unable to determine ..." ("I can't see any AU4" is a negation, not this)
    r"|\bi(?:\s+(?:cannot|can't|can not|am unable to|am not able to|will not|won't|must decline to)|"
    r"'m (?:unable|not able) to)\s+(?:\w+\s+){0,2}?(?:determine|identify|tell|know|assess|infer|analy[sz]e|"
    r"provide|recogni[sz]e|read|make|judge|say|help|assist|comply|interpret|evaluate|guess|speculate|label|"
    r"classify|predict|access|process)\b(?!\s+any\b)"
    # unwillingness: "I don't know", "I do not feel comfortable ..." ("I don't see AU4" is a negation)
    r"|\bi (?:do not|don't) (?:know|provide|feel comfortable|speculate|guess|make assumptions)\b"
    r"|\b(?:unable|impossible|not possible) to (?:\w+\s+){0,2}?"
    r"(?:determine|tell|know|identify|assess|infer|judge|say)\b"
    r"|\bcan(?:not|'t| not) (?:see|view|access|process|open|load) (?:the |this |your |any )?(?:image|picture|photo)"
    r"|\bcan(?:not|'t| not) be (?:determined|identified|assessed|inferred|known|judged)\b"
    r"|\bi (?:must|have to) (?:decline|refuse)\b|\bnot (?:appropriate|ethical) (?:for me )?to\b",
    re.IGNORECASE,
)

_PREFIX_CUE = re.compile(
    r"\b(?:no|not|never|without|neither|nor|none of|lack of|lacks|lacking|absence of|absent|rather than|instead of|"
    r"isn't|aren't|wasn't|weren't|doesn't|don't|didn't|cannot|can't|hardly|barely|free of|devoid of|nothing)\b",
    re.IGNORECASE,
)
_POSTFIX_CUE = re.compile(
    r"\b(?:not|never|absent|missing|inactive|lacking|isn't|aren't|wasn't|weren't|doesn't|don't|didn't)\b",
    re.IGNORECASE,
)
_POSTFIX_GAP = re.compile(
    r"^(?:[\s)\]]|\b(?:is|are|was|were|be|been|being|appears?|seems?|looks?|to|clearly|definitely|also|both|all|"
    r"completely|entirely|totally|likely|probably|fully|mostly|largely|seemingly|actually|currently|does|do|did|"
    r"has|have|had)\b)*$",
    re.IGNORECASE,
)
_VALUE_AFTER = re.compile(
    r"^[\s)\]]*[:=\-\u2014|]\s*"
    r"(?P<value>not present|not active|no|yes|false|true|none|absent|inactive|present|active|[01ny]|[\u2713\u2714\u2705"
    r"\u2717\u2718\u274c])(?!\w|\.\d)",
    re.IGNORECASE,
)
_POSITIVE_VALUES = {"1", "yes", "true", "present", "active", "y", "\u2713", "\u2714", "\u2705"}
_NEGATIVE_VALUES = {"0", "no", "false", "none", "absent", "inactive", "not present", "not active", "n", "\u2717",
                    "\u2718", "\u274c"}  # fmt: skip
_TABLE_ROW = re.compile(r"^\s*\|(.+)\|\s*$")
"""A Markdown table row ("| AU4 | Brow Lowerer | Absent |"): its last cell, if a truth value, rules the row."""


def _truth_value(value: Any) -> bool | None:
    """True/False for a presence value (1, "yes", "present", "\u2713", ...), None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = re.sub(r"\s+", " ", value.strip().strip("*_").lower())
        if word in _POSITIVE_VALUES:
            return True
        if word in _NEGATIVE_VALUES:
            return False
    return None


_LIST_GAP = re.compile(r"^(?:[\s,/&+()\[\]]|\b(?:and|or|nor|as well as|plus)\b)*$", re.IGNORECASE)
_PREFIX_REACH_WORDS = 5
"""How many words may sit between a prefix cue and the mention it negates ("no clear sign of any AU4")."""

_NEGATIVE_HEADING = re.compile(
    r"^[\s#>*\-]*(?:absent|not present|not active|inactive|not observed|not detected)\b[^:\n]{0,30}:?[\s*]*$",
    re.IGNORECASE,
)
_POSITIVE_HEADING = re.compile(
    r"^[\s#>*\-]*(?:present|active|observed|detected|activated)\b[^:\n]{0,30}:?[\s*]*$", re.IGNORECASE
)


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    label: str


@dataclass
class _Reading:
    """What the prose of an answer asserts and denies."""

    asserted: set[str] = field(default_factory=set)
    negated: set[str] = field(default_factory=set)
    refused: bool = False


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _read_prose(text: str, find: Callable[[str], list[_Mention]]) -> _Reading:
    reading = _Reading()
    text = _blank(_normalise(text), _PSEUDO_NEGATIONS)
    negative_section, section_items = False, 0  # under a heading line such as "Absent AUs:"
    for line in text.split("\n"):
        if _NEGATIVE_HEADING.match(line) or _POSITIVE_HEADING.match(line):
            negative_section, section_items = bool(_NEGATIVE_HEADING.match(line)), 0
            continue
        if not line.strip():
            negative_section = negative_section and section_items == 0  # a blank line closes a non-empty section
            continue
        row = _TABLE_ROW.match(line)
        if row:
            *cells, last = (cell.strip() for cell in row.group(1).split("|"))
            truth = _truth_value(last)
            if truth is not None:
                labels = {mention.label for cell in cells for mention in find(cell)}
                (reading.asserted if truth and not negative_section else reading.negated).update(labels)
                section_items += len(labels)
                continue
        for clause in _CLAUSE_SPLIT.split(line):
            if _REFUSAL.search(clause):
                reading.refused = True
                continue
            mentions = find(clause)
            negated = _negated(clause, mentions)
            section_items += len(mentions)
            for i, mention in enumerate(mentions):
                (reading.negated if negative_section or i in negated else reading.asserted).add(mention.label)
    return reading


def _lists(clause: str, mentions: list[_Mention]) -> list[list[int]]:
    """Indices of mentions grouped into lists ("AU1, AU2 and AU4"; "AU12 (lip corner puller)")."""
    groups: list[list[int]] = []
    for i, mention in enumerate(mentions):
        if groups and _LIST_GAP.match(clause[mentions[i - 1].end : mention.start]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _negated(clause: str, mentions: list[_Mention]) -> set[int]:
    """Indices of the mentions a negation cue of this clause applies to."""
    if not mentions:
        return set()
    group_of = {i: group for group in _lists(clause, mentions) for i in group}
    negated: set[int] = set()
    for cue in _PREFIX_CUE.finditer(clause):
        following = [i for i, m in enumerate(mentions) if m.start >= cue.end()]
        if following:
            first = following[0]
            gap = clause[cue.end() : mentions[first].start]
            if "," not in gap and len(gap.split()) <= _PREFIX_REACH_WORDS:
                negated.update(i for i in group_of[first] if i >= first)
    for i, mention in enumerate(mentions):
        if i + 1 in group_of[i]:
            continue  # the list goes on: what follows its last member applies to all of it
        after = clause[mention.end :]
        value = _VALUE_AFTER.match(after)
        if value:
            if value.group("value").lower() in _NEGATIVE_VALUES:
                negated.update(j for j in group_of[i] if j <= i)
            continue
        limit = mentions[i + 1].start if i + 1 < len(mentions) else len(clause)
        cue = _POSTFIX_CUE.search(clause, mention.end, limit)
        if cue and _POSTFIX_GAP.match(clause[mention.end : cue.start()]):
            negated.update(j for j in group_of[i] if j <= i)
    return negated


# ---------------------------------------------------------------------------------------------------------------
# Expression


@lru_cache(maxsize=1)
def _expression_words() -> tuple[dict[str, str], re.Pattern[str]]:
    word_to_label: dict[str, str] = {}
    for label, words in EXPRESSION_SYNONYMS.items():
        for word in words:
            if word in word_to_label:
                raise ValueError(f"expression word {word!r} is listed under two classes")
            word_to_label[word] = label
    alternatives = "|".join(re.escape(w) for w in sorted(word_to_label, key=len, reverse=True))
    return word_to_label, re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def _find_expressions(clause: str) -> list[_Mention]:
    word_to_label, pattern = _expression_words()
    return [_Mention(m.start(), m.end(), word_to_label[m.group(0).lower()]) for m in pattern.finditer(clause)]


def _bare_label(text: str) -> str | None:
    """A whole answer that is one expression word ("Happiness.", "other", "**Sad**")."""
    word = re.sub(r"[^a-z ]", "", _normalise(text).lower()).strip()
    if word in EXPRESSIONS:
        return word
    return _expression_words()[0].get(word)


def _expression_from_text(text: str) -> ParsedAnswer:
    label = _bare_label(text)
    if label:
        return _ok(expression=label)
    reading = _read_prose(text, _find_expressions)
    named = sorted(reading.asserted, key=EXPRESSIONS.index)
    if len(named) == 1:
        return _ok(expression=named[0])
    if len(named) > 1:
        return _unparseable(f"several expressions named: {', '.join(named)}")
    if reading.refused:
        return _refusal()
    if reading.negated:
        return _unparseable("only negated expressions")
    return _unparseable("no expression named")


def parse_expression(text: str | None) -> ParsedAnswer:
    """The single expression an answer gives (a name from EXPRESSIONS), or why there is none."""
    return _parse_slots(text, _expression_from_json, _expression_from_text)


def _expression_from_json(obj: Mapping[str, Any]) -> ParsedAnswer:
    found, value = _json_get(obj, ("expression", "emotion", "label", "answer", "prediction"))
    if not found:
        return _unparseable("JSON without an expression key")
    if not isinstance(value, str):
        return _unparseable(f"expression value is not a string: {value!r}")
    return _expression_from_text(value)


# ---------------------------------------------------------------------------------------------------------------
# Valence and arousal

_NUMBER = DECIMAL
_SCALE_ECHO = re.compile(
    r"[(\[]?\s*(?:on a scale\s+)?(?:(?:ranging\s+)?from\s+)?"
    r"-\s*1(?:\.0+)?\s*(?:to|,|-|\.\.|…)\s*\+?1(?:\.0+)?\s*[)\]]?",
    re.IGNORECASE,
)
_DIMENSION_VALUE = {
    dim: re.compile(
        rf"\b{dim}\b(?:(?!valence|arousal)[^0-9+\-.\n]){{0,40}}?(?<![\w.])({_NUMBER})(?!\w|\.\d)", re.IGNORECASE
    )
    for dim in ("valence", "arousal")
}
_NUMBER_PAIR = re.compile(rf"^\s*[(\[]?\s*({_NUMBER})\s*[,;/ ]\s*({_NUMBER})\s*[)\]]?\s*\.?\s*$")


def _in_range(value: float) -> bool:
    low, high = VALENCE_AROUSAL_RANGE
    return math.isfinite(value) and low <= value <= high


def _valence_arousal(valence: float, arousal: float) -> ParsedAnswer:
    if not (_in_range(valence) and _in_range(arousal)):
        return _unparseable(f"valence/arousal outside {list(VALENCE_AROUSAL_RANGE)}: {valence}, {arousal}")
    return _ok(valence=float(valence), arousal=float(arousal))


def _valence_arousal_from_text(text: str) -> ParsedAnswer:
    text = _normalise(text)
    pair = _NUMBER_PAIR.match(text)
    if pair:
        return _valence_arousal(float(pair.group(1)), float(pair.group(2)))
    text = _SCALE_ECHO.sub(" ", text)
    values: dict[str, float] = {}
    for dim, pattern in _DIMENSION_VALUE.items():
        found = {float(m.group(1)) for m in pattern.finditer(text)}
        if len(found) > 1:
            return _unparseable(f"several {dim} values: {sorted(found)}")
        if found:
            values[dim] = found.pop()
    if len(values) == 2:
        return _valence_arousal(values["valence"], values["arousal"])
    if values:
        missing = "arousal" if "valence" in values else "valence"
        return _unparseable(f"no {missing} value")
    if _REFUSAL.search(text):
        return _refusal()
    return _unparseable("no valence or arousal value")


def _number(value: Any) -> float | None:
    """Strict: a JSON number, or a string that is a plain decimal once normalised ("−0.3" with a Unicode minus)."""
    return read_number(_normalise(value) if isinstance(value, str) else value, strict=True)


def _valence_arousal_from_json(obj: Mapping[str, Any]) -> ParsedAnswer:
    numbers = {}
    for dim in ("valence", "arousal"):
        found, value = _json_get(obj, (dim,))
        if not found:
            return _unparseable(f"JSON without a {dim} key")
        numbers[dim] = _number(value)
        if numbers[dim] is None:
            return _unparseable(f"{dim} is not a number: {value!r}")
    return _valence_arousal(numbers["valence"], numbers["arousal"])


def parse_valence_arousal(text: str | None) -> ParsedAnswer:
    """Valence and arousal in [-1, 1], both or neither (a pair is the answer; half a pair is unparseable)."""
    return _parse_slots(text, _valence_arousal_from_json, _valence_arousal_from_text)


# ---------------------------------------------------------------------------------------------------------------
# Action units

_AU_CODE = re.compile(
    r"\b(?:AUs?|action\s+units?)\s*[-_#]?\s*0*(?P<first>\d{1,2})[A-E]?(?!\w|\.\d)"
    r"(?P<more>(?:\s*(?:,|\+|/|&|\band\b|\bor\b)\s*0*\d{1,2}[A-E]?(?![\w%]|\.\d))*)",
    re.IGNORECASE,
)
_AU_NUMBER = re.compile(r"(\d{1,2})[A-E]?", re.IGNORECASE)
_NUMBER_LIST = re.compile(r"\s*\d{1,2}(?:\s*(?:[,;/+]|\band\b)\s*\d{1,2})*\s*\.?\s*", re.IGNORECASE)
"""A whole answer of bare AU numbers ("6, 12"): unambiguous in the AU answer slot."""
_NO_AUS = re.compile(
    r"^\s*(?:none|no|\[\s*\]|n/a)\s*\.?\s*$|\b(?:no|none of the)\s+(?:\w+\s+)?(?:action\s+units?|aus?)\b"
    r"(?!\s*[-_#]?\s*\d)",
    re.IGNORECASE,
)


_EXCEPTION = re.compile(r"[^.;\n]*\b(?:except|other than|apart from|besides|save for)\b", re.IGNORECASE)
"""After "no action units are active": an exception list follows, so the AUs it names are the answer."""


@lru_cache(maxsize=1)
def _au_name_pattern() -> tuple[dict[str, str], re.Pattern[str]]:
    """FACS names from the glossary of `seke_hf.knowledge` ("lip corner puller" -> AU12), hyphens optional."""
    names = {au.facs_name.lower(): au.name for au in ACTION_UNITS.values()}
    alternatives = "|".join(
        r"[\s\-]+".join(re.escape(word) for word in name.split()) for name in sorted(names, key=len, reverse=True)
    )
    return names, re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def _find_aus(clause: str) -> list[_Mention]:
    mentions = []
    for m in _AU_CODE.finditer(clause):
        numbers = [m.group("first"), *_AU_NUMBER.findall(m.group("more") or "")]
        for number in numbers:
            mentions.append(_Mention(m.start(), m.end(), f"AU{int(number)}"))
    names, pattern = _au_name_pattern()
    for m in pattern.finditer(clause):
        mentions.append(_Mention(m.start(), m.end(), names[re.sub(r"[\s\-]+", " ", m.group(0).lower())]))
    mentions.sort(key=lambda mention: (mention.start, mention.end))
    return mentions


def _au_set(asserted: Iterable[str]) -> list[str]:
    """Known AUs in AUS order; AUs outside the 17 (e.g. AU43) cannot be scored and are dropped."""
    chosen = set(asserted)
    return [au for au in AUS if au in chosen]


def _aus_from_text(text: str) -> ParsedAnswer:
    reading = _read_prose(text, _find_aus)
    normalised = _normalise(text)
    no_aus = any(not _EXCEPTION.match(normalised, m.end()) for m in _NO_AUS.finditer(normalised))
    conflict = sorted(reading.asserted & reading.negated, key=lambda au: int(au[2:]))
    if conflict:
        return _unparseable(f"both asserted and negated: {', '.join(conflict)}")
    if reading.asserted and no_aus:
        return _unparseable(f"says no AUs are active but names {', '.join(sorted(reading.asserted))}")
    if reading.asserted or reading.negated or no_aus:
        return _ok(aus=_au_set(reading.asserted))
    if reading.refused:
        return _refusal()
    return _unparseable("no action unit named")


def _au_item(item: Any) -> str | None:
    """One element of a JSON AU list: "AU12", "au12", 12, "12", "AU12 (lip corner puller)", "lip corner puller"."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return f"AU{item}"
    if not isinstance(item, str):
        return None
    if re.fullmatch(r"\s*0*\d{1,2}\s*", item):
        return f"AU{int(item)}"
    labels = {m.label for m in _find_aus(_normalise(item))}
    return labels.pop() if len(labels) == 1 else None


def _aus_from_json(obj: Mapping[str, Any]) -> ParsedAnswer:
    found, value = _json_get(obj, ("action_units", "aus", "active_aus", "active_action_units", "answer"))
    if not found:
        value = {k: v for k, v in obj.items() if _au_item(k)}
        if not value:
            return _unparseable("JSON without an action_units key")
    if isinstance(value, str):
        return _aus_from_text(value)
    if isinstance(value, list):
        names = [_au_item(item) for item in value]
        if None in names:
            return _unparseable(f"not an AU name in the list: {value[names.index(None)]!r}")
        return _ok(aus=_au_set(names))
    if isinstance(value, Mapping):
        active = []
        for key, flag in value.items():
            au, truth = _au_item(key), _truth_value(flag)
            if au is None or truth is None:
                return _unparseable(f"not an AU occurrence: {key!r}: {flag!r}")
            if truth:
                active.append(au)
        return _ok(aus=_au_set(active))
    return _unparseable(f"action_units is neither a list nor an object: {value!r}")


def _aus_from_plain_text(slot: str) -> ParsedAnswer:
    """A slot without a JSON object: bare AU numbers, a JSON list, or prose."""
    if _NUMBER_LIST.fullmatch(slot):
        return _ok(aus=_au_set(f"AU{int(n)}" for n in re.findall(r"\d+", slot)))
    if slot.strip().startswith("[") and slot.strip().endswith("]"):
        try:
            return _aus_from_json({"action_units": json.loads(slot)})
        except ValueError:
            pass
    return _aus_from_text(slot)


def parse_aus(text: str | None) -> ParsedAnswer:
    """The active AUs an answer names (a sorted list over AUS; [] for an explicit "none"), or why there are none."""
    return _parse_slots(text, _aus_from_json, _aus_from_plain_text)


# ---------------------------------------------------------------------------------------------------------------


_THINK = re.compile(r"<think(?:ing)?>.*?(?:</think(?:ing)?>|$)", re.IGNORECASE | re.DOTALL)
"""A reasoning model's deliberation: never the answer (an unclosed block is a reply cut off while thinking)."""


def _read_slot(
    slot: str, from_json: Callable[[Mapping[str, Any]], ParsedAnswer], from_text: Callable[[str], ParsedAnswer]
) -> ParsedAnswer:
    """One answer slot: read by its JSON object's keys if it holds one, else as text; broken JSON is unparseable."""
    try:
        obj = _json_object(slot)
    except ValueError as e:
        return _unparseable(str(e))
    return from_text(slot) if obj is None else from_json(obj)


def _parse_slots(
    text: str | None,
    from_json: Callable[[Mapping[str, Any]], ParsedAnswer],
    from_text: Callable[[str], ParsedAnswer],
) -> ParsedAnswer:
    def parse_slot(slot: str) -> ParsedAnswer:
        return _read_slot(slot, from_json, from_text)

    if text is None or not str(text).strip():
        return _unparseable("empty answer")
    text = _THINK.sub(" ", str(text))
    slots = _answer_slots(text)
    if slots is None:
        return parse_slot(text)
    if not slots:
        return _unparseable("empty <answer> tag")
    answers = [parse_slot(slot) for slot in slots]
    if len(answers) == 1:
        return answers[0]
    if all(a.status == answers[0].status and a.fields == answers[0].fields for a in answers):
        return answers[0]
    return _unparseable("several <answer> tags disagree")


PARSERS: dict[str, Callable[[str | None], ParsedAnswer]] = {
    "expression": parse_expression,
    "valence_arousal": parse_valence_arousal,
    "aus": parse_aus,
}
"""Task name -> parser. Task names are the label levels of `seke_hf.schema.LEVELS`."""


def parse_answer(task: str, text: str | None) -> ParsedAnswer:
    try:
        parser = PARSERS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(PARSERS)}") from None
    return parser(text)
