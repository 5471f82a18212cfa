"""The base of builders made from several corpora under one ROOT (FEID, FEAB): no raw file of their own.

A corpus builder (`corpus_builder.py`) reads one licensed copy; a composite builder finds the corpora under ROOT,
keys its cache by each found corpus's own raw fingerprint (and by the stat of any file its options name), and
leaves reading to the corpus builders. Subclasses declare their configs and how the rows are made.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets

from seke_hf.corpus_roots import FOLDER_NAMES, find_corpus_dirs

from .raw_files import CorpusLayoutError, stat_fingerprint


@dataclass
class CompositeConfig(datasets.BuilderConfig):
    """`raw_fingerprint` and `inputs_fingerprint` are set by seke_hf so the cache follows the corpora and files."""

    raw_fingerprint: str | None = None
    inputs_fingerprint: str | None = None
    """Stat fingerprint of the local files and folders the options name (see `INPUT_OPTIONS`)."""


class CompositeBuilder(datasets.ArrowBasedBuilder):
    BUILDER_CONFIG_CLASS = CompositeConfig
    NAME: ClassVar[str]
    """The builder's name in errors."""
    INPUT_OPTIONS: ClassVar[tuple[str, ...]] = ()
    """Config options naming files or folders read at build time: editing those rebuilds the cache."""
    LAYOUT: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any):
        fingerprint = inputs_fingerprint(kwargs.get(option) for option in self.INPUT_OPTIONS)
        if fingerprint:
            kwargs["inputs_fingerprint"] = fingerprint
        super().__init__(*args, **kwargs)

    @classmethod
    def locate(cls, data_dir: str | Path | None) -> Path:
        """ROOT itself, once it is known to hold at least one corpus folder."""
        if data_dir is None:
            raise CorpusLayoutError(f"{cls.NAME}: pass data_dir=<folder holding your corpora>.\n{cls.LAYOUT}")
        root = Path(data_dir).expanduser()
        if not root.is_dir() or not find_corpus_dirs(root):
            names = ", ".join(names[0] for names in FOLDER_NAMES.values())
            raise CorpusLayoutError(f"{cls.NAME}: no corpus folder ({names}) in {root}.\n{cls.LAYOUT}")
        return root

    @classmethod
    def raw_fingerprint(cls, data_dir: str | Path) -> str:
        """Each found corpus's own raw fingerprint, plus whatever `extra_fingerprint` adds."""
        from seke_hf.registration import builder_class

        h = hashlib.sha256(cls.extra_fingerprint().encode())
        for source, folder in find_corpus_dirs(cls.locate(data_dir)).items():
            try:
                key = builder_class(source).raw_fingerprint(folder)
            except (OSError, ValueError, ImportError) as e:  # a broken corpus is reported when it is loaded
                key = f"unreadable:{type(e).__name__}"
            h.update(f"{source}:{key}".encode())
        return h.hexdigest()[:16]

    @classmethod
    def extra_fingerprint(cls) -> str:
        """Shipped data the rows depend on besides the corpora."""
        return ""


def inputs_fingerprint(inputs: Iterable[Any]) -> str | None:
    """Stat of every local file or folder among option values (dict values, paths), or a Dataset's fingerprint."""
    locations: list[str] = []
    for value in inputs:
        if isinstance(value, dict):
            locations += [os.fspath(v) for v in value.values() if isinstance(v, str | os.PathLike)]
        elif isinstance(value, str | os.PathLike) and Path(value).expanduser().exists():
            locations.append(os.fspath(value))
        elif isinstance(value, datasets.Dataset):
            locations.append(f"dataset:{value._fingerprint}")
    if not locations:
        return None
    h = hashlib.sha256()
    for location in locations:
        path = Path(location).expanduser()
        key = stat_fingerprint(path, [".", *_children(path)]) if path.exists() else location
        h.update(f"{location}:{key}".encode())
    return h.hexdigest()[:16]


def _children(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
