"""Annotations-only releases: what may be published is ids and labels, never the licensed images.

The six corpora forbid redistributing their images, so FEID/FEAB are published without them
(`export_annotations`, in `export.py`) and completed on the user's machine from the user's own licensed copies
(`attach_images`, in `attach.py`). `merge_annotations` (`merge.py`) brings an annotator run's labels, provenance
and descriptions back onto rows by `sample_id`, so nothing has to be annotated twice.
"""

from __future__ import annotations

from seke_hf.columns import CHAT_IMAGES_COLUMN, IMAGE_COLUMN, MESSAGES_COLUMN, column_values, image_columns
from seke_hf.release.attach import AttachReport, ImagesNotFound, attach_images
from seke_hf.release.export import export_annotations
from seke_hf.release.merge import (
    ANNOTATIONS_LAYOUT,
    IDENTITY_COLUMNS,
    annotation_features,
    load_annotations,
    merge_annotations,
)

__all__ = [
    "ANNOTATIONS_LAYOUT",
    "CHAT_IMAGES_COLUMN",
    "IDENTITY_COLUMNS",
    "IMAGE_COLUMN",
    "MESSAGES_COLUMN",
    "AttachReport",
    "ImagesNotFound",
    "annotation_features",
    "attach_images",
    "column_values",
    "export_annotations",
    "image_columns",
    "load_annotations",
    "merge_annotations",
]
