"""CK+ (Extended Cohn-Kanade), Phase 1 distribution: image sequences, emotion labels and FACS codes at the peak.

Format (docs/corpora.md §1, from the CK+ README and ifp-uiuc's preparation script): each sequence runs from neutral to
its peak, the last frame; `Emotion/` holds one `*_emotion.txt` (a single float code 0..7) for 327 of the 593
sequences, `FACS/` one `*_facs.txt` per sequence (`<AU> <intensity>` float pairs), both named after the peak frame.
The peak frame is fully FACS-coded, so at the peak an AU the file does not list is absent (0); other frames are not
coded at all. The FEID/FEAB split of SEKE's release (293 train / 34 test sequences) ships as `ckplus_feid_split.csv`.
Names come from the tree, never from the README's examples (its `S0005_001_00000011_facs.txt` is a typo).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from seke_hf.schema import AUS, empty_row, expression_index, is_known_au

from .corpus_builder import CorpusBuilder, CorpusConfig, Skips
from .raw_files import find_child, iter_dirs, iter_files, local_path, read_lines

logger = logging.getLogger("seke_hf.loading")

# CK+ emotion codes (README) -> canonical expression (docs/corpora.md §1.3: 0→0, 1→1, 2→7, 3→2, 4→3, 5→4, 6→5, 7→6).
CKPLUS_EXPRESSIONS = {
    0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise",
}  # fmt: skip
# Expression folder names of the FEID split list -> canonical expression.
SPLIT_LIST_EXPRESSIONS = {"happy": "happiness"}
SPLIT_LIST = "ckplus_feid_split.csv"
FEID_SPLIT_SIZES = {"train": 293, "test": 34}
"""SEKE's FEID/FEAB CK+ split (docs/paper.md): all 327 emotion-labelled sequences."""

FACS_INTENSITY_UNKNOWN = 0
"""CK+ FACS intensity 0: the AU is present but its intensity was not scored (1..5 stand for A..E)."""
NOT_A_FACS_CODE = frozenset({3})  # FACS has no AU3; numbers run 1..99 with gaps, the 17 of AUS are all valid
IMAGE_FOLDERS = ("cohn-kanade-images", "extended-cohn-kanade-images")
FRAME_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)$")
LABEL_SUFFIXES = {"emotion": "_emotion.txt", "facs": "_facs.txt"}


class LabelFileError(ValueError):
    """A CK+ label file whose content is not in the documented format."""


@dataclass
class CkplusConfig(CorpusConfig):
    peak_only: bool = True


