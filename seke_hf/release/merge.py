"""`merge_annotations`: an annotator run's labels, provenance and descriptions back onto rows by `sample_id`, so
nothing has to be annotated twice (one Arrow `take` per column), and `load_annotations` for every form they come in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, TypeVar

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from seke_hf.columns import IMAGE_COLUMNS, column_values, dataset_from_arrays, holds_feature
from seke_hf.release.export import export_annotations

logger = logging.getLogger("seke_hf.release")

D = TypeVar("D", datasets.Dataset, datasets.DatasetDict)

IDENTITY_COLUMNS = ("sample_id", "source", "subject", "frame")
"""Who a row is: kept from the rows, never taken from an annotations file."""

ANNOTATIONS_LAYOUT = """\
  annotations: a Dataset/DatasetDict, a folder written by `save_to_disk`, a Parquet / JSON Lines / JSON / CSV file
  or a folder of Parquet files, or a Hub dataset id; one row per sample with a unique `sample_id` column plus the
  label columns to merge (expression, valence, arousal, aus, au_intensity, provenance, uncertainty, descriptions,
  status, ...), e.g. the output of `export_annotations`."""


def load_annotations(
    annotations: str | os.PathLike | datasets.Dataset | datasets.DatasetDict, config: str | None = None
) -> datasets.Dataset:
    """Any form of annotations (see ANNOTATIONS_LAYOUT) as one Dataset, all splits together, without images."""
    if isinstance(annotations, datasets.DatasetDict):
        annotations = datasets.concatenate_datasets(list(annotations.values()))
    if not isinstance(annotations, datasets.Dataset):
        annotations = _read_annotations(annotations, config)
    if "sample_id" not in annotations.column_names:
        raise ValueError(f"annotations have no `sample_id` column (columns: {annotations.column_names}).\n"
                         f"{ANNOTATIONS_LAYOUT}")  # fmt: skip
    return export_annotations(annotations)


def _read_annotations(spec: str | os.PathLike, config: str | None) -> datasets.Dataset:
    path = Path(spec).expanduser()
    formats = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}
    if path.is_file():
        builder = formats.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"annotations file {path} has an unknown extension.\n{ANNOTATIONS_LAYOUT}")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
        elif any(path.rglob("*.parquet")):
            loaded = datasets.load_dataset(str(path), config)
        else:
            raise FileNotFoundError(f"annotations folder {path} holds no save_to_disk dataset and no Parquet files.\n"
                                    f"{ANNOTATIONS_LAYOUT}")  # fmt: skip
    elif "/" in str(spec) and not str(spec).startswith((".", "/", "~")) and str(spec).count("/") == 1:
        loaded = datasets.load_dataset(str(spec), config)  # a Hub dataset id
    else:
        raise FileNotFoundError(f"annotations {spec} not found (no such file or folder, not a Hub id).\n"
                                f"{ANNOTATIONS_LAYOUT}")  # fmt: skip
    if isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.concatenate_datasets(list(loaded.values()))
    return loaded


def annotation_features(
    features: datasets.Features, annotations: datasets.Dataset | datasets.Features
) -> datasets.Features:
    """The features of `features` rows after merging `annotations` (its extra columns appended)."""
    extra = annotations if isinstance(annotations, datasets.Features) else annotations.features
    merged = dict(features)
    for name, feature in extra.items():
        if name not in merged and _mergeable(name, feature, features):
            merged[name] = feature
    return datasets.Features(merged)


def _mergeable(name: str, feature: object, row_features: datasets.Features) -> bool:
    """Whether an annotations column may be taken onto the rows: labels yes; identity, images and files never (a
    path in an annotations file must not replace a face, or a full release would embed whatever file it names)."""
    if name in IDENTITY_COLUMNS or name in IMAGE_COLUMNS or holds_feature(feature, None):
        return False
    return name not in row_features or not holds_feature(row_features[name], None)


def merge_annotations(
    ds: D,
    annotations: str | os.PathLike | datasets.Dataset | datasets.DatasetDict,
    *,
    config: str | None = None,
    on_unmatched: Literal["keep", "drop", "raise"] = "keep",
) -> D:
    """Take every label column of `annotations` onto the rows of `ds` with the same `sample_id`.

    Identity columns (source, subject, frame) and images stay those of `ds`. Rows without an annotation keep
    their own labels (`on_unmatched="keep"`; new columns are null there), are dropped (`"drop"`) or raise.
    """
    table = load_annotations(annotations, config)
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: merge_annotations(d, table, on_unmatched=on_unmatched) for split, d in ds.items()}
        )
    position = _unique_positions(column_values(table, "sample_id"))
    ids = column_values(ds, "sample_id")
    index = [position.get(sample_id) for sample_id in ids]
    unmatched = [sample_id for sample_id, i in zip(ids, index, strict=True) if i is None]
    if unmatched:
        message = f"{len(unmatched)} of {len(ids)} rows have no annotation (e.g. {', '.join(map(str, unmatched[:5]))})"
        if on_unmatched == "raise":
            raise KeyError(message)
        logger.warning("merge_annotations: %s; %s", message, "dropped" if on_unmatched == "drop" else "kept as is")
        if on_unmatched == "drop":
            keep = [row for row, i in enumerate(index) if i is not None]
            ds, index = ds.select(keep), [index[row] for row in keep]
    columns = [c for c in table.column_names if _mergeable(c, table.features[c], ds.features)]
    ignored = [c for c in table.column_names if c not in columns and c not in IDENTITY_COLUMNS]
    if ignored:
        logger.warning("merge_annotations: ignored column(s) %s: images and files stay those of the rows",
                       ", ".join(ignored))  # fmt: skip
    if not columns:
        return ds
    overlap = [c for c in columns if c in ds.column_names]
    table = _cast_like(table.select_columns(columns), ds.features, overlap)
    taken = table.with_format("arrow")[:].take(pa.array(index, pa.int64()))
    matched = pc.is_valid(pa.array(index, pa.int64()))
    own = ds.select_columns(overlap).with_format("arrow")[:] if overlap and unmatched else None
    arrays = {}
    for name in columns:
        column = taken[name].combine_chunks()
        if own is not None and name in overlap:
            column = pc.if_else(matched, column, own[name].combine_chunks())
        arrays[name] = column
    merged = dataset_from_arrays(arrays, datasets.Features({c: table.features[c] for c in columns}))
    order = list(ds.column_names) + [c for c in columns if c not in ds.column_names]
    rest = ds.remove_columns(overlap) if overlap else ds
    return datasets.concatenate_datasets([rest, merged], axis=1).select_columns(order)


def _unique_positions(ids: list[str]) -> dict[str, int]:
    position: dict[str, int] = {}
    duplicates = []
    for i, sample_id in enumerate(ids):
        if sample_id in position:
            duplicates.append(sample_id)
        position[sample_id] = i
    if duplicates:
        examples = ", ".join(map(str, duplicates[:5]))
        raise ValueError(f"annotations repeat {len(duplicates)} sample ids (e.g. {examples}); "
                         "each sample needs exactly one row")  # fmt: skip
    return position


def _cast_like(table: datasets.Dataset, features: datasets.Features, columns: list[str]) -> datasets.Dataset:
    """Cast overlapping columns to the rows' features (names -> ClassLabel ids, struct fields by name)."""
    for name in columns:
        target, current = features[name], table.features[name]
        if target == current:
            continue
        if isinstance(target, datasets.ClassLabel) and getattr(current, "dtype", None) == "string":
            table = table.map(
                lambda batch, n=name, t=target: {n: [t.str2int(v) if v else -1 for v in batch[n]]},
                batched=True,
                features=datasets.Features({**table.features, name: target}),
            )
        else:
            table = table.cast_column(name, target)
    return table
