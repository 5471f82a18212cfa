"""Cartoon faces whose drawing follows their labels (brows for AU1/2/4, mouth for AU12/15/25/26, ...).

Each face also carries a seeded background texture, so no two samples look alike: a simulated vision LLM can tell
them apart by their thumbnails, as a real model tells real faces apart.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable

import numpy as np
import PIL.Image
import PIL.ImageDraw

# How each expression is drawn when no AUs are given (EMFACS-like prototypes, coarse).
_EXPRESSION_AUS = {
    "neutral": (),
    "anger": ("AU4", "AU5", "AU7", "AU23"),
    "disgust": ("AU9", "AU15", "AU17"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU20", "AU26"),
    "happiness": ("AU6", "AU12", "AU25"),
    "sadness": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "contempt": ("AU14",),
    "other": ("AU17",),
}


def draw_face(
    seed: int,
    expression: str | None = None,
    aus: Iterable[str] = (),
    size: tuple[int, int] = (112, 112),
    grey: bool = False,
) -> PIL.Image.Image:
    """A synthetic face of `size` (width, height) showing `aus` (or the expression's prototype AUs)."""
    rng = np.random.default_rng(seed)
    width, height = size
    active = set(aus) or set(_EXPRESSION_AUS.get(expression or "neutral", ()))
    texture = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    background = PIL.Image.fromarray(texture).resize((width, height), PIL.Image.BILINEAR)
    img = background.copy()
    d = PIL.ImageDraw.Draw(img)
    cx, cy, rx, ry = width / 2, height / 2, width * 0.36, height * 0.44
    skin = tuple(int(v) for v in rng.integers(150, 235, size=3))
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin, outline=(40, 30, 20))
    ex, ey, er = rx * 0.45, cy - ry * 0.25, max(2, width // 28)
    eye_open = er * (1.6 if "AU5" in active else 0.5 if "AU7" in active or "AU6" in active else 1.0)
    brow_y = ey - er * (4.5 if {"AU1", "AU2"} & active else 3.0)
    brow_tilt = er * (1.5 if "AU4" in active else -1.0 if "AU1" in active else 0)
    for side in (-1, 1):
        x = cx + side * ex
        d.ellipse([x - er, ey - eye_open, x + er, ey + eye_open], fill=(30, 30, 30))
        d.line(
            [x - side * er * 2, brow_y - brow_tilt, x + side * er * 2, brow_y + brow_tilt], fill=(50, 35, 25), width=2
        )
    if "AU9" in active:
        d.line([cx - er, cy - er, cx + er, cy - er], fill=(90, 60, 50), width=1)
    my, mw = cy + ry * 0.45, rx * (0.75 if "AU20" in active else 0.55)
    curve = er * (3 if "AU12" in active else -3 if "AU15" in active else 0)
    opening = er * (3 if "AU26" in active else 1.2 if "AU25" in active else 0)
    if opening:
        d.ellipse([cx - mw * 0.6, my - opening, cx + mw * 0.6, my + opening], fill=(90, 20, 20))
    bend = er * 2 + abs(curve)
    d.arc(
        [cx - mw, my - bend, cx + mw, my + bend],
        20 if curve >= 0 else 200,
        160 if curve >= 0 else 340,
        fill=(120, 30, 30),
        width=2,
    )
    if "AU14" in active:
        d.line([cx + mw, my, cx + mw + er, my - er], fill=(120, 30, 30), width=2)
    return img.convert("L") if grey else img


def face_bytes(seed: int, fmt: str = "JPEG", **kwargs) -> bytes:
    """`draw_face` encoded as JPEG or PNG bytes."""
    buffer = io.BytesIO()
    draw_face(seed, **kwargs).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def seed_of(*parts: object) -> int:
    """A stable pixel seed from any identifying parts (Python's hash() changes between processes)."""
    return zlib.crc32("/".join(map(str, parts)).encode())
