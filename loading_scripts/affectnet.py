"""AffectNet (manually annotated part), in either release as found in the wild (docs/corpora.md §3).

- classic (2017): `Manually_Annotated_file_lists/{training,validation}.csv` with a face box and 68 landmarks per row,
  images `Manually_Annotated_Images/<subDirectory>/<hash>.jpg` (whole web images: config `cropped` cuts the box out);
- npy (later, "small 4GB"): `{train_set,val_set}/images/N.jpg` with `annotations/N_{exp,val,aro,lnd}.npy`,
  faces already cropped (both configs pass them through).

The CSV is read in byte ranges, so memory stays flat over its 415k rows and `num_proc` can split it.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import PIL.Image

from seke_hf.schema import empty_row, expression_index

from .corpus_builder import CorpusBuilder, CorpusConfig, Skips
from .raw_files import (
    UnreadableImage,
    encode_image,
    find_child,
    iter_files,
    local_path,
    open_binary,
    open_text,
    text_encoding,
)

# AffectNet codes -> canonical expression (docs/corpora.md §3.1); 8 None, 9 Uncertain, 10 No-Face are not expressions.
AFFECTNET_EXPRESSIONS = {
    0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger", 7: "contempt",
}  # fmt: skip
NON_EXPRESSION_CODES = {8: "None", 9: "Uncertain", 10: "No-Face"}
NO_FACE = 10
VA_MISSING = -2.0
"""Valence/arousal of Uncertain and No-Face rows (docs/corpora.md §3.1, §7.3)."""
CLASSIC_COLUMNS = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks", "expression",
    "valence", "arousal",
)  # fmt: skip
"""Column order of the classic CSVs, used when a copy of the file has no header line (docs/corpora.md §3.1 [R])."""
RELEASE_MARKERS = {"classic": "Manually_Annotated_file_lists", "npy": "*_set/annotations"}
CLASSIC_SPLITS = {"train": "training.csv", "validation": "validation.csv"}
NPY_SPLITS = {"train": "train_set", "validation": "val_set"}
LANDMARK_SLACK = 0.1
"""A landmark counts as inside the face box if within this fraction of the box size from it."""
LANDMARK_AGREEMENT = 0.9
"""Fraction of the 68 landmarks that must fall inside a face box for the box to be trusted."""
SHARD_BYTES = 4 << 20
"""CSV byte range per shard: ~6k rows, small enough to spread over `num_proc` workers."""
NPY_SHARD_SIZE = 2000
NPY_KINDS = ("exp", "val", "aro")
"""The per-image files read (`_lnd` holds landmarks, which the unified schema does not carry)."""


@dataclass
class AffectnetConfig(CorpusConfig):
    crop: bool = True
    """Classic release: cut the face box out of the web image (decoded and re-encoded as JPEG)."""
    drop_codes: Sequence[int] = (NO_FACE,)
    """Rows with these codes are left out; other codes 8..10 are kept with expression -1."""
    release: str | None = None
    """"classic" or "npy"; None detects it (and refuses a folder holding both)."""


class Affectnet(CorpusBuilder):
    SOURCE = "affectnet"
    BUILDER_CONFIG_CLASS = AffectnetConfig
    BUILDER_CONFIGS: ClassVar[list[AffectnetConfig]] = [
        AffectnetConfig(name="cropped", crop=True, description="The annotated face, cut out with its box."),
        AffectnetConfig(name="full", crop=False, description="The whole web image, bytes as distributed."),
    ]
    DEFAULT_CONFIG_NAME = "cropped"
    MARKERS = ("Manually_Annotated_file_lists", "train_set/annotations", "val_set/annotations")
    FINGERPRINT = (
        "Manually_Annotated_file_lists/*.csv", "Manually_Annotated_Images",
        "Manually_Annotated/Manually_Annotated_Images",
        "train_set/annotations", "train_set/images", "val_set/annotations", "val_set/images",
    )  # fmt: skip
    LAYOUT = """\
  classic release (data_dir may be this folder or one above it):
    Manually_Annotated_file_lists/training.csv, validation.csv
        subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
    Manually_Annotated_Images/103/29a31ebf...a0a.jpg     (extract Manually_Annotated.part01.rar ...)
  or the later release:
    train_set/images/0.jpg   train_set/annotations/0_exp.npy, 0_val.npy, 0_aro.npy, 0_lnd.npy
    val_set/images/...       val_set/annotations/..."""
    DESCRIPTION = "AffectNet: in-the-wild faces with an expression (0..7 of 11 codes) and valence/arousal."
    HOMEPAGE = "http://mohammadmahoor.com/affectnet/"
    LICENSE = "AffectNet academic licence: non-commercial research only, no redistribution."
    CITATION = """@article{mollahosseini2017affectnet,
  title={AffectNet: A Database for Facial Expression, Valence, and Arousal Computing in the Wild},
  author={Mollahosseini, Ali and Hasani, Behzad and Mahoor, Mohammad H.},
  journal={IEEE Transactions on Affective Computing}, year={2017}}"""

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        found = [release for release, marker in RELEASE_MARKERS.items() if next(root.glob(marker), None) is not None]
        release = self.config.release
        if release is None:
            if len(found) > 1:
                raise self.layout_error(f"{root} holds both releases; pick one with release='classic' or 'npy'.")
            release = found[0] if found else "classic"
        if release not in ("classic", "npy"):
            raise ValueError(f"affectnet: release must be 'classic', 'npy' or None, not {release!r}")
        return self._classic_splits(root) if release == "classic" else self._npy_splits(root)

    def label_rows(self, root: Path, skips: Skips, release: str, shards: list, **kwargs: Any) -> Iterator[tuple]:
        read_shard = self._classic_rows if release == "classic" else self._npy_rows
        listing = FolderListing()
        for shard in shards:
            yield from read_shard(root, skips, listing, shard, **kwargs)

    def read_images(self, locators: Sequence[Any], skips: Skips) -> Iterator[dict[str, Any] | None]:
        """Files as shipped, or (config `cropped`, classic release) the checked face box cut out and re-encoded."""
        for locator in locators:
            if isinstance(locator, str):
                yield skips.image(local_path(locator))
                continue
            path, box = local_path(locator["path"]), tuple(locator["box"])
            try:
                yield crop_face(path, box, locator["readings"])
            except FileNotFoundError:
                skips.add("missing image", path)
                yield None
            except UnreadableImage:
                skips.add("unreadable image", path)
                yield None
            except FaceBoxMismatch:
                skips.add("face box disagrees with the landmarks", locator["rel"])
                yield None

    # -- classic release ---------------------------------------------------------------------------------------

    def _classic_splits(self, root: Path) -> dict[str, dict[str, Any]]:
        lists = find_child(root, "Manually_Annotated_file_lists")
        images = find_child(root, "Manually_Annotated_Images")
        if images is None and (packed := find_child(root, "Manually_Annotated")) is not None:
            images = find_child(packed, "Manually_Annotated_Images")
        if lists is None:
            raise self.layout_error(f"Manually_Annotated_file_lists/ is missing under {root}.")
        if images is None:
            rar = " (extract Manually_Annotated.part01.rar first)" if next(root.glob("*.rar"), None) else ""
            raise self.layout_error(f"Manually_Annotated_Images/ is missing under {root}{rar}.")
        splits = {}
        for split, name in CLASSIC_SPLITS.items():
            label_file = find_child(lists, name)
            if label_file is None:
                continue
            if (encoding := text_encoding(label_file)) != "utf-8-sig":  # it is read in byte ranges, as UTF-8
                raise self.layout_error(
                    f"{label_file} is encoded as {encoding}; save it as UTF-8 "
                    f"(e.g. iconv -f {encoding} -t utf-8 {name} > {name}.utf8 && mv {name}.utf8 {name})."
                )
            columns, has_header = csv_columns(label_file)
            splits[split] = {
                "release": "classic",
                "shards": line_shards(label_file, skip_first=has_header),
                "image_dir": str(images),
                "columns": columns,
            }
        if not splits:
            raise self.layout_error(f"neither {' nor '.join(CLASSIC_SPLITS.values())} is in {lists}.")
        return splits

    def _classic_rows(
        self,
        root: Path,
        skips: Skips,
        listing: FolderListing,
        shard: tuple[str, int, int],
        image_dir: str,
        columns: dict[str, int],
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        col = [columns[name] for name in CLASSIC_COLUMNS]
        for fields in csv.reader(skips.label_lines(shard[0], read_line_range(*shard))):
            if len(fields) < len(CLASSIC_COLUMNS):
                if fields:
                    skips.add("malformed CSV row", ",".join(fields)[:80], shard[0])
                continue
            rel, x, y, w, h, landmarks, code, valence, arousal = (fields[i].strip() for i in col)
            row = self._labelled_row(skips, _without_suffix(rel), code, valence, arousal)
            if row is None:
                continue
            box = _numbers((x, y, w, h))
            if box is None or box[2] <= 0 or box[3] <= 0:
                skips.add("degenerate face box", rel)
                continue
            path = local_path(image_dir, rel)
            if not listing.holds(path):
                skips.add("missing image", path)
                continue
            if not self.config.crop:
                yield row, str(path)
            else:
                readings = [list(r) for r in box_readings(box, parse_landmarks(landmarks))]  # type: ignore[arg-type]
                if not readings:  # decided without the image: neither reading holds the landmarks
                    skips.add("face box disagrees with the landmarks", rel)
                    continue
                yield row, {"path": str(path), "rel": rel, "box": list(box), "readings": readings}

    # -- npy release -------------------------------------------------------------------------------------------

    def _npy_splits(self, root: Path) -> dict[str, dict[str, Any]]:
        splits = {}
        for split, name in NPY_SPLITS.items():
            folder = find_child(root, name)
            annotations = folder and find_child(folder, "annotations")
            if annotations is None:
                continue
            names = (p.name for p in iter_files(annotations, [".npy"]))
            ids = sorted((n.removesuffix("_exp.npy") for n in names if n.endswith("_exp.npy")), key=_numeric_order)
            shards = [ids[i : i + NPY_SHARD_SIZE] for i in range(0, len(ids), NPY_SHARD_SIZE)]
            splits[split] = {"release": "npy", "shards": shards, "set_dir": str(folder)}
        if not splits:
            raise self.layout_error(f"no train_set/annotations or val_set/annotations with *_exp.npy in {root}.")
        return splits

    def _npy_rows(
        self, root: Path, skips: Skips, listing: FolderListing, ids: list[str], set_dir: str
    ) -> Iterator[tuple[dict[str, Any], str]]:
        folder = Path(set_dir)
        for stem in ids:
            annotation = f"{set_dir}/annotations/{stem}"
            try:
                code, valence, arousal = (_npy_scalar(local_path(f"{annotation}_{kind}.npy")) for kind in NPY_KINDS)
            except (OSError, ValueError) as e:
                skips.add("unreadable annotation", f"{annotation}: {e}")
                continue
            row = self._labelled_row(skips, f"{folder.name}/{stem}", code, valence, arousal)
            if row is None:
                continue
            path = local_path(set_dir, "images", f"{stem}.jpg")
            if not listing.holds(path):
                skips.add("missing image", path)
                continue
            yield row, str(path)

    # -- labels, shared by both releases -----------------------------------------------------------------------

    def _labelled_row(self, skips: Skips, stem: str, code: Any, valence: Any, arousal: Any) -> dict[str, Any] | None:
        """The row's labels; None (counted) if its code is invalid or dropped by `drop_codes`."""
        number = _integer(code)
        if number is None or not (number in AFFECTNET_EXPRESSIONS or number in NON_EXPRESSION_CODES):
            skips.add("expression code not in 0..10", f"{stem}: {code!r}")
            return None
        if number in self.config.drop_codes:
            skips.add(f"code {number} dropped (drop_codes)", stem)
            return None
        row = empty_row(f"affectnet/{stem}", self.SOURCE)
        if number in AFFECTNET_EXPRESSIONS:
            row["expression"] = expression_index(AFFECTNET_EXPRESSIONS[number])
        va = _numbers((valence, arousal))
        if va is not None and all(-1.0 <= v <= 1.0 for v in va):  # -2 (and anything else outside) is missing
            row["valence"], row["arousal"] = va
        return row


