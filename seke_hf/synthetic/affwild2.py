"""Aff-Wild2 in the layout of one ABAW edition (docs/corpora.md §6), with every marker and pitfall the spec lists.

Header lines (one with a trailing comma and space), -5 / -1 sentinels, frames unlabelled in every task, labelled
frames without a crop, a crop beyond the last annotation line and an annotation file one line shorter than another
(off-by-one), `_left`/`_right` videos, a video in one task's validation set and the others' training sets, 7- vs
8-class EXPR headers, ABAW3's `MTL_Challenge` beside the task folders, ABAW6's `EXPR_Recognition_Challenge` (or the
`EXPR_Classification_Challenge` some copies keep) and its second crop folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seke_hf.synthetic.faces import face_bytes, seed_of

ABAW_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
"""The 12 AUs of ABAW2 onward, in file order (docs/corpora.md §6.1)."""
EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
_CHALLENGES = {"VA": "VA_Estimation_Challenge", "EXPR": "EXPR_Classification_Challenge", "AU": "AU_Detection_Challenge"}
EDITIONS: dict[str, tuple[str, dict[str, str], int]] = {
    "abaw2": ("annotations", {"VA": "VA_Set", "EXPR": "EXPR_Set", "AU": "AU_Set"}, 7),
    "abaw3": ("3rd ABAW Annotations/Third ABAW Annotations", _CHALLENGES, 8),
    "abaw5": ("5th_ABAW_Annotations", _CHALLENGES, 8),
    "abaw6": ("6th ABAW Annotations", {**_CHALLENGES, "EXPR": "EXPR_Recognition_Challenge"}, 8),
}
"""Edition -> (annotation folder, task folders, EXPR classes) (docs/corpora.md §6.2)."""
SECOND_CROPS = "cropped_aligned_new_50_vids"

# (video, {task: split}, frames): a video with a different split per task, left/right people, partial task sets.
VIDEOS: tuple[tuple[str, dict[str, str], int], ...] = (
    ("2-30-640x360", {"VA": "Train_Set", "EXPR": "Train_Set", "AU": "Train_Set"}, 12),
    ("video73_left", {"VA": "Train_Set", "EXPR": "Train_Set"}, 6),
    ("video73_right", {"VA": "Train_Set", "EXPR": "Train_Set"}, 6),
    ("118-30-640x480", {"VA": "Train_Set", "EXPR": "Validation_Set", "AU": "Train_Set"}, 8),
    ("3-25-1920x1080", {"VA": "Validation_Set", "AU": "Validation_Set"}, 6),
    ("video5", {"EXPR": "Train_Set"}, 8),
)
MISSING_CROPS = {"2-30-640x360": (4, 9), "video73_right": (2,)}
"""1-based frames whose crop is absent (no face detected)."""
UNLABELLED = {"2-30-640x360": {"VA": (2, 6), "EXPR": (3, 6), "AU": (5, 6)}, "118-30-640x480": {"EXPR": (1,)}}
"""1-based frames written with the task's invalid marker; frame 6 of the first video is unlabelled in every task."""
TRAILING_SPACE_HEADER = ("video5", "EXPR")
SHORT_FILE = ("2-30-640x360", "AU")
"""This file has one line fewer than the video's other files (off-by-one between tasks)."""


