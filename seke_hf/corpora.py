"""The six source corpora by name, the builder config FEID/FEAB read each through, and one call to load any of them
in the unified schema."""

from __future__ import annotations

import os
from typing import Any

import datasets

CORPORA: tuple[str, ...] = ("ckplus", "rafdb", "affectnet", "disfa", "bp4d", "affwild2")

DEFAULT_CONFIGS: dict[str, str | None] = {
    "ckplus": "peak",  # one peak frame per labelled sequence, split as SEKE's release (ckplus_feid_split.csv)
    "rafdb": "aligned",
    "affectnet": None,
    "disfa": None,
    "bp4d": None,
    "affwild2": None,
}
"""The corpus builder config FEID/FEAB read each source through (None = that builder's default)."""


def load_corpus(
    name: str,
    data_dir: str | os.PathLike,
    config: str | None = None,
    split: str | None = None,
    streaming: bool = False,
    **kwargs: Any,
) -> datasets.DatasetDict | datasets.Dataset | datasets.IterableDatasetDict | datasets.IterableDataset:
    """Load corpus `name` from the folder of your licensed copy, in the unified schema (`seke_hf.FEATURES`).

    The result is cached by `datasets`; the cache is rebuilt when the builder code, the label files or the image
    folders change. Extra keyword arguments go to `datasets.load_dataset` (e.g. `num_proc`, config options such as
    `frame_stride`).
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}")
    return datasets.load_dataset(name, config, data_dir=os.fspath(data_dir), split=split, streaming=streaming, **kwargs)


def load_source(
    source: str,
    data_dir: str | os.PathLike,
    config: str | None = None,
    cache_dir: str | None = None,
    **kwargs: Any,
) -> datasets.DatasetDict:
    """All splits of one corpus, whole, through the config FEID/FEAB use (`DEFAULT_CONFIGS` unless `config`)."""
    config = config if config is not None else DEFAULT_CONFIGS.get(source)
    return load_corpus(source, data_dir, config=config, cache_dir=cache_dir, **kwargs)