class FolderListing:
    """Whether a file exists, from one cached listing per folder (a stat per image would cost more than the labels)."""

    def __init__(self) -> None:
        self.names: dict[Path, frozenset[str]] = {}

    def holds(self, path: Path) -> bool:
        folder = path.parent
        if folder not in self.names:
            self.names[folder] = frozenset(p.name for p in iter_files(folder)) if folder.is_dir() else frozenset()
        return path.name in self.names[folder]


# -- the classic CSVs ------------------------------------------------------------------------------------------


def csv_columns(path: Path) -> tuple[dict[str, int], bool]:
    """Column positions and whether the file starts with a header: copies differ (docs/corpora.md §3.1 [R])."""
    with open_text(path) as f:
        first = next(csv.reader(f), [])
    names = [name.strip() for name in first]
    if names and names[0].lower() == CLASSIC_COLUMNS[0].lower():
        lowered = {name.lower(): i for i, name in enumerate(names)}
        missing = [c for c in CLASSIC_COLUMNS if c.lower() not in lowered]
        if missing:
            raise FileNotFoundError(f"affectnet: {path} has no column(s) {', '.join(missing)}; header is {names}")
        return {c: lowered[c.lower()] for c in CLASSIC_COLUMNS}, True
    return {c: i for i, c in enumerate(CLASSIC_COLUMNS)}, False


