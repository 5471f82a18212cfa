"""Token log probabilities of a simulated answer, as the OpenAI API returns them in `choices[].logprobs`.

What they mean: the model's *raw* distribution, at temperature 1, before the request's sampling temperature and
before `temperature_drift` (see `noise.py`), conditional on the prefix the choice actually wrote. It is the same
`Belief` the choices are sampled from, so the greedy (T = 0) choice's expression token is the most likely candidate,
and a T = 0.8 choice that sampled a less likely expression says so in its logprob. Unknown images answer from their
flat belief the same way.

Tokens come from a regex (identifiers such as `happiness` or `AU12`, numbers, whitespace, runs of punctuation) that
matches no real tokenizer but keeps every label one whole token; the tokens concatenate to the content exactly.

- expression (the value of an `expression`-like key of a JSON answer; in prose, the word after "Expression:" and an
  expression `<answer>` tag): log of the belief's probability renormalised over the candidates the enum (or the
  prompt's list of options) allows, spelled as the enum spells it; the alternatives are the other candidates.
- action units, as an array of AU names (or of objects naming one AU each): a sequential choice over the allowed AUs
  in `AUS` order with the belief's per-AU probabilities p, clipped to [1e-6, 1 - 1e-6] (so AUs the prompt stated cost
  nothing). An AU name token has log p(AU) plus log(1 - p) of the allowed AUs skipped since the previous one; the
  token holding the array's closing `]` has log(1 - p) of the allowed AUs after the last one; the alternatives are
  the next AUs that could be named and `]`. The array's tokens thus sum to the log probability of exactly its set.
  A value keyed by AU (`"AU12": true`, `{"action_units": {"AU12": 1}}`, "present"/"absent") has log p or
  log(1 - p), with the other value as alternative.
- valence, arousal: a Gaussian discretised to 0.01 on [-1, 1] around the belief's centre, sd max(`va_noise`, 0.02);
  the most likely values and the written value's neighbours are the alternatives.
- free text (descriptions, prose): every word has logprob -0.2 with one alternative, so that the labels are not
  the only uncertain tokens; JSON structure, keys and punctuation have 0.0, with only themselves as alternative.

A refusal (`message.refusal`) gets `{"content": null, "refusal": [...]}`, its tokens at 0.0. A truncated choice gets
the logprobs of the content it kept (a token cut in two keeps its cut part, at 0.0). Logprobs change no token count
or usage. Streamed answers carry `"logprobs": null` in their chunks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seke_hf.schema import AUS
from seke_hf.simulate.noise import Belief, expression_candidates
from seke_hf.simulate.request import AU_LIST_NAMES, EXPRESSION_NAMES, AnswerSpec, safe_au

Alternatives = tuple[tuple[str, float], ...]

WORD_LOGPROB = -0.2
"""Every free-text word's logprob: the model is never quite sure of its wording."""
AU_CLIP = 1e-6
VA_GRID = np.round(np.arange(-100, 101) / 100, 2)
VA_MIN_SD = 0.02
VA_ALTERNATIVES = 5

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\s+|[^\w\s-]+|.", re.S)
_WORD = re.compile(r"\w")
_FILLERS = ("the", "a", "slight", "and", "face", "clear")
_OPPOSITES = {"present": "absent", "yes": "no", "true": "false", "1": "0"}
_OPPOSITES.update({v: k for k, v in _OPPOSITES.items()})
_AU_NAME_KEYS = frozenset({"au", "name", "id", "code", "action_unit", "unit"})
_PROSE_EXPRESSION = re.compile(r"^Expression: (\S+)$|<answer>(\w+)</answer>", re.M)


@dataclass(frozen=True)
class Token:
    text: str
    logprob: float = 0.0
    alternatives: Alternatives = ()
    """Other tokens that could stand here, with their logprobs."""

    def top(self, count: int) -> list[tuple[str, float]]:
        """The `count` most likely tokens at this position, the chosen one among them if it is likely enough."""
        ranked = dict(self.alternatives)
        ranked[self.text] = self.logprob
        return sorted(ranked.items(), key=lambda item: -item[1])[:count]