def write_affwild2(
    root: Path,
    edition: str = "abaw5",
    seed: int = 0,
    size: tuple[int, int] = (112, 112),
    expr_folder: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Write `cropped_aligned/` and the annotations of `edition` ("abaw2", "abaw3", "abaw5" or "abaw6") under `root`.

    `expr_folder` renames the EXPR task folder (e.g. ABAW6 copies that keep "EXPR_Classification_Challenge").
    Returns sample_id -> what was written, for every frame with a valid label in some task: `video`, `frame`
    (0-based), `split` under the default "any_validation" rule, `task_splits` ({task: split} of its valid labels),
    `valence`, `arousal`, `expression` (canonical name) and `aus` ({AU: 0/1}), None where not labelled, and `skip`:
    None, or the reason a loader must skip the frame.
    """
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {sorted(EDITIONS)}, not {edition!r}")
    root = Path(root)
    folder, task_folders, n_classes = EDITIONS[edition]
    task_folders = {**task_folders, **({"EXPR": expr_folder} if expr_folder else {})}
    annotations = root / folder
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, Any]] = {}
    for video, splits, frames in VIDEOS:
        unlabelled = UNLABELLED.get(video, {})
        labels = {task: _labels(rng, task, frames, n_classes, unlabelled.get(task, ())) for task in splits}
        headers = {"VA": "valence,arousal", "EXPR": ",".join(EXPR_CLASSES[:n_classes]), "AU": ",".join(ABAW_AUS)}
        for task, split in splits.items():
            header = headers[task]
            if (video, task) == TRAILING_SPACE_HEADER:
                header += ", "
            lines = [_line(task, value) for value in labels[task]]
            if (video, task) == SHORT_FILE:
                lines = lines[:-1]
            path = annotations / task_folders[task] / split / f"{video}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join([header, *lines]) + "\n")
        crops = root / (SECOND_CROPS if edition == "abaw6" and video == "3-25-1920x1080" else "cropped_aligned") / video
        crops.mkdir(parents=True, exist_ok=True)
        for k in range(1, frames + 2):  # one crop more than annotated lines (OpenCV off-by-one)
            valid = {
                task: labels[task][k - 1]
                for task in splits
                if k <= frames and labels[task][k - 1] is not None and not (k == frames and (video, task) == SHORT_FILE)
            }
            expression = EXPR_CLASSES[valid["EXPR"]].lower() if "EXPR" in valid else None
            active = [au for au, on in valid.get("AU", {}).items() if on]
            if k not in MISSING_CROPS.get(video, ()):
                pixels = seed_of("affwild2", seed, video, k)
                (crops / f"{k:05d}.jpg").write_bytes(face_bytes(pixels, expression=expression, aus=active, size=size))
            if valid:
                truth[f"affwild2/{video}/{k:05d}"] = {
                    "video": video, "frame": k - 1,
                    "split": "validation" if "Validation_Set" in splits.values() else "train",
                    "task_splits": {t: "validation" if splits[t] == "Validation_Set" else "train" for t in valid},
                    "valence": valid["VA"][0] if "VA" in valid else None,
                    "arousal": valid["VA"][1] if "VA" in valid else None,
                    "expression": expression, "aus": valid.get("AU"),
                    "skip": "labelled frame without a crop image" if k in MISSING_CROPS.get(video, ()) else None,
                }  # fmt: skip
    if edition == "abaw3":  # the multi-task set repeats frames in another format; loaders must leave it alone
        mtl = annotations / "MTL_Challenge"
        mtl.mkdir(parents=True, exist_ok=True)
        header = "image,valence,arousal,expression," + ",".join(ABAW_AUS)
        (mtl / "train_set.txt").write_text(f"{header}\n2-30-640x360/00001.jpg,0.1,0.2,3,{','.join('0' * 12)}\n")
    return truth


def _labels(rng: np.random.Generator, task: str, frames: int, n_classes: int, unlabelled: tuple[int, ...]) -> list:
    """Per-frame values of one task (None where the file holds the invalid marker)."""
    values: list[Any] = []
    offset = int(rng.integers(0, n_classes))  # consecutive codes: a video of >= 8 frames shows every class
    for k in range(1, frames + 1):
        if k in unlabelled:
            values.append(None)
        elif task == "VA":
            values.append(tuple(round(float(v), 3) for v in rng.uniform(-1, 1, size=2)))
        elif task == "EXPR":
            values.append((k + offset) % n_classes)
        else:
            values.append(dict(zip(ABAW_AUS, map(int, rng.integers(0, 2, size=len(ABAW_AUS))), strict=True)))
    return values


def _line(task: str, value: Any) -> str:
    if task == "VA":
        return "-5,-5" if value is None else f"{value[0]},{value[1]}"
    if task == "EXPR":
        return "-1" if value is None else str(value)
    return ",".join(["-1"] * len(ABAW_AUS)) if value is None else ",".join(str(v) for v in value.values())