def line_shards(path: Path, skip_first: bool = False, shard_bytes: int = SHARD_BYTES) -> list[tuple[str, int, int]]:
    """(path, start, end) byte ranges that each begin on a line start and together cover the file once."""
    size = path.stat().st_size
    with open_binary(path) as f:
        bounds = [len(f.readline()) if skip_first else 0]
        while bounds[-1] + shard_bytes < size:
            f.seek(bounds[-1] + shard_bytes)
            f.readline()
            if f.tell() >= size:
                break
            bounds.append(f.tell())
    bounds.append(size)
    return [(str(path), start, end) for start, end in itertools.pairwise(bounds) if end > start]


def read_line_range(path: str, start: int, end: int) -> Iterator[str]:
    """The lines starting in [start, end), decoded; a BOM or CRLF never reaches the parser."""
    with open_binary(path) as f:
        f.seek(start)
        position = start
        while position < end:
            line = f.readline()
            if not line:
                return
            position += len(line)
            yield line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")


# -- face boxes --------------------------------------------------------------------------------------------------


class FaceBoxMismatch(ValueError):
    """Neither reading of the face box contains the face's landmarks."""


def parse_landmarks(text: str) -> np.ndarray | None:
    """`x1;y1;...;x68;y68` -> (68, 2) array, or None if the field does not hold 136 numbers."""
    try:
        values = [float(v) for v in text.split(";") if v.strip()]
    except ValueError:
        return None
    return np.asarray(values, dtype=np.float64).reshape(68, 2) if len(values) == 136 else None


