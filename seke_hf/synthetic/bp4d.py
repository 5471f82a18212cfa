"""BP4D-Spontaneous in its distribution layouts (docs/corpora.md §5), with its pitfalls, for tests and the demo.

- `layout="original"`: `AUCoding/AU_OCC/F001_T1.csv`, `AUCoding/AU_INT/AU06/F001_T1_AU06.csv`,
  `Sequences(2D+3D)/F001/T1/<frame>.jpg` whose zero padding varies by sequence (`2440.jpg`, `095.jpg`, `0120.jpg`);
- `layout="fera"`: `AUCoding/AUCoding/F001_T1.csv`, `AU-Intensity-Codes3.0/AU06/F001_T1_AU06.csv`,
  `BP4D-training/F001/T1/2440.jpg` (unpadded).

Occurrence files have the header `0,1,...,99` and absolute frame numbers (F001_T1 starts at 2440); AUs 3, 8, 21,
25 and 26 are 9 throughout, as in the real F001_T1, and a few coded cells are 9 (unknown). The image folder holds
frames outside the coded segment too, one labelled frame has no image, the last sequence has no intensity codes,
one CSV has CRLF line ends, and OS litter lies around.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from seke_hf.loading_scripts.bp4d import INTENSITY_AUS, UNKNOWN_CODE
from seke_hf.schema import AUS, NOT_ANNOTATED, au_name
from seke_hf.synthetic.faces import face_bytes, seed_of

DEFAULT_SUBJECTS = ("F001", "F003", "F007")
"""One subject of each fold part (F001: part 1, F003: part 2, F007: part 3)."""
DEFAULT_TASKS = ("T1", "T2")
CODED = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28)
"""Coded columns; all others are 9 throughout, among them 3, 8, 21, 25 and 26 as in the real F001_T1 (§5.2)."""
N_COLUMNS = 100
# (start frame, image name format) of the first sequences; the others start at a random frame, unpadded.
SEQUENCE_STARTS = ((2440, "{}"), (95, "{:03d}"), (120, "{:04d}"))


def write_bp4d(
    root: Path,
    seed: int = 0,
    subjects: Sequence[str] = DEFAULT_SUBJECTS,
    tasks: Sequence[str] = DEFAULT_TASKS,
    n_frames: int = 6,
    layout: Literal["original", "fera"] = "original",
    size: tuple[int, int] = (48, 64),
) -> dict[str, dict[str, dict[str, int]]]:
    """Write `root/BP4D/...`; returns sample_id -> {"aus", "au_intensity"} (all 17 AUs) of every loadable row.

    Those are exactly the rows a correct loader yields for config `all` at frame_stride 1 (a labelled frame whose
    image is missing is not among them).
    """
    base = Path(root) / "BP4D"
    fera = layout == "fera"
    occ_dir = base / "AUCoding" / ("AUCoding" if fera else "AU_OCC")
    int_dir = base / "AU-Intensity-Codes3.0" if fera else base / "AUCoding" / "AU_INT"
    image_root = base / ("BP4D-training" if fera else "Sequences(2D+3D)")
    occ_dir.mkdir(parents=True, exist_ok=True)
    (occ_dir / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    rng = np.random.default_rng(seed)
    keys = [(subject, task) for subject in subjects for task in tasks]
    truth: dict[str, dict[str, dict[str, int]]] = {}
    for index, (subject, task) in enumerate(keys):
        start, name_format = (
            SEQUENCE_STARTS[index] if index < len(SEQUENCE_STARTS) else (int(rng.integers(200, 3000)), "{}")
        )
        name_format = "{}" if fera else name_format
        frames = range(start, start + n_frames)
        occurrence, intensity = _codes(rng, n_frames)
        with_intensity = index < len(keys) - 1
        missing_image = frames[2] if index == 2 else None
        _write_occurrence(occ_dir / f"{subject}_{task}.csv", frames, occurrence, crlf=index == 1)
        if with_intensity:
            for number in INTENSITY_AUS:
                path = int_dir / f"AU{number:02d}" / f"{subject}_{task}_AU{number:02d}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(f"{f},{v}\n" for f, v in zip(frames, intensity[number], strict=True)))
        folder = image_root / subject / task
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Thumbs.db").write_bytes(b"\0")
        for row, frame in enumerate([start - 1, *frames, start + n_frames]):  # frames outside the coded segment too
            if frame == missing_image:
                continue
            coded = 0 < row <= n_frames
            active = [au_name(n) for n in CODED if au_name(n) in AUS and coded and occurrence[n][row - 1] == 1]
            pixels = face_bytes(seed_of("bp4d", seed, subject, task, frame), aus=active, size=size)
            (folder / f"{name_format.format(frame)}.jpg").write_bytes(pixels)
            if coded:
                truth[f"bp4d/{subject}/{task}/{frame}"] = _expected(occurrence, intensity, row - 1, with_intensity)
    return truth


def _codes(rng: np.random.Generator, n_frames: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Column -> occurrence codes 0/1/9, and intensity AU -> codes 0..5/9 (occurrence = intensity >= 1)."""
    occurrence = {k: np.full(n_frames, UNKNOWN_CODE) for k in range(1, N_COLUMNS)}
    for k in CODED:
        occurrence[k] = (rng.random(n_frames) < 0.35).astype(np.int64)
    intensity = {k: rng.integers(0, 6, n_frames) * (rng.random(n_frames) < 0.5) for k in INTENSITY_AUS}
    for k in INTENSITY_AUS:
        occurrence[k] = (intensity[k] >= 1).astype(np.int64)
    unknown = int(rng.integers(0, n_frames))
    occurrence[1][unknown] = UNKNOWN_CODE  # an unknown cell in a coded column
    intensity[12][unknown] = UNKNOWN_CODE
    occurrence[12][unknown] = UNKNOWN_CODE
    return occurrence, intensity


def _write_occurrence(path: Path, frames: range, occurrence: dict[int, np.ndarray], crlf: bool) -> None:
    end = "\r\n" if crlf else "\n"
    lines = [",".join(str(k) for k in range(N_COLUMNS))]
    for row, frame in enumerate(frames):
        lines.append(",".join([str(frame), *(str(int(occurrence[k][row])) for k in range(1, N_COLUMNS))]))
    path.write_bytes((end.join(lines) + end).encode())


def _expected(
    occurrence: dict[int, np.ndarray], intensity: dict[int, np.ndarray], row: int, with_intensity: bool
) -> dict[str, dict[str, int]]:
    def known(value: int, valid: range) -> int:
        return int(value) if int(value) in valid else NOT_ANNOTATED

    aus = {au: NOT_ANNOTATED for au in AUS}
    au_intensity = dict(aus)
    for k in range(1, N_COLUMNS):
        if au_name(k) in AUS:
            aus[au_name(k)] = known(occurrence[k][row], range(2))
    if with_intensity:
        for k in INTENSITY_AUS:
            au_intensity[au_name(k)] = known(intensity[k][row], range(6))
    return {"aus": aus, "au_intensity": au_intensity}
