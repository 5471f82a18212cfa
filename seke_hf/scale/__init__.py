"""Beyond one machine: annotation on Ray Data (`ray_annotate`); optional extras imported on use (`extras`)."""

from __future__ import annotations

from seke_hf.scale.extras import MissingExtra, require
from seke_hf.scale.ray_annotate import annotate_with_ray, write_shards

__all__ = ["MissingExtra", "annotate_with_ray", "require", "write_shards"]
