"""Token usage estimated like the real API, automatic prompt caching, and the counters behind `GET /stats`.

A dry run is only useful if it tells what the real run would cost, so usage follows OpenAI's published rules:
- text: a simple tokenizer approximation (words of up to 6 characters are one token, longer ones one per 4
  characters, numbers one per 3 digits, each punctuation mark one), plus 3 tokens per message and 3 to prime the
  reply (the OpenAI cookbook's count for chat models);
- images (GPT-4o family): `detail: low` costs 85 tokens; `high` and `auto` scale the image to fit 2048x2048, then
  its shortest side to 768, and cost 85 + 170 per 512-pixel tile;
- a structured-output schema is a prefix of the prompt (so it is counted, and cached with it);
- automatic prompt caching: a prompt whose first 1024 or more tokens were seen before reports the longest such
  prefix, rounded down to a multiple of 128, as `usage.prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import PIL.Image

IMAGE_BASE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
IMAGE_TILE = 512
IMAGE_MAX_SIDE = 2048
IMAGE_SHORT_SIDE = 768
"""OpenAI's image token rules for GPT-4o / GPT-4.1 (platform.openai.com/docs/guides/images-vision, "Calculating
costs")."""

TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
"""OpenAI cookbook, "How to count tokens with tiktoken" (gpt-4o: 3 per message, 3 to prime the reply)."""

CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT = 128
"""OpenAI prompt caching: prompts of 1024 tokens or more, cache hits in increments of 128 tokens."""

_TOKEN = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")


_LONG_WORD = re.compile(r"[A-Za-z]{7,}")
_LONG_NUMBER = re.compile(r"\d{4,}")


@functools.lru_cache(maxsize=4096)
def text_tokens(text: str) -> tuple[str, ...]:
    """Approximate BPE tokens of `text` (about 4 characters of English per token, like cl100k/o200k).

    Cached: system prompts and instructions repeat across requests.
    """
    tokens: list[str] = []
    for piece in _TOKEN.findall(text):
        if piece.isdigit():
            tokens.extend(piece[i : i + 3] for i in range(0, len(piece), 3))
        elif piece.isalpha() and len(piece) > 6:
            tokens.extend(piece[i : i + 4] for i in range(0, len(piece), 4))
        else:
            tokens.append(piece)
    return tuple(tokens)


def count_text_tokens(text: str | None) -> int:
    """`len(text_tokens(text))`, without building the tokens (for completions, which never repeat)."""
    if not text:
        return 0
    count = len(_TOKEN.findall(text))
    count += sum((len(word) - 1) // 4 for word in _LONG_WORD.findall(text))
    count += sum((len(number) - 1) // 3 for number in _LONG_NUMBER.findall(text))
    return count


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile formula: 85 for `low`, else 85 + 170 * tiles of the scaled image."""
    if detail == "low":
        return IMAGE_BASE_TOKENS
    scale = min(1.0, IMAGE_MAX_SIDE / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, IMAGE_SHORT_SIDE / min(width, height))
    width, height = width * scale, height * scale
    tiles = math.ceil(width / IMAGE_TILE) * math.ceil(height / IMAGE_TILE)
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header (no full decode)."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        return image.size


def prompt_units(
    messages: Iterable[Mapping[str, Any]], schema: Mapping[str, Any] | None, images: Iterable[tuple[bytes, str]] = ()
) -> list[str]:
    """The prompt as a list of token-like units, in order: what is counted and what the prefix cache hashes.

    `images` are the decoded (bytes, detail) of the image parts, in order. An image becomes as many units as it
    costs tokens, all derived from its content hash.
    """
    pending = iter(images)
    units: list[str] = []
    if schema is not None:
        units.extend(text_tokens(json.dumps(schema, sort_keys=True)))  # the schema is a cached prefix too
    for message in messages:
        units.append(f"<|{message.get('role')}|>")
        units.extend(["<|m|>"] * (TOKENS_PER_MESSAGE - 1))
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "text":
                units.extend(text_tokens(str(part.get("text", ""))))
            elif part.get("type") == "image_url":
                units.extend(_image_units(*next(pending)))
    units.extend(["<|assistant|>"] * REPLY_PRIMING_TOKENS)
    return units


def _image_units(data: bytes, detail: str) -> list[str]:
    digest = hashlib.sha1(data).hexdigest()[:16]
    units = _IMAGE_UNITS.get((digest, detail))
    if units is None:
        try:
            count = image_tokens(*image_size(data), detail)
        except Exception:  # an unreadable image is reported by the model, not here
            count = IMAGE_BASE_TOKENS
        units = [f"<|img:{digest}:{i}|>" for i in range(count)]
        if len(_IMAGE_UNITS) > 2048:
            _IMAGE_UNITS.clear()
        _IMAGE_UNITS[(digest, detail)] = units
    return units


_IMAGE_UNITS: dict[tuple[str, str], list[str]] = {}
"""Units of recently seen images: Monte Carlo rounds and retries resend the same image."""


class PromptCache:
    """Prefixes seen so far, hashed at every 128-token boundary from 1024 on (least recently used dropped)."""

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def cached_tokens(self, units: list[str]) -> int:
        """How many leading tokens of this prompt were cached; then remembers its prefixes."""
        boundaries: list[tuple[int, bytes]] = []
        digest = hashlib.blake2b(digest_size=16)
        for end in range(CACHE_INCREMENT, len(units) + 1, CACHE_INCREMENT):  # one update per 128-token block
            digest.update("\x00".join(units[end - CACHE_INCREMENT : end]).encode() + b"\x01")
            if end >= CACHE_MIN_TOKENS:
                boundaries.append((end, digest.copy().digest()))
        hit = 0
        with self._lock:
            for length, key in boundaries:
                if key in self._seen:
                    hit = length
                    self._seen.move_to_end(key)
                else:
                    self._seen[key] = None
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return hit

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


class Accounting:
    """Thread-safe counters for `GET /stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters; `in_flight` is a gauge of requests being served and survives a reset."""
        with self._lock:
            self.requests = 0
            self.completions = 0
            self.choices = 0
            self.prompt_tokens = 0
            self.cached_tokens = 0
            self.completion_tokens = 0
            self.faults: Counter[str] = Counter()
            self.errors: Counter[int] = Counter()
            self.unknown_images = 0
            self.images: dict[str, dict[str, int]] = {}
            self.peak_in_flight = self.in_flight

    def begin(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def end(self, status: int) -> None:
        with self._lock:
            self.in_flight -= 1
            if status != 200:
                self.errors[status] += 1

    def fault(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self.faults[kind] += count

    def completion(self, image_key: str | None, known: bool, choices: int, usage: Mapping[str, Any]) -> None:
        with self._lock:
            self.completions += 1
            self.choices += choices
            self.prompt_tokens += usage["prompt_tokens"]
            self.cached_tokens += usage["prompt_tokens_details"]["cached_tokens"]
            self.completion_tokens += usage["completion_tokens"]
            if image_key is not None:
                counts = self.images.setdefault(image_key, {"requests": 0, "choices": 0})
                counts["requests"] += 1
                counts["choices"] += choices
                if not known:
                    self.unknown_images += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "choices": self.choices,
                "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "faults": dict(self.faults),
                "errors": {str(status): count for status, count in sorted(self.errors.items())},
                "unknown_images": self.unknown_images,
                "images": {key: dict(value) for key, value in self.images.items()},
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
            }
