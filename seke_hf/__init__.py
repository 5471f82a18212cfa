"""seke-hf: SEKE (arXiv 2505.18168) for Hugging Face `datasets` and the Hub.

`import seke_hf` registers the corpus builders, so `datasets.load_dataset("rafdb", data_dir=...)` works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seke_hf._version import __version__
from seke_hf.corpora import CORPORA, load_corpus
from seke_hf.registration import register
from seke_hf.schema import AUS, EXPRESSIONS, FEATURES

register()

if TYPE_CHECKING:
    from seke_hf.annotate import SVUAMCAnnotator

# Heavier parts are imported on first use, so `import seke_hf` stays cheap.
_LAZY = {"SVUAMCAnnotator": "seke_hf.annotate"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seke_hf' has no attribute {name!r}")


__all__ = ["AUS", "CORPORA", "EXPRESSIONS", "FEATURES", "SVUAMCAnnotator", "__version__", "load_corpus"]
