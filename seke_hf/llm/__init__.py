"""The model layer: how seke-hf talks to an OpenAI-compatible vision LLM, shared by `annotate` and `evaluate`.

Modules, one job each: `client` (the cached, retrying `ChatBackend` with its fallbacks), `request` (a request as a
value, and its cache key), `cache` (the on-disk `RequestCache`), `images` (images as JPEG data URLs), `answers`
(the JSON object and the numbers in a reply), `logprobs` (the model's own probability of an answer field's value),
`usage` (tokens, prices and tallies).
"""

from __future__ import annotations

from seke_hf.llm.answers import json_object, read_number
from seke_hf.llm.cache import CacheError, RequestCache, default_cache_dir, request_key
from seke_hf.llm.client import DEFAULT_BASE_URL, ChatBackend, Completion, RequestFailed
from seke_hf.llm.images import image_data_url, open_image
from seke_hf.llm.request import Request
from seke_hf.llm.usage import Prices, Tally, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "CacheError",
    "ChatBackend",
    "Completion",
    "Prices",
    "Request",
    "RequestCache",
    "RequestFailed",
    "Tally",
    "Usage",
    "default_cache_dir",
    "image_data_url",
    "json_object",
    "open_image",
    "read_number",
    "request_key",
]
