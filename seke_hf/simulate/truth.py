"""The hidden truth of the simulated vision LLM, and recognising which face a request shows.

A client may resize and re-encode an image before sending it (the annotator does, to save tokens), so byte hashes
cannot identify it. Each face is remembered by a tiny greyscale thumbnail (area-averaged to 16x16, then normalised
for brightness and contrast); a request's image is the nearest remembered thumbnail if it is close enough, and an
unknown face otherwise.

On disk (`seke-hf simulate --truth truth.jsonl`) one JSON object per line::

    {"key": "rafdb/train_00001", "expression": "happiness", "valence": 0.8, "arousal": 0.45,
     "aus": ["AU6", "AU12", "AU25"], "difficulty": 0.12, "thumbnail": "<base64 of 16x16 uint8 grey>"}

`"image": "path/to/face.jpg"` (relative to the file) may replace `"thumbnail"`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from seke_hf.schema import AUS, EXPRESSIONS, NOT_ANNOTATED
from seke_hf.simulate.noise import PROTOTYPE_AUS, VA_ANCHORS, Labels, truth_seed

THUMBNAIL_SIZE = 16
DEFAULT_MATCH_THRESHOLD = 0.3
"""RMS distance between normalised thumbnails under which two images are the same face. Re-encoding at JPEG
quality 30 and resizing to 37x37 stays under 0.21 on synthetic faces; distinct synthetic faces are above 0.43."""


class UnreadableImage(ValueError):
    """The request's image could not be decoded."""


@dataclass(frozen=True)
class TruthEntry:
    key: str
    labels: Labels
    difficulty: float
    thumbnail: np.ndarray
    """16x16 uint8 greyscale, before normalisation."""

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "expression": self.labels.expression,
            "valence": round(self.labels.valence, 4),
            "arousal": round(self.labels.arousal, 4),
            "aus": [au for au in AUS if au in self.labels.aus],
            "difficulty": round(self.difficulty, 4),
            "thumbnail": base64.b64encode(self.thumbnail.tobytes()).decode(),
        }


@dataclass(frozen=True)
class Match:
    """Which face a request's image is: `entry` is None for an unknown face; `image_key` names it either way."""

    entry: TruthEntry | None
    distance: float
    image_key: str


class TruthTable:
    """Image identity -> hidden labels and difficulty, with thumbnail matching. Thread-safe for lookups."""

    def __init__(self, entries: Iterable[TruthEntry] = (), match_threshold: float = DEFAULT_MATCH_THRESHOLD):
        self.match_threshold = match_threshold
        self._entries: dict[str, TruthEntry] = {}
        self._matrix: np.ndarray | None = None
        self._keys: list[str] = []
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, Match] = OrderedDict()
        for entry in entries:
            self._put(entry)

    # ------------------------------------------------------------------ building
    def add(self, key: str, labels: Labels, image: PIL.Image.Image | bytes, difficulty: float) -> TruthEntry:
        if not 0.0 <= difficulty <= 1.0:
            raise ValueError(f"difficulty of {key!r} must be in [0, 1], got {difficulty}")
        entry = TruthEntry(key, labels, float(difficulty), thumbnail(image))
        self._put(entry)
        return entry

    def _put(self, entry: TruthEntry) -> None:
        with self._lock:
            if entry.key in self._entries:
                raise ValueError(f"duplicate key {entry.key!r} in the truth table")
            self._entries[entry.key] = entry
            self._matrix = None
            self._recent.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[TruthEntry]:
        return iter(list(self._entries.values()))

    def __getitem__(self, key: str) -> TruthEntry:
        return self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    # ------------------------------------------------------------------ matching
    def identify(self, image: bytes) -> Match:
        """The truth entry this encoded image shows, or an unknown face (keyed by its content hash)."""
        digest = hashlib.sha1(image).hexdigest()
        with self._lock:
            if digest in self._recent:
                self._recent.move_to_end(digest)
                return self._recent[digest]
            matrix, keys = self._index()
        vector = _normalise(thumbnail(image)).ravel()
        match = Match(None, float("inf"), f"unknown/{digest[:16]}")
        if len(keys):
            distances = np.sqrt(np.mean((matrix - vector) ** 2, axis=1))
            best = int(np.argmin(distances))
            if distances[best] <= self.match_threshold:
                match = Match(self._entries[keys[best]], float(distances[best]), keys[best])
            else:
                match = Match(None, float(distances[best]), match.image_key)
        with self._lock:
            self._recent[digest] = match
            if len(self._recent) > 4096:
                self._recent.popitem(last=False)
        return match

    def _index(self) -> tuple[np.ndarray, list[str]]:
        if self._matrix is None:
            self._keys = list(self._entries)
            rows = [_normalise(self._entries[k].thumbnail).ravel() for k in self._keys]
            self._matrix = np.stack(rows) if rows else np.zeros((0, THUMBNAIL_SIZE**2), np.float32)
        return self._matrix, self._keys

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for entry in self:
                f.write(json.dumps(entry.to_json()) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, match_threshold: float = DEFAULT_MATCH_THRESHOLD) -> TruthTable:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"truth file {path} not found (one JSON object per line: key, labels, thumbnail)")
        table = cls(match_threshold=match_threshold)
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    table._put(_entry_from_json(json.loads(line), path.parent))
                except (ValueError, KeyError, TypeError, OSError) as e:
                    raise ValueError(f"{path}:{number}: bad truth entry: {e}") from e
        return table


