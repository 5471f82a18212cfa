"""CK+ in its distribution layout (docs/corpora.md §1): PNG sequences, emotion and FACS files at the peak, landmarks.

By default every sequence of SEKE's FEID split list is written with the expression the list gives it, so a test can
reproduce the 293/34 split; a few sequences without an emotion label (one with an empty `Emotion/` folder) are added,
as in the real distribution. Frames are tiny and few, so the full tree takes seconds to write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seke_hf.knowledge import PROTOTYPES
from seke_hf.loading_scripts.ckplus import CKPLUS_EXPRESSIONS, read_split_list
from seke_hf.schema import is_known_au
from seke_hf.synthetic.faces import face_bytes, seed_of

_CODE_OF = {name: code for code, name in CKPLUS_EXPRESSIONS.items()}
EXTRA_AUS = (11, 16, 27, 43)
"""FACS AUs outside the 17 of the schema that CK+ peaks also list (the loader must ignore them)."""
LANDMARKS = 68


@dataclass(frozen=True)
class WrittenSequence:
    """What was written for one sequence: its frames (file stems, peak last) and labels as on disk."""

    subject: str
    sequence: str
    frames: tuple[str, ...]
    expression: str | None
    facs: dict[int, int] = field(default_factory=dict)
    split: str | None = None
    colour: bool = False

    @property
    def peak(self) -> str:
        return self.frames[-1]

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.sequence}"


def write_ckplus(
    root: Path,
    seed: int = 0,
    sequences: Iterable[str] | None = None,
    frames: int = 3,
    size: tuple[int, int] = (64, 49),
    unlabelled: int = 3,
    colour_every: int = 10,
    landmarks: bool = True,
) -> dict[str, WrittenSequence]:
    """Write `root/CK+/{cohn-kanade-images,Emotion,FACS,Landmarks}`; returns `S005/001` -> what was written.

    `sequences` are `S022_005`-style names (default: the whole FEID split list); listed ones get the list's
    expression and split. `unlabelled` extra sequences get FACS codes but no emotion file (the first one an empty
    `Emotion/` folder), as 266 of the real 593 do.
    """
    writer = _SequenceWriter(root / "CK+", np.random.default_rng(seed), seed, frames, size, colour_every, landmarks)
    listed = read_split_list()
    wanted = sorted(listed) if sequences is None else [s.replace("_", "/") for s in sequences]
    written = {}
    for i, key in enumerate(wanted):
        split, expression = listed[key] if key in listed else (None, _pick_expression(writer.rng))
        written[key] = writer.write(key, expression, split, i)
    for n, key in enumerate(_unlabelled_keys(wanted or ["S005/000"], unlabelled)):
        written[key] = writer.write(key, None, None, n)
        if n == 0:
            (writer.base / "Emotion" / key).mkdir(parents=True, exist_ok=True)  # the real tree has empty folders
    return written


def _unlabelled_keys(labelled: list[str], count: int) -> list[str]:
    """One more sequence for each of the first `count` subjects, numbered after their labelled ones."""
    last: dict[str, int] = {}
    for key in labelled:
        subject, number = key.split("/")
        last[subject] = max(last.get(subject, 0), int(number))
    return [f"{subject}/{last[subject] + 1:03d}" for subject in sorted(last)[:count]]


def emotion_text(code: int) -> str:
    """An emotion file as CK+ writes it: one float in scientific notation, leading spaces, newline."""
    return f"   {code:.7e}\n"


def facs_text(codes: dict[int, int]) -> str:
    """A FACS file as CK+ writes it: one `<AU> <intensity>` float pair a line."""
    return "".join(f"   {au:.7e}   {intensity:.7e}\n" for au, intensity in codes.items())


@dataclass
class _SequenceWriter:
    base: Path
    rng: np.random.Generator
    seed: int
    frames: int
    size: tuple[int, int]
    colour_every: int
    landmarks: bool

    def write(self, key: str, expression: str | None, split: str | None, index: int) -> WrittenSequence:
        """Frames (neutral, then the peak showing the FACS-coded AUs), FACS and emotion files at the peak."""
        subject, sequence = key.split("/")
        stems = tuple(f"{subject}_{sequence}_{n:08d}" for n in range(1, self.frames + 1))
        facs = _facs_codes(expression or _pick_expression(self.rng), self.rng)
        colour = self.colour_every > 0 and index % self.colour_every == 0
        active = [f"AU{au}" for au in facs if is_known_au(f"AU{au}")]
        image_dir = self.base / "cohn-kanade-images" / subject / sequence
        image_dir.mkdir(parents=True, exist_ok=True)
        for stem in stems:
            aus = active if stem == stems[-1] else ()
            pixels = face_bytes(seed_of("ckplus", self.seed, stem), fmt="PNG", aus=aus, size=self.size, grey=not colour)
            (image_dir / f"{stem}.png").write_bytes(pixels)
            if self.landmarks:
                landmarks = _landmarks_text(self.rng, self.size)
                _write(self.base / "Landmarks" / subject / sequence / f"{stem}_landmarks.txt", landmarks)
        _write(self.base / "FACS" / subject / sequence / f"{stems[-1]}_facs.txt", facs_text(facs))
        if expression is not None:
            emotion = emotion_text(_CODE_OF[expression])
            _write(self.base / "Emotion" / subject / sequence / f"{stems[-1]}_emotion.txt", emotion)
        return WrittenSequence(subject, sequence, stems, expression, facs, split, colour)


def _pick_expression(rng: np.random.Generator) -> str:
    return str(rng.choice([name for name in CKPLUS_EXPRESSIONS.values() if name != "neutral"]))


def _facs_codes(expression: str, rng: np.random.Generator) -> dict[int, int]:
    """A prototype of the expression with random intensities (0 = present, unknown), sometimes an AU outside AUS."""
    prototypes = PROTOTYPES[expression]
    prototype = prototypes[int(rng.integers(len(prototypes)))]
    numbers = sorted(int(au.removeprefix("AU")) for au in prototype)
    if rng.random() < 0.5:
        numbers.append(int(rng.choice(EXTRA_AUS)))
    return {au: int(rng.integers(0, 6)) for au in numbers}  # 0 = present, intensity not scored


def _landmarks_text(rng: np.random.Generator, size: tuple[int, int]) -> str:
    points = rng.uniform((0, 0), size, size=(LANDMARKS, 2))
    return "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
