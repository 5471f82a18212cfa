"""FEID, SEKE's training set, from the corpora under one folder: `load_dataset("feid", data_dir=ROOT)`.

ROOT holds several corpora, so this builder reads no raw file itself: `seke_hf.feid.build` reads each corpus's
labels, selects the manifest and reads the images of its rows only; with `annotations=`, an annotator run or an
annotations-only release is merged back onto them by `sample_id`. FEAB (`feab.py`) is the same builder with the
test split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import datasets
import pyarrow as pa
from datasets.table import table_cast

from seke_hf.corpora import CORPORA
from seke_hf.feid import build, ckplus_split_digest
from seke_hf.release import annotation_features, export_annotations, load_annotations, merge_annotations
from seke_hf.schema import FEATURES
from seke_hf.selection import FEID_SPLIT, SelectionParams

from .composite_builder import CompositeBuilder, CompositeConfig

DEPENDS_ON = (
    "seke_hf.loading_scripts.composite_builder",
    "seke_hf.feid",
    "seke_hf.corpus_labels",
    "seke_hf.selected_rows",
    "seke_hf.selection",
    "seke_hf.corpus_roots",
    "seke_hf.release.merge",
    "seke_hf.columns",
)
"""Modules whose code decides the rows: a change to any of them rebuilds the cached dataset."""


@dataclass
class SekeConfig(CompositeConfig):
    """Options of FEID/FEAB. Every one is optional: `load_dataset("feid", data_dir=ROOT)` uses the shipped protocol."""

    source: str | None = None
    """Only this corpus (configs named after a corpus); None = every corpus found (config `all`)."""
    paths: dict[str, str] | None = None
    """Explicit corpus folders, e.g. {"rafdb": "/data/RAF"}; they override the search under data_dir."""
    manifest: str | None = None
    """A manifest CSV (sample_id,split,source) to rebuild exactly, instead of running the selection."""
    selection: dict[str, Any] | None = None
    """Overrides of `SelectionParams`, e.g. {"seed": 1, "targets": {"rafdb": [100, 20]}}."""
    corpus_configs: dict[str, str] | None = None
    """Builder config per corpus (default `seke_hf.corpora.DEFAULT_CONFIGS`)."""
    corpus_kwargs: dict[str, dict[str, Any]] | None = None
    """Extra options per corpus builder, e.g. {"disfa": {"frame_stride": 5}}."""
    annotations: Any = None
    """Annotations to merge by sample_id: a file, a save_to_disk folder, a Hub id or a Dataset."""
    annotations_config: str | None = None
    """Config of a Hub annotations dataset."""


class Feid(CompositeBuilder):
    NAME = "feid"
    SPLIT: ClassVar[str] = FEID_SPLIT
    BATCH_ROWS: ClassVar[int] = 1000
    """Rows per record batch: rows are copied from Arrow, not built in Python, so batches can be large."""
    BUILDER_CONFIG_CLASS = SekeConfig
    BUILDER_CONFIGS: ClassVar[list[SekeConfig]] = [
        SekeConfig(name="all", description="Samples of every corpus found under data_dir."),
        *(SekeConfig(name=source, source=source, description=f"Only the {source} samples.") for source in CORPORA),
    ]
    DEFAULT_CONFIG_NAME = "all"
    INPUT_OPTIONS = ("paths", "manifest", "annotations")
    LAYOUT = """\
  ROOT/                          (data_dir; folder names matched ignoring case, spaces, '-' and '_')
    CK+/  RAF-DB/  AffectNet/  DISFA/  BP4D/  Aff-Wild2/
                                 each laid out as its own loader expects (load_dataset("<corpus>") errors say how)
  or explicit folders: load_dataset("feid", paths={"rafdb": "/data/RAF-DB", ...})"""
    DESCRIPTION = (
        "FEID: SEKE's facial emotion instruction dataset (training split), selected from CK+, RAF-DB, AffectNet, "
        "DISFA, BP4D and Aff-Wild2 by seke_hf's protocol (our reading of arXiv 2505.18168)."
    )
    HOMEPAGE = "https://arxiv.org/abs/2505.18168"
    LICENSE = "other: each sample stays under the licence of its source corpus (no redistribution of images)."
    CITATION = """@article{wang2025seke,
  title={Emotion Knowledge Enhancement for Vision Large Language Models: A Self-Verification Approach for
         High-Quality Emotion Instruction Data Generation},
  author={Wang, Feifan and Song, Tengfei and He, Minggui and Su, Chang and Wu, Zhanglin and Yang, Hao and
          Zheng, Wenming and Yoshie, Osamu},
  journal={arXiv preprint arXiv:2505.18168}, year={2025}}"""

    @classmethod
    def extra_fingerprint(cls) -> str:
        return ckplus_split_digest()

    def _info(self) -> datasets.DatasetInfo:
        features = FEATURES
        if self.config.annotations is not None:
            annotations = load_annotations(self.config.annotations, self.config.annotations_config)
            features = annotation_features(FEATURES, annotations)
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=features,
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            license=self.LICENSE,
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        config = self.config
        if config.source is not None and config.source not in CORPORA:
            raise ValueError(f"{self.NAME}: unknown source {config.source!r}; expected one of {CORPORA}")
        if config.data_dir is None and not config.paths:
            self.locate(None)  # raises the layout error
        built = build(
            config.data_dir,
            paths=config.paths,
            sources=(config.source,) if config.source else CORPORA,
            manifest=config.manifest,
            params=SelectionParams.from_dict(config.selection),
            configs=config.corpus_configs,
            corpus_kwargs=config.corpus_kwargs,
            cache_dir=self._cache_dir_root,
        )
        return [datasets.SplitGenerator(name=self.SPLIT, gen_kwargs={"rows": built.datasets[self.SPLIT]})]

    def _generate_tables(self, rows: datasets.Dataset) -> Iterator[tuple[int, pa.Table]]:
        """Record batches straight from the corpora's Arrow data: image bytes pass through undecoded."""
        labels = None
        if self.config.annotations is not None:
            # Merge on the label columns only: the images are never rewritten.
            annotations = load_annotations(self.config.annotations, self.config.annotations_config)
            labels = merge_annotations(export_annotations(rows).flatten_indices(), annotations).with_format("arrow")
        schema = self.info.features.arrow_schema
        data = rows.with_format("arrow")
        for start in range(0, len(rows), self.BATCH_ROWS):
            batch = data[start : start + self.BATCH_ROWS]
            merged = labels[start : start + self.BATCH_ROWS] if labels is not None else batch
            columns = [merged[name] if name in merged.column_names else batch[name] for name in schema.names]
            yield start, table_cast(pa.Table.from_arrays(columns, names=schema.names), schema)