def thumbnail(image: PIL.Image.Image | bytes) -> np.ndarray:
    """16x16 uint8 greyscale by area averaging: stable under resizing and JPEG re-encoding."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            image = PIL.Image.open(io.BytesIO(image))
            image.load()
        except Exception as e:
            raise UnreadableImage(f"the image could not be decoded ({type(e).__name__}: {e})") from None
    grey = image.convert("L").resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), PIL.Image.BOX)
    return np.asarray(grey, dtype=np.uint8)


def _normalise(thumb: np.ndarray) -> np.ndarray:
    a = thumb.astype(np.float32)
    a -= a.mean()
    return a / (a.std() + 1e-3)


def _entry_from_json(obj: Mapping[str, Any], base: Path) -> TruthEntry:
    labels = Labels(obj["expression"], float(obj["valence"]), float(obj["arousal"]), frozenset(obj.get("aus", ())))
    if "thumbnail" in obj:
        raw = np.frombuffer(base64.b64decode(obj["thumbnail"]), dtype=np.uint8)
        thumb = raw.reshape(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    elif "image" in obj:
        thumb = thumbnail((base / obj["image"]).read_bytes())
    else:
        raise KeyError("either 'thumbnail' or 'image' is required")
    difficulty = float(obj.get("difficulty", derived_difficulty(obj["key"])))
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    return TruthEntry(str(obj["key"]), labels, difficulty, thumb)


# ---------------------------------------------------------------------- from a Dataset
def derived_difficulty(key: str, seed: int = 0, power: float = 2.0) -> float:
    """A stable difficulty from the key: uniform**power, so most faces are easy and a few are hard (mean 1/3)."""
    return (truth_seed("difficulty", seed, key) / 2**64) ** power


def labels_from_row(row: Mapping[str, Any]) -> Labels:
    """Full labels from a unified-schema row, filling what the corpus did not annotate from what it did.

    A missing expression is the circumplex anchor nearest the valence/arousal, else the prototype closest to the
    coded AUs, else neutral; missing valence/arousal is the expression's anchor; AUs not coded are the expression's
    prototype AUs.
    """
    expression_index = row.get("expression")
    aus_struct = row.get("aus") or {}
    active = {au for au in AUS if aus_struct.get(au) == 1}
    coded = {au for au in AUS if aus_struct.get(au) in (0, 1)}
    valence, arousal = row.get("valence"), row.get("arousal")
    if expression_index not in (None, NOT_ANNOTATED):
        expression = EXPRESSIONS[int(expression_index)]
    elif valence is not None and arousal is not None:
        expression = min(
            (e for e in VA_ANCHORS if e != "other"),
            key=lambda e: (VA_ANCHORS[e][0] - valence) ** 2 + (VA_ANCHORS[e][1] - arousal) ** 2,
        )
    elif active:
        expression = max(
            (e for e in PROTOTYPE_AUS if PROTOTYPE_AUS[e]),
            key=lambda e: len(active & set(PROTOTYPE_AUS[e])) / len(active | set(PROTOTYPE_AUS[e])),
        )
    else:
        expression = "neutral"
    if valence is None or arousal is None:
        valence, arousal = VA_ANCHORS[expression]
    active |= set(PROTOTYPE_AUS[expression]) - coded
    return Labels(expression, float(valence), float(arousal), frozenset(active))


def truth_from_dataset(
    ds: Any,
    *,
    key_column: str = "sample_id",
    image_column: str = "image",
    difficulty: str | Callable[[Mapping[str, Any]], float] | None = None,
    seed: int = 0,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> TruthTable:
    """A truth table from a labelled `Dataset` in the unified schema (`seke_hf.schema.FEATURES`).

    `difficulty` is a column name, a function of the row, or None for `derived_difficulty(key, seed)`.
    """
    table = TruthTable(match_threshold=match_threshold)
    for row in ds:
        key = str(row[key_column])
        if difficulty is None:
            d = derived_difficulty(key, seed)
        elif callable(difficulty):
            d = float(difficulty(row))
        else:
            d = float(row[difficulty])
        image = row[image_column]
        if isinstance(image, Mapping):  # an undecoded Image() cell
            image = image["bytes"] if image.get("bytes") is not None else Path(image["path"]).read_bytes()
        table.add(key, labels_from_row(row), image, d)
    return table