def face_box(
    box: tuple[float, float, float, float], landmarks: np.ndarray | None, image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The face's (left, top, right, bottom) in the image, checked against its landmarks.

    The columns are named x, y, width, height, but public loaders disagree on their meaning (docs/corpora.md §3.1 [U]):
    one slices `img[x:x+w, y:y+h]`, i.e. reads x as the row. The named reading is tried first, then that one;
    the box whose area holds the landmarks wins. Without landmarks the named reading is trusted.
    """
    return clip_box(box_readings(box, landmarks), box, image_size)


def box_readings(
    box: tuple[float, float, float, float], landmarks: np.ndarray | None
) -> list[tuple[float, float, float, float]]:
    """The readings of the box (left, top, width, height) that hold the landmarks, named reading first: what
    `face_box` decides without the image, so the label pass keeps four numbers per reading, not 136 landmarks."""
    x, y, w, h = box
    readings = [(x, y, w, h), (y, x, h, w)]
    if landmarks is None:
        return readings[:1]
    return [reading for reading in readings if _holds(landmarks, *reading)]


def clip_box(
    readings: Sequence[Sequence[float]], box: tuple[float, ...], image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The first reading that keeps an area inside the image; `FaceBoxMismatch` naming `box` if none does."""
    width, height = image_size
    for left, top, box_w, box_h in readings:
        right, bottom = min(width, round(left + box_w)), min(height, round(top + box_h))
        left, top = max(0, round(left)), max(0, round(top))
        if right > left and bottom > top:
            return left, top, right, bottom
    raise FaceBoxMismatch(f"face box {box} does not hold the landmarks in a {width}x{height} image")


def _holds(landmarks: np.ndarray, left: float, top: float, width: float, height: float) -> bool:
    sx, sy = width * LANDMARK_SLACK, height * LANDMARK_SLACK
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    inside = (xs >= left - sx) & (xs <= left + width + sx) & (ys >= top - sy) & (ys <= top + height + sy)
    return float(inside.mean()) >= LANDMARK_AGREEMENT


def crop_face(path: Path, box: tuple[float, ...], readings: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Decode the web image, cut the checked face box (the first of `box_readings` that fits) out and encode it:
    the one place pixels are re-encoded."""
    data = path.read_bytes()
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
            crop = image.crop(clip_box(readings, box, image.size))  # type: ignore[arg-type]
    except FaceBoxMismatch:
        raise
    except Exception as e:  # PIL raises many kinds for a bad file
        raise UnreadableImage(f"unreadable image {path}: {e}") from e
    return encode_image(crop)


# -- scalar parsing ----------------------------------------------------------------------------------------------


def _npy_scalar(path: Path) -> Any:
    """One value from a per-image `.npy`: 0-d arrays, some strings (docs/corpora.md §3.2 [R]); None: absent."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        array = np.load(file, allow_pickle=False)
    if array.size != 1:
        raise ValueError(f"expected one value, found shape {array.shape}")
    return array.reshape(()).item()


def _numeric_order(stem: str) -> tuple[int, str]:
    return len(stem), stem


def _numbers(values: Sequence[Any]) -> tuple[float, ...] | None:
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


def _without_suffix(rel: str) -> str:
    """`103/29a...a0a.jpg` -> `103/29a...a0a` (not `posixpath.splitext`: `datasets` patches it in this module)."""
    head, slash, name = rel.rpartition("/")
    return head + slash + name.rsplit(".", 1)[0]


def _integer(value: Any) -> int | None:
    number = _numbers((value,))
    return int(number[0]) if number is not None and number[0].is_integer() else None
