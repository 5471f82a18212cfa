"""The model's own probabilities of the values of a structured answer, from the token logprobs servers return.

    fields = field_logprobs(choice.message.content, choice.logprobs.content, ("expression", "action_units"))
    fields["expression"].probability        # P(this value | the answer so far): exp(sum of its tokens' logprobs)
    fields["expression"].alternatives       # {"sadness": -1.9, ...}: what else the value's first token could be

Why only named fields: a whole choice's logprobs are about twenty times its text, and the caller needs a handful of
numbers (how sure the model is of each label), so the client keeps those and drops the rest before caching.

How a value is found: the first top-level JSON object of the text is scanned (strings and nesting tracked), and a
field's value span runs from its first byte to its last (an array's closing bracket included: the token that closes
an array is the model saying "nothing more", which is part of the value's probability). Offsets are in UTF-8 bytes,
from each token's `bytes` (a token may hold part of a character); when the tokens do not add up to the text (a
server that reports something else) nothing is returned. A value's probability sums the logprobs of every token
that overlaps its span; the structure around it (quotes, colons) is certain in a schema-constrained answer and adds
0. Alternatives are read at the value's first token: the part of each alternative after the bytes the chosen token
shares with the text before the value (`":"` in `":"happ`), so `happ` vs `sad` are told apart whatever the
tokenizer fuses.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)
_warned: list[bool] = []


@dataclass(frozen=True)
class ValueLogprob:
    """How sure the model was of one field's value: its log probability, and the first token's alternatives."""

    logprob: float
    alternatives: dict[str, float] = field(default_factory=dict)

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)

    def to_json(self) -> list[Any]:
        return [self.logprob, dict(self.alternatives)]  # JSON keeps floats exactly: cached answers decide alike

    @classmethod
    def from_json(cls, value: Any) -> ValueLogprob:
        logprob, alternatives = value
        return cls(float(logprob), {str(k): float(v) for k, v in dict(alternatives).items()})


def field_logprobs(text: str | None, tokens: Sequence[Any] | None, fields: Iterable[str]) -> dict[str, ValueLogprob]:
    """The `ValueLogprob` of each of `fields` found in the JSON answer `text`, from its token logprobs (the
    `logprobs.content` list of a choice: objects or dicts with `token`, `logprob`, `bytes`, `top_logprobs`)."""
    if not text or not tokens:
        return {}
    data = text.encode()
    pieces = [_token(t) for t in tokens]
    if any(p is None for p in pieces) or b"".join(p[0] for p in pieces) != data:
        if not _warned:  # once per process: every answer of such a server is the same
            _warned.append(True)
            logger.warning("the server's logprob tokens do not add up to its answer text: answers are used without "
                           "the model's own probabilities")  # fmt: skip
        return {}
    starts, offset = [], 0
    for raw, _, _ in pieces:
        starts.append(offset)
        offset += len(raw)
    spans = _value_spans(data)
    out = {}
    for name in fields:
        span = spans.get(name)
        if span is None:
            continue
        first, last = span
        covering = [i for i, (raw, _, _) in enumerate(pieces) if starts[i] <= last and starts[i] + len(raw) > first]
        if not covering:
            continue
        logprob = math.fsum(pieces[i][1] for i in covering)
        head = covering[0]
        content = first + 1 if data[first : first + 1] in (b'"', b"[") else first
        head = next((i for i in covering if starts[i] + len(pieces[i][0]) > content), head)
        shared = data[starts[head] : max(content, starts[head])]
        alternatives: dict[str, float] = {}
        for raw, lp in pieces[head][2]:
            if raw.startswith(shared) and len(raw) > len(shared):
                key = raw[len(shared) :].decode(errors="replace")
                alternatives[key] = max(lp, alternatives.get(key, -math.inf))
        out[name] = ValueLogprob(logprob, alternatives)
    return out


def _token(t: Any) -> tuple[bytes, float, list[tuple[bytes, float]]] | None:
    """(bytes, logprob, [(alternative bytes, logprob)]) of one token entry, None if it lacks them."""
    get = t.get if isinstance(t, Mapping) else lambda k, d=None: getattr(t, k, d)
    token, logprob = get("token"), get("logprob")
    if not isinstance(token, str) or not isinstance(logprob, (int, float)):
        return None
    raw = bytes(get("bytes") or b"") or token.encode()
    alternatives = []
    for alt in get("top_logprobs") or ():
        entry = _token({**_as_dict(alt), "top_logprobs": None})
        if entry is not None:
            alternatives.append((entry[0], entry[1]))
    return raw, max(float(logprob), -1e4), alternatives


def _as_dict(t: Any) -> dict[str, Any]:
    if isinstance(t, Mapping):
        return dict(t)
    return {k: getattr(t, k, None) for k in ("token", "logprob", "bytes")}


def _value_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """{key: (first byte, last byte)} of the values of the first top-level JSON object in `data`."""
    start = data.find(b"{")
    if start < 0:
        return {}
    spans: dict[str, tuple[int, int]] = {}
    depth, i, key, value_start, expect_key = 0, start, None, None, True
    n = len(data)
    while i < n:
        c = data[i : i + 1]
        if c == b'"':
            end = _string_end(data, i)
            if end < 0:
                break
            if depth == 1 and expect_key:
                key = data[i + 1 : end].decode(errors="replace")
            elif depth == 1 and value_start is None:
                spans.setdefault(key or "", (i, end))
            i = end + 1
            continue
        if c in b"{[":
            if depth == 1 and not expect_key:
                value_start = i
            depth += 1
        elif c in b"}]":
            depth -= 1
            if depth == 1 and value_start is not None:
                spans.setdefault(key or "", (value_start, i))
                value_start = None
            if depth == 0:
                break
        elif depth == 1 and c == b":":
            expect_key = False
        elif depth == 1 and c == b",":
            expect_key, key = True, None
        elif depth == 1 and not expect_key and value_start is None and not c.isspace():
            end = i
            while end + 1 < n and data[end + 1 : end + 2] not in b",}" and not data[end + 1 : end + 2].isspace():
                end += 1
            spans.setdefault(key or "", (i, end))
            i = end + 1
            continue
        i += 1
    return {k: v for k, v in spans.items() if k}


def _string_end(data: bytes, i: int) -> int:
    """Index of the quote closing the JSON string opening at `i` (-1 if unterminated)."""
    j = i + 1
    while j < len(data):
        c = data[j : j + 1]
        if c == b"\\":
            j += 2
            continue
        if c == b'"':
            return j
        j += 1
    return -1
