"""BP4D-Spontaneous: per-sequence AU occurrence CSVs, optional intensity CSVs, and one image per frame.

Format (docs/corpora.md §5): `AUCoding/AU_OCC/F001_T1.csv` with the header `0,1,...,99`, column 0 the absolute frame
number in the task video and column k AU k (0 absent, 1 present, 9 unknown; never-coded AUs are 9 throughout);
intensity `AU_INT/AU06/F001_T1_AU06.csv` (or `AU-Intensity-Codes3.0/AU06/...`), rows `frame,intensity`, no header,
9 unknown. Images `Sequences(2D+3D)/F001/T1/<frame>.jpg` (or FERA-style `BP4D-training/F001/T1/2440.jpg`), whose
zero padding varies, so they are matched by integer value. Folder names differ between copies, so every file is
located by its name wherever it sits.

`frame` is the absolute frame number of the CSV (the coded segment of F001_T1 starts at 2440), which is also the
sample_id suffix: `bp4d/F001/T1/2440`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seke_hf.schema import AUS, NOT_ANNOTATED, au_name, empty_row

from .corpus_builder import CorpusBuilder, Skips
from .folds import BP4D_PARTS, FoldConfig, fold_configs, fold_subjects, keep_frame
from .raw_files import iter_dirs, iter_files, local_path, read_lines

logger = logging.getLogger("seke_hf.loading")

DEPENDS_ON = ("seke_hf.loading_scripts.folds",)
"""Modules whose code changes what this builder yields (read by registration's cache key)."""

UNKNOWN_CODE = 9
"""BP4D's code for an unknown or never-coded AU, in occurrence and intensity files (docs/corpora.md §5.2, §5.3)."""
INTENSITY_AUS = (6, 10, 12, 14, 17)
"""The AUs with intensity codes 0..5 (docs/corpora.md §5.3)."""
MAX_INTENSITY = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

OCCURRENCE_FILE = re.compile(r"^([FM]\d{3})_(T\d+)\.csv$", re.IGNORECASE)
INTENSITY_FILE = re.compile(r"^([FM]\d{3})_(T\d+)_AU(\d+)\.csv$", re.IGNORECASE)
SUBJECT_DIR = re.compile(r"^[FM]\d{3}$", re.IGNORECASE)
TASK_DIR = re.compile(r"^T\d+$", re.IGNORECASE)


@dataclass
class Bp4dConfig(FoldConfig):
    """`images_dir`: the folder holding `F001/T1/*.jpg` (relative to the corpus root or absolute), when a copy has
    several image trees; by default the first one found below the root is used."""

    images_dir: str | None = None


class Bp4d(CorpusBuilder):
    SOURCE = "bp4d"
    BUILDER_CONFIG_CLASS = Bp4dConfig
    BUILDER_CONFIGS = fold_configs(Bp4dConfig, "BP4D")
    DEFAULT_CONFIG_NAME = "all"
    MARKERS = ("[Aa][Uu][Cc]oding", "AU_OCC", "*/[FM][0-9][0-9][0-9]_T[0-9].csv")
    # Label files and image folders (their mtimes), never the images: this is stat-ed on every load.
    FINGERPRINT = (
        "[Aa][Uu][Cc]oding/*", "[Aa][Uu][Cc]oding/*/*", "[Aa][Uu][Cc]oding/*/*/*", "AU-Intensity-Codes*/*/*.csv",
        "*/[FM][0-9][0-9][0-9]/T*", "[FM][0-9][0-9][0-9]/T*",
    )  # fmt: skip
    LAYOUT = """\
  <BP4D>/                                 (data_dir may be this folder or one above it; folder names may differ)
    AUCoding/AU_OCC/F001_T1.csv           header 0,1,...,99; column 0 = frame number; 0/1, 9 = unknown
    AUCoding/AU_INT/AU06/F001_T1_AU06.csv optional intensity, rows "frame,intensity" (or AU-Intensity-Codes3.0/)
    Sequences(2D+3D)/F001/T1/2440.jpg     one image per frame (or BP4D-training/F001/T1/2440.jpg)"""
    DESCRIPTION = "BP4D-Spontaneous: 41 young adults in 8 emotion-eliciting tasks; ~147k frames with AU occurrence."
    HOMEPAGE = "https://www.cs.binghamton.edu/~lijun/Research/3DFE/3DFE_Analysis.html"
    LICENSE = "BP4D-Spontaneous licence agreement (Binghamton University): research only, no redistribution."
    CITATION = """@article{zhang2014bp4d,
  title={BP4D-Spontaneous: a high-resolution spontaneous 3D dynamic facial expression database},
  author={Zhang, Xing and Yin, Lijun and Cohn, Jeffrey F. and Canavan, Shaun and Reale, Michael and Horowitz, Andy
  and Liu, Peng and Girard, Jeffrey M.},
  journal={Image and Vision Computing}, volume={32}, number={10}, pages={692--706}, year={2014}}"""

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        self.config.check()
        occurrence, intensity, image_dirs = scan_tree(root)
        images_root = root
        if self.config.images_dir is not None:
            images_root = root / Path(self.config.images_dir).expanduser()
            if not images_root.is_dir():
                raise self.layout_error(f"images_dir {images_root} is not a folder.")
            image_dirs = scan_tree(images_root)[2]
        if not occurrence:
            raise self.layout_error(f"no AU occurrence file F001_T1.csv found under {root}.")
        if not image_dirs:
            raise self.layout_error(f"no image folder <subject>/<task>/ (e.g. F001/T1/2440.jpg) found under {root}.")
        sequences = {
            key: {
                "subject": key[0],
                "task": key[1],
                "occurrence": str(path),
                "intensity": {au: str(p) for au, p in intensity.get(key, {}).items()},
                "images": str(image_dirs[key]) if key in image_dirs else None,
                "images_root": str(images_root),
            }
            for key, path in occurrence.items()
        }
        splits = fold_subjects(BP4D_PARTS, self.config.fold, {subject for subject, _ in sequences}, "BP4D")
        order = sorted(sequences, key=lambda key: (key[0], int(key[1][1:])))
        return {
            split: {"sequences": [sequences[k] for k in order if k[0] in subjects]}
            for split, subjects in splits.items()
        }

    def label_rows(
        self, root: Path, skips: Skips, sequences: list[dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], str]]:
        for seq in sequences:
            subject, task = seq["subject"], seq["task"]
            intensity = {au: read_intensity(local_path(path)) for au, path in seq["intensity"].items()}
            images = image_files(local_path(seq["images"])) if seq["images"] else {}
            seen: set[int] = set()
            for frame, aus in read_occurrence(local_path(seq["occurrence"]), skips):
                if frame in seen:
                    skips.add("duplicate label row", f"{subject}_{task} frame {frame}")
                    continue
                seen.add(frame)
                if not keep_frame(frame, self.config.frame_stride):
                    continue
                path = images.get(frame)
                if path is None:
                    skips.add("label row without image", f"{subject}/{task}/{frame}")
                    continue
                row = empty_row(f"bp4d/{subject}/{task}/{frame}", self.SOURCE, subject=subject, frame=frame)
                row["aus"].update(aus)
                row["au_intensity"].update({au: values.get(frame, NOT_ANNOTATED) for au, values in intensity.items()})
                yield row, str(path)


