"""Images as vision LLMs receive them: JPEG data URLs, downscaled, from any form a `datasets` image cell takes.

One encoder for the annotator and the evaluator, because the data URL is part of every request cache key: the same
image must always become the same bytes.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping
from typing import Any

import PIL.Image


def open_image(image: Any) -> PIL.Image.Image:
    """A decoded PIL image, `datasets`' undecoded {"bytes", "path"} cell, or a path -> a loaded PIL image.

    Raises ValueError for a cell with neither bytes nor a path, TypeError for anything else that is not an image,
    and PIL's OSError (`PIL.UnidentifiedImageError`) for bytes that are not a readable image.
    """
    if isinstance(image, Mapping):
        if image.get("bytes"):
            image = PIL.Image.open(io.BytesIO(image["bytes"]))
        elif image.get("path"):
            image = PIL.Image.open(image["path"])
        else:
            raise ValueError("image cell holds neither bytes nor a path")
    elif isinstance(image, (str, os.PathLike)):
        image = PIL.Image.open(image)
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"expected an image, got {type(image).__name__}")
    image.load()
    return image


def image_data_url(image: Any, max_side: int = 512, quality: int = 90) -> str:
    """JPEG data URL of `image` (anything `open_image` reads), its longer side at most `max_side` (never upscaled)."""
    image = open_image(image).convert("RGB")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), PIL.Image.LANCZOS
        )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
