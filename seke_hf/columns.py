"""Column names and column-wise helpers shared by the release, FEID assembly, instructions and publishing code.

Everything here reads or builds whole columns in Arrow: the image bytes are never decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import pyarrow as pa
from datasets.table import InMemoryTable

IMAGE_COLUMN = "image"
"""The face of a row in the unified schema."""
CHAT_IMAGES_COLUMN = "images"
"""The face of a chat row, as a one-element list (LLaMA-Factory / ms-swift / TRL)."""
MESSAGES_COLUMN = "messages"
"""The conversation of a chat row."""
IMAGE_COLUMNS = (IMAGE_COLUMN, CHAT_IMAGES_COLUMN)
"""The only columns a release may carry image bytes in: the schema's face and the chat copy of it."""


def column_values(ds: datasets.Dataset, name: str) -> list[Any]:
    """One column as a Python list, read in one Arrow call (`ds[name]` in datasets 5 is a row-by-row view)."""
    return ds.select_columns([name]).with_format("arrow")[:][name].to_pylist()


def image_columns(features: datasets.Features) -> list[str]:
    """Columns whose feature holds an image anywhere (Image, a list of Images, a struct with an Image)."""
    return [name for name, feature in features.items() if holds_feature(feature, datasets.Image)]


def file_columns(features: datasets.Features) -> list[str]:
    """Columns whose feature stores a file (Image, Audio, Video, Pdf, ...: any type whose cells may be a path that
    `embed_table_storage` reads into the table), anywhere inside the column."""
    return [name for name, feature in features.items() if holds_feature(feature, None)]


def holds_feature(feature: Any, kind: type | tuple[type, ...] | None) -> bool:
    """Whether `feature` is, or contains, a `kind` feature (`None`: any feature that embeds files)."""
    if hasattr(feature, "embed_storage") if kind is None else isinstance(feature, kind):
        return True
    if isinstance(feature, dict):
        return any(holds_feature(f, kind) for f in feature.values())
    if isinstance(feature, list | tuple):
        return any(holds_feature(f, kind) for f in feature)
    inner = getattr(feature, "feature", None)
    return inner is not None and holds_feature(inner, kind)


def dataset_from_arrays(columns: Mapping[str, pa.Array], features: datasets.Features) -> datasets.Dataset:
    """An in-memory Dataset of ready Arrow arrays, cast to `features`."""
    table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
    table = table.cast(features.arrow_schema)
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))
