"""Make `datasets.load_dataset("rafdb", data_dir=...)` reach our builders (datasets >= 4 runs no loading scripts).

`datasets` resolves a name through `datasets.load.dataset_module_factory`. For our names we answer with the builder's
module directly, keyed by a hash of its source code and a stat fingerprint of the raw label files and image folders,
instead of letting the packaged-module path glob and stat every file under `data_dir` on every call (seconds on a
corpus; ours answers a cached call in milliseconds). Every other name is passed through untouched.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

import datasets.load
from datasets.packaged_modules import _hash_python_lines

from seke_hf._version import __version__

BUILDER_MODULES: dict[str, str] = {
    "ckplus": "seke_hf.loading_scripts.ckplus",
    "rafdb": "seke_hf.loading_scripts.rafdb",
    "affectnet": "seke_hf.loading_scripts.affectnet",
    "disfa": "seke_hf.loading_scripts.disfa",
    "bp4d": "seke_hf.loading_scripts.bp4d",
    "affwild2": "seke_hf.loading_scripts.affwild2",
    "feid": "seke_hf.loading_scripts.feid",
    "feab": "seke_hf.loading_scripts.feab",
}
"""Builder name -> module. The six corpora, then the two datasets built from them."""

# Code every builder depends on: a change to any of these must rebuild cached datasets.
_SHARED_MODULES = (
    "seke_hf.schema",
    "seke_hf.loading_scripts.corpus_builder",
    "seke_hf.loading_scripts.raw_files",
    "seke_hf.loading_scripts.remote_files",
)


def builder_class(name: str) -> type[datasets.DatasetBuilder]:
    """The builder class registered under `name`."""
    if name not in BUILDER_MODULES:
        raise ValueError(f"unknown seke_hf builder {name!r}; expected one of {sorted(BUILDER_MODULES)}")
    return datasets.load.import_main_class(BUILDER_MODULES[name])


@functools.cache
def code_hash(name: str) -> str:
    """Hash of the builder's source, what it imports from the shared base, and the package version."""
    module = importlib.import_module(BUILDER_MODULES[name])
    extra = getattr(module, "DEPENDS_ON", ())
    lines = [__version__]
    for module_name in (module.__name__, *_SHARED_MODULES, *extra):
        lines += inspect.getsource(importlib.import_module(module_name)).splitlines()
    return _hash_python_lines(lines)


def dataset_module(name: str, data_dir: str | None) -> datasets.load.DatasetModule:
    builder_kwargs: dict[str, Any] = {"dataset_name": name}
    if data_dir is not None:
        builder_kwargs["raw_fingerprint"] = builder_class(name).raw_fingerprint(data_dir)
    return datasets.load.DatasetModule(BUILDER_MODULES[name], code_hash(name), builder_kwargs)


def register() -> None:
    """Route our builder names in `datasets.load_dataset` (idempotent)."""
    original = datasets.load.dataset_module_factory
    if getattr(original, "_seke_hf", False):
        return

    @functools.wraps(original)
    def dataset_module_factory(path: str, *args: Any, **kwargs: Any) -> datasets.load.DatasetModule:
        if path in BUILDER_MODULES and not kwargs.get("data_files"):
            return dataset_module(path, kwargs.get("data_dir"))
        return original(path, *args, **kwargs)

    dataset_module_factory._seke_hf = True  # type: ignore[attr-defined]
    datasets.load.dataset_module_factory = dataset_module_factory