def scan_tree(root: Path, max_depth: int = 5) -> tuple[dict, dict, dict]:
    """One walk below `root`: occurrence CSVs, intensity CSVs (by AU name) and image folders, by (subject, task).

    Image folders are not entered, so a 150k-image tree is walked quickly. Of several copies of a file, the first
    in sorted breadth-first order wins."""
    occurrence: dict[tuple[str, str], Path] = {}
    intensity: dict[tuple[str, str], dict[str, Path]] = {}
    image_dirs: dict[tuple[str, str], Path] = {}
    level = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in level:
            for path in iter_files(folder, (".csv",)):
                if match := OCCURRENCE_FILE.match(path.name):
                    occurrence.setdefault((match[1].upper(), match[2].upper()), path)
                elif (match := INTENSITY_FILE.match(path.name)) and (au := au_name(match[3])) in AUS:
                    intensity.setdefault((match[1].upper(), match[2].upper()), {}).setdefault(au, path)
            for sub in iter_dirs(folder):
                if SUBJECT_DIR.match(sub.name):
                    for task in iter_dirs(sub):
                        if TASK_DIR.match(task.name):
                            image_dirs.setdefault((sub.name.upper(), task.name.upper()), task)
                else:
                    next_level.append(sub)
        level = next_level
    return occurrence, intensity, image_dirs


def read_occurrence(path: Path, skips: Skips) -> Iterator[tuple[int, dict[str, int]]]:
    """(frame, AU -> 0/1/-1) per row; 9 and anything but 0/1 is -1, never 0. Columns are mapped by the header
    (`0,1,...,99`: column k is AU k); a file without one is read by position."""
    lines = read_lines(path)
    header = _header(lines[0]) if lines else None
    columns: dict[int, list[tuple[int, str]]] = {}  # row width -> (field index, AU) of the schema's AUs
    for line in skips.label_lines(path, lines[1:] if header else lines):
        fields = [f.strip() for f in line.split(",")]
        if not fields[0].isdigit():
            skips.add("unreadable label row", f"{path.name}: {line[:40]}", path)
            continue
        if len(fields) not in columns:
            columns[len(fields)] = _au_columns(header or [str(k) for k in range(len(fields))], len(fields))
        yield int(fields[0]), {
            au: (int(fields[i]) if fields[i] in ("0", "1") else NOT_ANNOTATED) for i, au in columns[len(fields)]
        }


def _au_columns(names: list[str], width: int) -> list[tuple[int, str]]:
    """(field index, AU name) of the columns, among the first `width`, that hold an AU of the schema."""
    numbered = enumerate(names[1:width], start=1)
    return [(i, au) for i, number in numbered if number.isdigit() and (au := au_name(number)) in AUS]


def _header(first_line: str) -> list[str] | None:
    """AU number per column if the line is a header: BP4D's `0,1,...,99`, or named columns (`frame,AU1,...`)."""
    names = [name.strip().upper().removeprefix("AU") for name in first_line.split(",")]
    if names == [str(k) for k in range(len(names))] or not names[0].isdigit():
        return names
    return None


def read_intensity(path: Path) -> dict[int, int]:
    """Frame -> intensity 0..5, or -1 for 9 (unknown) and anything unreadable."""
    values: dict[int, int] = {}
    for line in read_lines(path):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and fields[0].isdigit():
            value = int(fields[1]) if fields[1].isdigit() else UNKNOWN_CODE
            values[int(fields[0])] = value if value <= MAX_INTENSITY else NOT_ANNOTATED
    return values


def image_files(folder: Path) -> dict[int, Path]:
    """Frame number -> image, by the integer value of the stem (`095.jpg`, `0095.jpg` and `95.jpg` are frame 95)."""
    images: dict[int, Path] = {}
    for path in iter_files(folder, IMAGE_SUFFIXES):
        if path.stem.isdigit():
            images.setdefault(int(path.stem), path)
    return images
