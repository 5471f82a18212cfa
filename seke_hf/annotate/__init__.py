"""SV-UAMC: vision-LLM completion of missing emotion labels (see annotator.py).

`svuamc` is the pure algorithm, `prompts` the knowledge-enhanced prompts and schemas, `backend` the cached,
retrying OpenAI-compatible client (shared with the FEAB evaluator), `cache` the on-disk request cache.
"""

from __future__ import annotations

from seke_hf.annotate.annotator import SVUAMCAnnotator
from seke_hf.annotate.backend import ChatBackend, Completion, Prices, RequestFailed, Usage
from seke_hf.annotate.cache import RequestCache
from seke_hf.annotate.svuamc import SVUAMCConfig

__all__ = [
    "ChatBackend",
    "Completion",
    "Prices",
    "RequestCache",
    "RequestFailed",
    "SVUAMCAnnotator",
    "SVUAMCConfig",
    "Usage",
]