class Ckplus(CorpusBuilder):
    SOURCE = "ckplus"
    BUILDER_CONFIG_CLASS = CkplusConfig
    BUILDER_CONFIGS: ClassVar[list[CkplusConfig]] = [
        CkplusConfig(
            name="peak",
            peak_only=True,
            description="Peak frame of each of the 327 emotion-labelled sequences; FEID train (293) / FEAB test (34).",
        ),
        CkplusConfig(
            name="sequences",
            peak_only=False,
            description="Every frame of every sequence, one train split; labels on the peak frame only.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "peak"
    MARKERS = IMAGE_FOLDERS
    # Label files one by one, and the sequence folders (their mtime changes when a frame is added or removed).
    FINGERPRINT = (
        "Emotion/*/*/*.txt",
        "FACS/*/*/*.txt",
        *(f"{folder}/*/*" for folder in IMAGE_FOLDERS),
    )
    LAYOUT = """\
  <CK+>/                       (data_dir may be this folder or one above it)
    cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png   (peak = last frame)
    Emotion/S005/001/S005_001_00000011_emotion.txt     one float code 0..7, e.g. "3.0000000e+00"
    FACS/S005/001/S005_001_00000011_facs.txt           lines "<AU> <intensity>", e.g. "9.0000000e+00 4.0000000e+00"
    Landmarks/S005/001/S005_001_00000011_landmarks.txt (not read)
  Unzip extended-cohn-kanade-images.zip, Emotion_labels.zip and FACS_labels.zip into the same folder."""
    DESCRIPTION = (
        "CK+: 593 posed sequences of 123 subjects from neutral to peak; FACS-coded peaks, 327 with an emotion label."
    )
    HOMEPAGE = "https://www.jeffcohn.net/Resources/"
    LICENSE = "CK+ agreement: non-commercial research only, no redistribution; consent limits on published images."
    CITATION = """@inproceedings{lucey2010extended,
  title={The Extended Cohn-Kanade Dataset (CK+): A complete dataset for action unit and emotion-specified expression},
  author={Lucey, Patrick and Cohn, Jeffrey F. and Kanade, Takeo and Saragih, Jason and Ambadar, Zara and
    Matthews, Iain},
  booktitle={CVPR Workshops}, year={2010}}"""

    @classmethod
    def raw_fingerprint(cls, data_dir: str | Path) -> str:
        """The raw files' fingerprint plus the shipped split list, so a changed list rebuilds `peak`."""
        digest = hashlib.sha256(super().raw_fingerprint(data_dir).encode())
        digest.update(split_list_path().read_bytes())
        return digest.hexdigest()[:16]

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        image_root = next(p for p in (find_child(root, name) for name in IMAGE_FOLDERS) if p is not None)
        sequences = [f"{s.name}/{q.name}" for s in iter_dirs(image_root) for q in iter_dirs(s)]
        if not sequences:
            raise self.layout_error(f"no image sequences (<subject>/<sequence>/ folders) in {image_root}.")
        emotion_root, facs_root = find_child(root, "Emotion"), find_child(root, "FACS")
        common = {"image_root": str(image_root), "emotion_root": _str(emotion_root), "facs_root": _str(facs_root)}
        if not self.config.peak_only:
            return {"train": {"sequences": sequences, **common}}
        if emotion_root is None:
            raise self.layout_error(f"the emotion labels {root / 'Emotion'} are missing (unzip Emotion_labels.zip).")
        labelled = labelled_sequences(emotion_root)
        if not labelled:
            raise self.layout_error(f"no *_emotion.txt files under {emotion_root}.")
        splits = assign_feid_splits(labelled, set(sequences))
        warn_label_disagreements({s: labelled[s] for members in splits.values() for s in members})
        return {split: {"sequences": members, **common} for split, members in splits.items()}

    def label_rows(
        self, root: Path, skips: Skips, sequences: list[str], image_root: str, emotion_root: str, facs_root: str
    ) -> Iterator[tuple[dict[str, Any], str]]:
        for sequence in sequences:
            emotion_file = label_file(emotion_root, sequence, "emotion")
            facs_file = label_file(facs_root, sequence, "facs")
            yield from self._sequence_rows(root, local_path(image_root) / sequence, emotion_file, facs_file, skips)

    # -- one sequence ------------------------------------------------------------------------------------------

    def _sequence_rows(
        self, root: Path, folder: Path, emotion_file: Path | None, facs_file: Path | None, skips: Skips
    ) -> Iterator[tuple[dict[str, Any], str]]:
        sequence = f"{folder.parent.name}/{folder.name}"
        expression = None
        if emotion_file is not None:
            try:
                expression = read_emotion(emotion_file)
            except LabelFileError as e:
                skips.add("emotion file not one code 0..7", f"{emotion_file} ({e})")
                if self.config.peak_only:
                    return
        elif self.config.peak_only:
            skips.add("emotion file missing", f"Emotion/{sequence}")
            return
        peak = peak_stem(emotion_file or facs_file)
        frames = frame_files(folder)
        if self.config.peak_only:
            frames = [f for f in frames if f.stem == peak]
            if not frames:
                skips.add("peak frame image missing", folder / f"{peak}.png")
                return
        for path in frames:
            row = empty_row(
                f"ckplus/{sequence}/{path.stem}", self.SOURCE, subject=folder.parent.name, frame=frame_index(path)
            )
            if path.stem == peak:
                if expression is not None:
                    row["expression"] = expression_index(expression)
                if facs_file is not None:
                    row["aus"], row["au_intensity"] = peak_aus(facs_file)
            yield row, str(path)


def labelled_sequences(emotion_root: Path) -> dict[str, Path]:
    """`S005/001` -> its emotion file, for every sequence folder of `Emotion/` that holds one."""
    labelled = {}
    for subject in iter_dirs(emotion_root):
        for folder in iter_dirs(subject):
            found = label_file(str(emotion_root), f"{subject.name}/{folder.name}", "emotion")
            if found is not None:  # empty Emotion folders are common (docs/corpora.md §1.6): the sequence is unlabelled
                labelled[f"{subject.name}/{folder.name}"] = found
    return labelled


def warn_label_disagreements(members: dict[str, Path]) -> None:
    """The copy's emotion file is the label; say so when it differs from the expression of the FEID list."""
    listed = read_split_list()
    differing = []
    for sequence, path in sorted(members.items()):
        try:
            expression = read_emotion(path)
        except LabelFileError:
            continue  # skipped and counted when the rows are generated
        if expression != listed[sequence][1]:
            differing.append(f"{sequence} ({expression}, list: {listed[sequence][1]})")
    if differing:
        logger.warning("ckplus/peak: emotion files differ from the FEID split list for %s", ", ".join(differing))


def split_list_path() -> Path:
    return Path(str(resources.files(__package__) / SPLIT_LIST))


def read_split_list() -> dict[str, tuple[str, str]]:
    """`S022/005` -> (split, canonical expression) from the shipped FEID split list."""
    with open(split_list_path(), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    listed = {}
    for row in rows:
        subject, number = row["sequence"].split("_")
        expression = SPLIT_LIST_EXPRESSIONS.get(row["expression"], row["expression"])
        listed[f"{subject}/{number}"] = (row["split"], expression)
    return listed


def assign_feid_splits(labelled: dict[str, Path], with_images: set[str]) -> dict[str, list[str]]:
    """Labelled sequences -> FEID `train` / FEAB `test` members, warning about every gap between list and copy."""
    listed = read_split_list()
    splits: dict[str, list[str]] = {split: [] for split in FEID_SPLIT_SIZES}
    for sequence, (split, _) in sorted(listed.items()):
        if sequence in labelled and sequence in with_images:
            splits[split].append(sequence)
    _warn(
        "emotion-labelled sequence(s) have no image sequence and are left out",
        [s for s in labelled if s not in with_images],
    )
    _warn(
        "sequence(s) of the FEID split list are missing or unlabelled in this copy",
        [s for s in listed if s not in labelled],
    )
    _warn(
        "emotion-labelled sequence(s) are not in the FEID split list and are left out (config 'sequences' has them)",
        [s for s in labelled if s not in listed],
    )
    return {split: members for split, members in splits.items() if members}


def _warn(what: str, sequences: list[str], shown: int = 10) -> None:
    if sequences:
        names = sorted(sequences)
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        logger.warning("ckplus/peak: %d %s: %s%s", len(names), what, ", ".join(names[:shown]), more)


def label_file(label_root: str, sequence: str, kind: str) -> Path | None:
    """The sequence's `*_emotion.txt` / `*_facs.txt` under `label_root`, or None (no root, no folder, empty folder)."""
    folder = local_path(label_root) / sequence
    if not label_root or not folder.is_dir():
        return None
    return next((f for f in iter_files(folder) if f.name.endswith(LABEL_SUFFIXES[kind])), None)


def peak_stem(label: Path | None) -> str | None:
    """`S005_001_00000011_emotion.txt` -> `S005_001_00000011` (label files are named after the peak frame)."""
    if label is None:
        return None
    for suffix in LABEL_SUFFIXES.values():
        if label.name.endswith(suffix):
            return label.name.removesuffix(suffix)
    return None


def frame_files(folder: Path) -> list[Path]:
    """The sequence's frames `S005_001_00000001.png ...` in order; other files are not frames."""
    if not folder.is_dir():
        return []
    return [f for f in iter_files(folder, {".png"}) if FRAME_NAME.match(f.stem)]


def frame_index(path: Path) -> int:
    """0-based frame index from the 1-based number in the file name."""
    return int(FRAME_NAME.match(path.stem).group(3)) - 1


def read_emotion(path: Path) -> str:
    """The canonical expression of an emotion file (one float such as `   3.0000000e+00`)."""
    lines = read_lines(path)
    if len(lines) != 1:
        raise LabelFileError(f"expected one value, found {len(lines)} lines")
    code = _integer(lines[0])
    if code is None or code not in CKPLUS_EXPRESSIONS:
        raise LabelFileError(f"code {lines[0]!r} is not one of 0..7")
    return CKPLUS_EXPRESSIONS[code]


def read_facs(path: Path) -> tuple[dict[int, int], list[str]]:
    """AU number -> intensity (0 = present, intensity unknown; 1..5 = A..E), and the lines that are not valid."""
    codes: dict[int, int] = {}
    invalid = []
    for line in read_lines(path):
        fields = line.split()
        number = _integer(fields[0]) if len(fields) == 2 else None
        intensity = _integer(fields[1]) if len(fields) == 2 else None
        valid_number = number is not None and 1 <= number <= 99 and number not in NOT_A_FACS_CODE
        if not valid_number or intensity is None or not 0 <= intensity <= 5:
            invalid.append(line)
        else:
            codes[number] = max(codes.get(number, intensity), intensity)
    return codes, invalid


def peak_aus(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The `aus` and `au_intensity` structs of a peak frame from its FACS file.

    Full FACS coding: an AU of AUS that is not listed is absent (0, intensity 0). If a line is not valid, the AU it
    meant is unknown, so unlisted AUs stay not coded (-1) rather than risk calling a present AU absent.
    """
    codes, invalid = read_facs(path)
    if invalid:
        logger.warning("ckplus: %s has invalid line(s) %s; only its valid AUs are used", path, invalid)
    unlisted = -1 if invalid else 0
    aus = dict.fromkeys(AUS, unlisted)
    intensity = dict.fromkeys(AUS, unlisted)
    for number, value in codes.items():
        name = f"AU{number}"
        if is_known_au(name):  # AUs outside the 17 of the schema are not represented
            aus[name] = 1
            intensity[name] = -1 if value == FACS_INTENSITY_UNKNOWN else value
    return aus, intensity


def _str(path: Path | None) -> str:
    return "" if path is None else str(path)


def _integer(text: str) -> int | None:
    """`"3.0000000e+00"` -> 3; None if not a float or not a whole number (e.g. the README's `1.2e+00`)."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or abs(value - round(value)) > 1e-6:
        return None
    return round(value)
