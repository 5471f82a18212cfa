"""What a file really holds, whatever its name or metadata claims: images or other binary data, or only text and
numbers. `push` asks this of every file of a release folder and of every file in a repo's history.

- A Parquet file holds images if its `datasets` metadata declares an image (or any file, or an ArrayND) feature, if
  any column has a binary type or arrays of bytes (lists of 8-bit integers: pixels) anywhere inside it (that is how
  image bytes are stored, with or without metadata), or, read in full, if a string column holds images encoded as
  text (`data:` URIs, base64 of JPEG/PNG/GIF/WebP).
- Any other file holds images if it starts with an image signature or is not text (NUL bytes, invalid UTF-8).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seke_hf.columns import file_columns, holds_feature

IMAGE_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
}
"""Signatures of the common image formats (a BMP, like most binary files, is caught by its NUL bytes)."""
TEXT_SAMPLE = 1 << 16
"""How much of a non-Parquet file is read to tell text from binary data."""
ENCODED_IMAGE = r"^\s*(data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*;base64,|/9j/|iVBORw0KGgo|R0lGOD[lh]|UklGR)"
"""A string that starts like an image encoded as text: a base64 `data:` URI, or base64 of a JPEG/PNG/GIF/RIFF."""
ENCODED_MIN_LENGTH = 64
ARRAY_FEATURES = (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)


def parquet_findings(file: str | os.PathLike | BinaryIO, read_strings: bool = True) -> list[str]:
    """Why the Parquet `file` may hold images or binary data (empty: it holds neither). `read_strings=False` reads
    only the footer (schema and metadata), for remote files."""
    try:
        parquet = pq.ParquetFile(file)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as e:
        return [f"not a readable Parquet file ({e})"]
    findings = [f"column {name!r} is declared as a file or array feature" for name in _declared_columns(schema)]
    findings += [f"column {f.name!r} holds binary data ({f.type})" for f in schema if _has_binary(f.type)]
    if read_strings and not findings:
        text = [f.name for f in schema if _has_string(f.type)]
        encoded: set[str] = set()
        for batch in parquet.iter_batches(columns=text) if text else ():
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                if name not in encoded and any(_encoded_images(array) for array in _string_arrays(column)):
                    encoded.add(name)
            if len(encoded) == len(text):
                break
        findings += [f"column {name!r} holds images encoded as text" for name in encoded]
    return sorted(set(findings))


def head_findings(head: bytes) -> list[str]:
    """Why a non-Parquet file that starts with `head` may hold images or binary data (empty: it reads as text)."""
    for signature, name in IMAGE_SIGNATURES.items():
        if head.startswith(signature):
            return [f"a {name} image"]
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return ["a WebP image"]
    if b"\0" in head:
        return ["binary data"]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut by the end of the sample
            return ["binary data (not UTF-8 text)"]
        text = head[: e.start].decode("utf-8")
    if "data:image/" in text or ";base64," in text:
        return ["an image encoded as text (a base64 data: URI)"]
    return []


def file_findings(path: str | os.PathLike) -> list[str]:
    """Why the local file `path` may hold images or binary data (empty: it holds neither), read from its content."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(TEXT_SAMPLE)
        if head.startswith(b"PAR1"):
            f.seek(0)
            return parquet_findings(f)
    return head_findings(head)


def _declared_columns(schema: pa.Schema) -> list[str]:
    """Columns the `datasets` metadata declares as files (Image, Audio, ...) or N-d arrays (pixels)."""
    metadata = (schema.metadata or {}).get(b"huggingface")
    try:
        features = json.loads(metadata or b"{}").get("info", {}).get("features")
        if not features:
            return []
        features = datasets.Features.from_dict(features)
    except (ValueError, TypeError, KeyError, AttributeError):
        return ["<unreadable datasets metadata>"]
    arrays = [name for name, feature in features.items() if holds_feature(feature, ARRAY_FEATURES)]
    return sorted({*file_columns(features), *arrays})


def _children(type_: pa.DataType) -> Iterator[pa.DataType]:
    if pa.types.is_struct(type_):
        yield from (type_.field(i).type for i in range(type_.num_fields))
    elif pa.types.is_map(type_):
        yield from (type_.key_type, type_.item_type)
    elif pa.types.is_dictionary(type_) or hasattr(type_, "value_type"):  # dictionary, (large, fixed-size) list
        yield type_.value_type


def _has_binary(type_: pa.DataType, in_list: bool = False) -> bool:
    """Binary anywhere inside `type_`, or a list of 8-bit integers (bytes or pixels by another name)."""
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_fixed_size_binary(type_):
        return True
    if pa.types.is_binary_view(type_) or (in_list and pa.types.is_integer(type_) and type_.bit_width == 8):
        return True
    listed = hasattr(type_, "value_type") and not pa.types.is_dictionary(type_)  # the values of a list type
    return any(_has_binary(child, listed) for child in _children(type_))


def _has_string(type_: pa.DataType) -> bool:
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return True
    return any(_has_string(child) for child in _children(type_))


def _string_arrays(array: Any) -> Iterator[pa.Array]:
    """Every string array inside `array` (struct fields, list values, dictionary values), flattened."""
    if isinstance(array, pa.ChunkedArray):
        for chunk in array.chunks:
            yield from _string_arrays(chunk)
        return
    type_ = array.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        yield array
    elif pa.types.is_struct(type_):
        for i in range(type_.num_fields):
            yield from _string_arrays(array.field(i))
    elif pa.types.is_map(type_):
        yield from _string_arrays(array.keys)
        yield from _string_arrays(array.items)
    elif pa.types.is_dictionary(type_):
        yield from _string_arrays(array.dictionary)
    elif hasattr(type_, "value_type"):
        yield from _string_arrays(array.flatten())


def _encoded_images(strings: pa.Array) -> bool:
    long = pc.greater_equal(pc.utf8_length(strings), ENCODED_MIN_LENGTH)
    candidates = pc.filter(strings, pc.fill_null(long, False))
    return len(candidates) > 0 and pc.any(pc.match_substring_regex(candidates, ENCODED_IMAGE)).as_py() is True
