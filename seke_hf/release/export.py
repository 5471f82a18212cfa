"""`export_annotations`: a dataset without its images, the part of FEID/FEAB that may be published."""

from __future__ import annotations

from typing import TypeVar

import datasets

from seke_hf.columns import file_columns

D = TypeVar("D", datasets.Dataset, datasets.DatasetDict)


def export_annotations(ds: D) -> D:
    """The dataset without its images: sample ids, labels, provenance and chat text stay; pixels (and any other
    file column: audio, video, documents) go."""
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({split: export_annotations(d) for split, d in ds.items()})
    if "sample_id" not in ds.column_names:
        raise ValueError("export_annotations needs a `sample_id` column: it is the key that brings images back")
    return ds.remove_columns(file_columns(ds.features))
