"""SV-UAMC: vision-LLM completion of missing emotion labels (see annotator.py).

`svuamc` is the pure algorithm, `prompts` the knowledge-enhanced prompts, schemas and tolerant answer reading,
`annotator` the `Dataset.map` callable. The client, request cache and prices are the model layer's (`seke_hf.llm`),
re-exported here because the annotator's users configure them.
"""

from __future__ import annotations

from seke_hf.annotate.annotator import SVUAMCAnnotator
from seke_hf.annotate.svuamc import SVUAMCConfig
from seke_hf.llm import ChatBackend, Completion, Prices, RequestCache, RequestFailed, Usage

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
