"""Reading a licensed corpus as it arrives: finding its root, skipping OS litter, reading labels and images safely.

Everything here is shared by the six corpus builders, so each builder keeps to what its own format needs.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import PIL.Image

from .remote_files import RemotePath, is_url, remote_fingerprint

JUNK_NAMES = frozenset({".DS_Store", "__MACOSX", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints"})


class CorpusLayoutError(FileNotFoundError):
    """The folder does not hold the corpus in a layout we know: says which file was expected and where."""


class UnreadableImage(ValueError):
    """An image file exists but is not a readable image."""


class OversizedImage(UnreadableImage):
    """An image with more pixels than PIL agrees to decode (`PIL.Image.MAX_IMAGE_PIXELS`): a decompression bomb or
    a stray poster-sized scan, which would stop a whole build where its pixels are first decoded."""


def local_path(*parts: str | os.PathLike) -> Path:
    """A plain `pathlib.Path`, for builders to build their paths with (a `RemotePath` for a URL such as `s3://...`).

    When a builder is created, `datasets` swaps `Path`, `open`, `os.path.*` and `numpy.load` in its module and in
    its base classes' modules for streaming versions that parse every path as a URL (tens of microseconds per call,
    10-25% of a conversion). This module is not patched, so local paths made here stay fast.
    """
    first = parts[0]
    if isinstance(first, RemotePath) or is_url(first):
        path = first if isinstance(first, RemotePath) else RemotePath.from_url(first)
        for part in parts[1:]:
            path = path / part
        return path  # type: ignore[return-value]  # duck-typed: the Path subset builders use
    return Path(*parts)


def is_junk(name: str) -> bool:
    """OS and archive litter (`.DS_Store`, `__MACOSX`, AppleDouble `._x` files, hidden files)."""
    return name in JUNK_NAMES or name.startswith(".")


def iter_entries(folder: Path) -> Iterator[os.DirEntry]:
    """Entries of `folder` without litter, sorted by name so that every walk is deterministic."""
    with os.scandir(folder) as it:
        entries = [e for e in it if not is_junk(e.name)]
    return iter(sorted(entries, key=lambda e: e.name))


def iter_files(folder: Path, suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """Regular files directly in `folder` (no litter), optionally filtered by lower-cased suffix."""
    wanted = None if suffixes is None else {s.lower() for s in suffixes}
    if isinstance(folder, RemotePath):
        files = (e.path for e in _remote_entries(folder) if e.is_file())
        yield from (path for path in files if wanted is None or path.suffix.lower() in wanted)  # type: ignore[misc]
        return
    for entry in iter_entries(folder):
        if entry.is_file() and (wanted is None or Path(entry.name).suffix.lower() in wanted):
            yield Path(entry.path)


def iter_dirs(folder: Path) -> Iterator[Path]:
    if isinstance(folder, RemotePath):
        yield from (e.path for e in _remote_entries(folder) if e.is_dir())
        return
    for entry in iter_entries(folder):
        if entry.is_dir():
            yield Path(entry.path)


def _remote_entries(folder: RemotePath) -> list:
    return [e for e in folder.entries() if not is_junk(e.name)]


def file_names(folder: str | os.PathLike) -> list[str]:
    """`os.listdir(folder)`: every entry name, litter included, unsorted; one listing for a remote folder."""
    if isinstance(folder, RemotePath) or is_url(folder):
        return [e.name for e in local_path(folder).entries()]  # type: ignore[union-attr]
    return os.listdir(folder)


def find_root(data_dir: str | os.PathLike, markers: Iterable[str], max_depth: int = 3) -> Path | None:
    """The folder at or below `data_dir` (breadth-first, litter skipped) that contains one of the `markers`.

    Users point at the folder they unpacked, which may hold the corpus one or two levels down (`RAF-DB/basic/...`).
    A marker is a relative path that may use glob wildcards.
    """
    markers = list(markers)
    level = [local_path(data_dir)]
    for _ in range(max_depth + 1):
        for folder in level:
            if any(_matches(folder, marker) for marker in markers):
                return folder
        level = [d for folder in level for d in iter_dirs(folder)]
    return None


def _matches(folder: Path, marker: str) -> bool:
    if any(ch in marker for ch in "*?["):
        return next(iter(folder.glob(marker)), None) is not None
    return (folder / marker).exists()


def find_child(folder: Path, *names: str) -> Path | None:
    """The child of `folder` whose name matches one of `names` case-insensitively (copies differ in case)."""
    wanted = {n.lower() for n in names}
    if isinstance(folder, RemotePath):
        return next((e.path for e in _remote_entries(folder) if e.name.lower() in wanted), None)  # type: ignore[return-value]
    for entry in iter_entries(folder):
        if entry.name.lower() in wanted:
            return Path(entry.path)
    return None


_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def text_encoding(path: str | os.PathLike) -> str:
    """The encoding of a label file: from its BOM, or UTF-16/32 without one when its NUL bytes show it, else UTF-8.

    Windows tools save text as UTF-16 ("Unicode"); read as UTF-8, every line of such a file is garbled, so a whole
    corpus would be skipped line by line. Label files are ASCII at heart, which makes the NUL pattern decisive.
    """
    with open_binary(path) as f:
        head = f.read(4096)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" not in head:
        return "utf-8-sig"
    head = head[: len(head) // 4 * 4]
    columns = [head[k::4].count(0) / max(1, len(head) // 4) for k in range(4)]  # share of NULs at offset k mod 4
    if min(columns[1:]) > 0.5 and columns[0] < 0.5:
        return "utf-32-le"
    if min(columns[:3]) > 0.5 and columns[3] < 0.5:
        return "utf-32-be"
    odd, even = (columns[1] + columns[3]) / 2, (columns[0] + columns[2]) / 2
    if odd > 0.5 and even < 0.5:
        return "utf-16-le"
    if even > 0.5 and odd < 0.5:
        return "utf-16-be"
    return "utf-8-sig"


def open_text(path: str | os.PathLike) -> IO[str]:
    """A label file opened for reading in its own encoding (`text_encoding`), CRLF read as LF."""
    if isinstance(path, RemotePath) or is_url(path):
        return io.TextIOWrapper(open_binary(path), encoding=text_encoding(path), errors="replace")
    return open(path, encoding=text_encoding(path), errors="replace")


def open_binary(path: str | os.PathLike) -> IO[bytes]:
    """`open(path, "rb")`, buffered through fsspec for a remote file (paths travel as strings, URLs for those)."""
    if isinstance(path, RemotePath) or is_url(path):
        return local_path(path).open("rb")  # type: ignore[union-attr]
    return open(path, "rb")


def read_lines(path: Path) -> list[str]:
    """Stripped, non-empty lines in the file's own encoding; tolerant of a BOM and CRLF line ends."""
    with open_text(path) as f:
        return [line.strip() for line in f if line.strip()]