class TokenLogprobs:
    """Scores the tokens of any answer to one question from the belief its choices are sampled from."""

    def __init__(self, belief: Belief, spec: AnswerSpec, expressions: Sequence[str] | None, aus: Iterable[str] | None):
        self.spec = spec
        candidates = expression_candidates(belief, expressions)
        total = sum(belief.expression[e] for e in candidates)
        self.expressions = {self._spelled(e): math.log(belief.expression[e] / total) for e in candidates}
        allowed = set(AUS if aus is None else aus)
        self.au_p = {au: min(1 - AU_CLIP, max(AU_CLIP, belief.aus.get(au, 0.0))) for au in AUS if au in allowed}
        self.au_order = list(self.au_p)
        sd = max(belief.va_noise, VA_MIN_SD)
        self.va = {
            level: _log_normalised(-0.5 * ((VA_GRID - centre) / sd) ** 2)
            for level, centre in (("valence", belief.valence), ("arousal", belief.arousal))
        }

    def tokens(self, content: str) -> list[Token]:
        """The scored tokens of a whole (uncut) answer; plain text when it is not the JSON it should be."""
        out = _Tokens()
        if self.spec.kind == "text":
            self._prose(content, out)
        else:
            try:
                self._value(json.loads(content), "", out)
            except ValueError:
                out.prose(content)
        tokens = out.finish()
        return tokens if "".join(t.text for t in tokens) == content else plain_tokens(content)

    # ---------------------------------------------------------------- JSON
    def _value(self, value: Any, key: str, out: _Tokens) -> None:
        lowered = key.lower()
        if isinstance(value, dict):
            keyed_aus = lowered in AU_LIST_NAMES
            out.plain("{")
            for i, (name, item) in enumerate(value.items()):
                out.plain((", " if i else "") + json.dumps(name) + ": ")
                if (keyed_aus or name[:2].upper() == "AU") and safe_au(name) in self.au_p:
                    self._au_value(item, safe_au(name), out)
                else:
                    self._value(item, name, out)
            out.plain("}")
        elif isinstance(value, list):
            if lowered in AU_LIST_NAMES:
                self._au_array(value, out)
                return
            out.plain("[")
            for i, item in enumerate(value):
                out.plain(", " if i else "")
                self._value(item, key, out)
            out.plain("]")
        elif isinstance(value, str) and lowered in EXPRESSION_NAMES and value in self.expressions:
            self._quoted(value, self.expressions[value], self._expression_alternatives(value), out)
        elif isinstance(value, str):
            out.plain('"')
            out.prose(json.dumps(value)[1:-1])
            out.plain('"')
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and lowered in self.va:
            self._number(value, self.va[lowered], out)
        else:
            out.plain(json.dumps(value))

    def _au_array(self, items: list[Any], out: _Tokens) -> None:
        """`[...]` of AU names (or AU objects) as a sequential choice over the allowed AUs (module docstring)."""
        out.plain("[")
        position = 0  # index in au_order of the next AU that could be named
        for i, item in enumerate(items):
            out.plain(", " if i else "")
            name = item if isinstance(item, str) else _au_name_field(item)
            au = safe_au(name) if name is not None else ""
            if au not in self.au_order[position:]:
                self._value(item, "", out)
                continue
            index = self.au_order.index(au)
            logprob = self._skipped(position, index) + math.log(self.au_p[au])
            alternatives = self._au_alternatives(position)
            position = index + 1
            if isinstance(item, str):
                self._quoted(item, logprob, alternatives, out)
            else:
                self._au_object(item, name, logprob, alternatives, out)
        out.mark(self._skipped(position, len(self.au_order)), self._au_alternatives(position, closing=False))
        out.plain("]")

    def _au_object(self, item: dict, name: str, logprob: float, alternatives: Alternatives, out: _Tokens) -> None:
        out.plain("{")
        for i, (key, value) in enumerate(item.items()):
            out.plain((", " if i else "") + json.dumps(key) + ": ")
            if value == name and isinstance(value, str):
                self._quoted(value, logprob, alternatives, out)
                logprob, alternatives = 0.0, ()  # once
            else:
                self._value(value, key, out)
        out.plain("}")

    def _au_value(self, value: Any, au: str, out: _Tokens) -> None:
        """A presence value keyed by AU: log p if it says present, log(1 - p) if absent."""
        text = value if isinstance(value, str) else json.dumps(value)
        present = text.lower() in ("present", "yes", "true", "1")
        if text.lower() not in _OPPOSITES:
            self._value(value, "", out)
            return
        p = self.au_p[au]
        logprob, other = (math.log(p), math.log1p(-p)) if present else (math.log1p(-p), math.log(p))
        opposite = _OPPOSITES[text.lower()]
        opposite = opposite.capitalize() if text[:1].isupper() else opposite
        if isinstance(value, str):
            self._quoted(value, logprob, ((opposite, other),), out)
        else:
            out.token(text, logprob, ((opposite, other),))

    def _skipped(self, start: int, stop: int) -> float:
        return sum(math.log1p(-self.au_p[au]) for au in self.au_order[start:stop])

    def _au_alternatives(self, position: int, closing: bool = True) -> Alternatives:
        names = tuple(
            (self._au_spelled(au), self._skipped(position, j) + math.log(self.au_p[au]))
            for j, au in enumerate(self.au_order[position:], start=position)
        )
        return names + ((("]", self._skipped(position, len(self.au_order))),) if closing else ())

    def _expression_alternatives(self, chosen: str) -> Alternatives:
        return tuple((name, logprob) for name, logprob in self.expressions.items() if name != chosen)

    def _number(self, value: float, logprobs: np.ndarray, out: _Tokens) -> None:
        k = int(np.clip(round(value * 100), -100, 100)) + 100
        likely = set(np.argsort(-logprobs)[:VA_ALTERNATIVES]) | {max(k - 1, 0), min(k + 1, len(VA_GRID) - 1)}
        alternatives = tuple((json.dumps(float(VA_GRID[j])), float(logprobs[j])) for j in sorted(likely) if j != k)
        out.token(json.dumps(value), float(logprobs[k]), alternatives)

    @staticmethod
    def _quoted(text: str, logprob: float, alternatives: Alternatives, out: _Tokens) -> None:
        out.plain('"')
        out.token(json.dumps(text)[1:-1], logprob, alternatives)
        out.plain('"')

    # ---------------------------------------------------------------- prose
    def _prose(self, content: str, out: _Tokens) -> None:
        done = 0
        for match in _PROSE_EXPRESSION.finditer(content):
            name = match.group(1) or match.group(2)
            start = match.start(1) if match.group(1) else match.start(2)
            if name not in self.expressions:
                continue
            out.prose(content[done:start])
            out.token(name, self.expressions[name], self._expression_alternatives(name))
            done = start + len(name)
        out.prose(content[done:])

    # ---------------------------------------------------------------- spelling
    def _spelled(self, expression: str) -> str:
        return self.spec.expressions.get(expression, expression) if self.spec.expressions else expression

    def _au_spelled(self, au: str) -> str:
        return self.spec.aus.get(au, au) if self.spec.aus else au


