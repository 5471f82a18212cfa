"""What the corpus loader tests share: loading into a test's own cache, rows with raw image bytes, OS litter."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

import seke_hf

NOT_AN_IMAGE = b"this is not an image\n"


def load(name: str, data_dir: Path, cache_dir: str, config: str | None = None, **kwargs: Any) -> Any:
    return seke_hf.load_corpus(name, data_dir, config=config, cache_dir=cache_dir, **kwargs)


def raw_rows(ds: datasets.Dataset | datasets.IterableDataset) -> dict[str, dict[str, Any]]:
    """sample_id -> row, with the image as its stored bytes (not decoded), in the order of the dataset."""
    ds = ds.cast_column("image", datasets.Image(decode=False))
    return {row["sample_id"]: row for row in ds}


def cache_file(ds: datasets.Dataset) -> Path:
    return Path(ds.cache_files[0]["filename"])


def add_litter(root: Path) -> None:
    """What macOS and its zip tool leave behind: `.DS_Store` in every folder, `__MACOSX/` with AppleDouble files."""
    for folder in [root, *(Path(d) for d, _, _ in os.walk(root))]:
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".DS_Store")[:20]:
        shadow = root / "__MACOSX" / path.relative_to(root).parent / f"._{path.name}"
        shadow.parent.mkdir(parents=True, exist_ok=True)
        shadow.write_bytes(b"\x00\x05\x16\x07" + bytes(60))


def touch_later(path: Path, text: str | bytes) -> None:
    """Rewrite a file and move its mtime forward, so a change is visible even on coarse-mtime filesystems."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def warnings_of(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("seke_hf")]


def without(ids: Iterable[str], *removed: str) -> set[str]:
    return set(ids) - set(removed)


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid, complete 1-bit PNG of width x height (50 KB on disk, 400 megapixels once decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