def image_payload(path: Path) -> dict[str, Any]:
    """The file's bytes for an `Image()` feature, without decoding or re-encoding the pixels.

    No `path` is stored: `datasets` drops the bytes of an image whose path resolves to a file from the current
    directory, so a corpus-relative path would silently empty rows when a user runs from inside the corpus (the
    row's `sample_id` names the file instead). A corrupt or truncated file raises `UnreadableImage` naming it.
    """
    data = path.read_bytes()
    check_image_bytes(data, path)
    return {"bytes": data, "path": None}


_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"


def check_image_bytes(data: bytes, path: Path | str) -> None:
    """Refuse a file that is not a complete image, or one too large to decode, without decoding well-formed JPEG and
    PNG files.

    A JPEG must start with SOI and end with EOI, a PNG must end with its IEND chunk: that catches truncated
    downloads at the cost of a few byte comparisons; their size is read from the header. Anything else (other
    formats, trailing padding) is decided by a full decode.
    """
    if data.startswith(_JPEG_START) and data.rstrip(b"\x00\r\n ")[-2:] == _JPEG_END:
        return _check_size(_jpeg_size(data), path)
    if data.startswith(_PNG_START) and b"IEND" in data[-12:]:
        return _check_size(_png_size(data), path)
    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            _check_size(im.size, path)
            im.load()
            width, height = im.size
    except UnreadableImage:
        raise
    except PIL.Image.DecompressionBombError as e:
        raise OversizedImage(f"oversized image {path}: {e}") from e
    except Exception as e:  # PIL raises many kinds for a bad file
        raise UnreadableImage(f"unreadable image {path}: {e}") from e
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"unreadable image {path}: empty size {width}x{height}")


def _check_size(size: tuple[int, int] | None, path: Path | str) -> None:
    limit = PIL.Image.MAX_IMAGE_PIXELS
    if size is not None and limit is not None and size[0] * size[1] > limit:
        raise OversizedImage(
            f"oversized image {path}: {size[0]}x{size[1]} is over PIL.Image.MAX_IMAGE_PIXELS ({limit} pixels)"
        )


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the IHDR chunk, which the PNG specification puts first."""
    if data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (not DHT, JPG, DAC)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame segment; None if the segments do not lead to one."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_FRAMES:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            return int.from_bytes(data[position + 7 : position + 9], "big"), height
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def encode_image(image: PIL.Image.Image, quality: int = 95) -> dict[str, Any]:
    """Pixels we produced ourselves (a crop, a video frame) -> JPEG bytes for an `Image()` feature (no path, as in
    `image_payload`)."""
    buffer = io.BytesIO()
    (image if image.mode in ("RGB", "L") else image.convert("RGB")).save(buffer, format="JPEG", quality=quality)
    return {"bytes": buffer.getvalue(), "path": None}


def stat_fingerprint(root: Path, paths: Iterable[str]) -> str:
    """A cheap key of the raw files: size and mtime of the label files and folders a builder reads.

    A folder's mtime changes when entries are added, removed or renamed in it, so the cache is invalidated
    without statting every image of a 100k-image corpus on each call. A remote corpus is keyed from object
    listings (`remote_files.remote_fingerprint`).
    """
    if isinstance(root, RemotePath):
        return remote_fingerprint(root, paths)
    h = hashlib.sha256(str(root.resolve()).encode())
    for rel in sorted(paths):
        for path in sorted(root.glob(rel)) if any(c in rel for c in "*?[") else [root / rel]:
            try:
                st = path.stat()
            except FileNotFoundError:
                h.update(f"{rel}:absent".encode())
                continue
            h.update(f"{path.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