class _Tokens:
    """Collects tokens: plain text (0.0), free text (words at -0.2), whole scored tokens, and marks that score the
    plain token holding the next character (the closing `]` of an AU array)."""

    def __init__(self) -> None:
        self._tokens: list[Token] = []
        self._pending = ""
        self._marks: list[tuple[int, float, Alternatives]] = []

    def plain(self, text: str) -> None:
        self._pending += text

    def mark(self, logprob: float, alternatives: Alternatives) -> None:
        self._marks.append((len(self._pending), logprob, alternatives))

    def prose(self, text: str) -> None:
        self._flush()
        self._tokens.extend(_word(t) if _WORD.search(t) else Token(t) for t in _TOKEN.findall(text))

    def token(self, text: str, logprob: float, alternatives: Alternatives = ()) -> None:
        self._flush()
        self._tokens.append(Token(text, logprob, alternatives))

    def finish(self) -> list[Token]:
        self._flush()
        return self._tokens

    def _flush(self) -> None:
        start = 0
        for text in _TOKEN.findall(self._pending):
            end = start + len(text)
            mark = next((m for m in self._marks if start <= m[0] < end), None)
            self._tokens.append(Token(text) if mark is None else Token(text, mark[1], mark[2]))
            start = end
        self._pending, self._marks = "", []


def _word(text: str) -> Token:
    filler = _FILLERS[len(text) % len(_FILLERS)]
    if filler == text:
        filler = _FILLERS[(len(text) + 1) % len(_FILLERS)]
    return Token(text, WORD_LOGPROB, ((filler, math.log1p(-math.exp(WORD_LOGPROB))),))


def _au_name_field(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    for key, value in item.items():
        if isinstance(value, str) and (key.lower() in _AU_NAME_KEYS or safe_au(value) in AUS):
            return value
    return None


def _log_normalised(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


def plain_tokens(text: str) -> list[Token]:
    """Tokens the model is sure of (a refusal, an answer whose shape is unknown)."""
    return [Token(t) for t in _TOKEN.findall(text)]


def choice_logprobs(tokens: list[Token], content: str | None, refusal: str | None, top: int) -> dict[str, Any]:
    """A choice's `logprobs` object: the scored tokens of what it kept of the answer, or of its refusal."""
    if content is None:
        return {"content": None, "refusal": [_entry(t, top) for t in plain_tokens(refusal or "")]}
    return {"content": [_entry(t, top) for t in _kept(tokens, content)], "refusal": None}


def _kept(tokens: list[Token], content: str) -> list[Token]:
    """The tokens of `content`, a prefix of the scored answer (or, for a refusal in prose, another text)."""
    if not "".join(t.text for t in tokens).startswith(content):
        return plain_tokens(content)
    kept, start = [], 0
    for token in tokens:
        if start >= len(content):
            break
        end = start + len(token.text)
        kept.append(token if end <= len(content) else Token(token.text[: len(content) - start]))
        start = end
    return kept


def _entry(token: Token, top: int) -> dict[str, Any]:
    return {
        **_described(token.text, token.logprob),
        "top_logprobs": [_described(text, logprob) for text, logprob in token.top(top)],
    }


def _described(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": float(logprob), "bytes": list(text.encode())}
