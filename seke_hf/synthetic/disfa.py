"""DISFA in its distribution layout (docs/corpora.md §4): per-AU label files and real AVI videos, with its pitfalls.

Every video frame is a synthetic face showing the AUs labelled for it, plus its 0-based frame number stamped as
large black/white cells in the top-left corner (`read_frame_number` reads it back), so a test can check that label
frame f really became decoded frame f-1. What is written (small sizes by default: tests and the demo use it):

- `ActionUnit_Labels/SN001/SN001_au1.txt` ... `_au26.txt`: `frame,intensity`, 1-based, no header; one file has CRLF
  line ends, and OS litter (`.DS_Store`, `__MACOSX/`) lies around;
- `Videos_LeftCamera/LeftVideoSN001_comp.avi` and, under the zip's singular name, `Video_RightCamera/
  RightVideoSN001_Comp.avi`; SN003's names are in other letter case (`leftVideoSN003_Comp.avi`);
- SN010 has one labelled frame less than the others (as in the real corpus) and its videos one unlabelled frame
  more, while SN013's videos lack the last labelled frame (video and label counts can differ by one either way),
  so a loader must ignore the extra frame and skip and count the missing one;
- optionally a folder of already-extracted frames: `img/SN001/0.png` (0-based, ME-GraphAU style) or
  `frames/SN001/00001.jpg` (1-based, FG-Net style); SN013 lacks its last frame there too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import PIL.Image

from seke_hf.loading_scripts.disfa import DISFA_AUS, OCCURRENCE_THRESHOLD
from seke_hf.loading_scripts.video_frames import require_av
from seke_hf.schema import AUS, NOT_ANNOTATED, au_name
from seke_hf.synthetic.faces import draw_face, seed_of

DEFAULT_SUBJECTS = ("SN001", "SN003", "SN010", "SN013")
"""One subject of each fold part (SN001, SN010: part 1; SN013: part 2; SN003: part 3), with the pitfalls above."""
SHORT_LABELS = "SN010"  # one labelled frame less (docs/corpora.md §4.3); its video has one frame past the labels
SHORT_VIDEO = "SN013"  # the video lacks the last labelled frame
ODD_CASE = "SN003"  # video file names in other letter case
MARKER_BITS = 16


def write_disfa(
    root: Path,
    seed: int = 0,
    subjects: Sequence[str] = DEFAULT_SUBJECTS,
    n_frames: int = 30,
    video: bool = True,
    extracted: Literal["zero", "one"] | None = None,
    size: tuple[int, int] = (96, 72),
    codec: str = "mpeg4",
    right_camera: bool = True,
) -> dict[str, dict[str, int]]:
    """Write `root/DISFA/...`; returns sample_id -> AU intensities (all 17 AUs, -1 where DISFA does not code).

    The returned rows are exactly those a correct loader yields for config `all` at frame_stride 1: the labelled
    frames that have pixels (SN013's last labelled frame has none).
    """
    base = Path(root) / "DISFA"
    labels_dir = base / "ActionUnit_Labels"
    truth: dict[str, dict[str, int]] = {}
    rng = np.random.default_rng(seed)
    for subject in subjects:
        n_labels = n_frames - 1 if subject == SHORT_LABELS else n_frames
        intensities = synthetic_intensities(rng, n_labels)
        _write_labels(labels_dir / subject, subject, intensities, crlf=subject == subjects[0])
        n_pixels = n_labels - 1 if subject == SHORT_VIDEO else n_labels
        for frame in range(n_pixels):
            truth[f"disfa/{subject}/{frame}"] = {
                au: int(intensities[au][frame]) if au in intensities else NOT_ANNOTATED for au in AUS
            }
        active = [_active(intensities, frame) for frame in range(n_pixels)]
        if subject == SHORT_LABELS:  # its video runs one frame past the labels
            active.append(frozenset())
        if video:
            for folder, name, camera in _video_names(subject, right_camera):
                frames = disfa_frames(seed_of(seed, subject, camera), active, size)
                write_video(base / folder / name, frames, size=size, codec=codec)
        if extracted is not None:
            _write_extracted(base, subject, disfa_frames(seed_of(seed, subject, "left"), active, size), extracted)
    (labels_dir / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (base / "__MACOSX" / "ActionUnit_Labels").mkdir(parents=True, exist_ok=True)
    (base / "__MACOSX" / "ActionUnit_Labels" / f"._{subjects[0]}_au1.txt").write_bytes(b"\0\5\26\7")
    return truth


def synthetic_intensities(rng: np.random.Generator, n_frames: int) -> dict[str, np.ndarray]:
    """AU name -> intensity per frame: mostly 0, with a few onset-apex-offset episodes peaking at 1..5."""
    out = {}
    for number in DISFA_AUS:
        values = np.zeros(n_frames, dtype=np.int64)
        for _ in range(int(rng.integers(1, 4))):
            start, length, peak = int(rng.integers(0, n_frames)), int(rng.integers(3, 12)), int(rng.integers(1, 6))
            ramp = np.minimum(np.arange(length) + 1, np.arange(length)[::-1] + 1)
            episode = np.minimum(ramp, peak)
            end = min(n_frames, start + length)
            values[start:end] = np.maximum(values[start:end], episode[: end - start])
        out[au_name(number)] = values
    return out


def disfa_frames(seed: int, active: Iterable[frozenset[str]], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """RGB frames: the face for each frame's active AUs (drawn once per AU set), its number stamped in a corner."""
    for frame, aus in enumerate(active):
        pixels = _face(seed, aus, size).copy()
        stamp_frame_number(pixels, frame)
        yield pixels


def write_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], codec: str = "mpeg4",
                fps: int = 20, bit_rate: int | None = None) -> int:  # fmt: skip
    """Encode RGB frames into a real AVI with PyAV (MPEG-4 part 2 like DISFA's `_comp.avi`, or MJPEG); frame count."""
    av = require_av()
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    count = 0
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.bit_rate = bit_rate or width * height * fps * 2
        stream.options = {"qmin": "1", "qmax": "4"} if codec in ("mpeg4", "mjpeg") else {}
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            count += 1
        container.mux(stream.encode())
    return count


def stamp_frame_number(pixels: np.ndarray, number: int) -> None:
    """Write `number` in binary as 2 rows x 8 black/white cells, large enough to survive lossy compression."""
    cell = _cell_size(pixels.shape[1])
    for bit in range(MARKER_BITS):
        y, x = divmod(bit, MARKER_BITS // 2)
        pixels[y * cell : (y + 1) * cell, x * cell : (x + 1) * cell] = 255 if number >> bit & 1 else 0


def read_frame_number(image: PIL.Image.Image) -> int:
    """The frame number `stamp_frame_number` wrote, read from the centre of each cell."""
    pixels = np.asarray(image.convert("L"), dtype=np.int64)
    cell = _cell_size(pixels.shape[1])
    number = 0
    for bit in range(MARKER_BITS):
        y, x = divmod(bit, MARKER_BITS // 2)
        centre = pixels[
            y * cell + cell // 4 : (y + 1) * cell - cell // 4, x * cell + cell // 4 : (x + 1) * cell - cell // 4
        ]
        number |= int(centre.mean() > 127) << bit
    return number


def stamp_height(width: int) -> int:
    """Rows at the top of a frame `width` pixels wide that the frame-number stamp occupies."""
    return 2 * _cell_size(width)


def _cell_size(width: int) -> int:
    return 8 * max(1, width // 128)


@lru_cache(maxsize=256)
def _face(seed: int, aus: frozenset[str], size: tuple[int, int]) -> np.ndarray:
    return np.asarray(draw_face(seed, aus=sorted(aus), size=size).convert("RGB"))


def _active(intensities: dict[str, np.ndarray], frame: int) -> frozenset[str]:
    return frozenset(au for au, values in intensities.items() if values[frame] >= OCCURRENCE_THRESHOLD)


def _video_names(subject: str, right_camera: bool) -> list[tuple[str, str, str]]:
    """(folder, file name, camera): the left camera's folder as unzipped, the right one under the zip's name."""
    odd = subject == ODD_CASE
    names = [
        ("Videos_LeftCamera", f"{'left' if odd else 'Left'}Video{subject}_{'Comp' if odd else 'comp'}.avi", "left")
    ]
    if right_camera:
        names.append(
            (
                "Video_RightCamera",
                f"{'right' if odd else 'Right'}Video{subject}_{'comp' if odd else 'Comp'}.avi",
                "right",
            )
        )
    return names


def _write_labels(folder: Path, subject: str, intensities: dict[str, np.ndarray], crlf: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for au, values in intensities.items():
        end = "\r\n" if crlf and au == "AU4" else "\n"
        lines = (f"{frame},{value}" for frame, value in enumerate(values, start=1))
        (folder / f"{subject}_au{au.removeprefix('AU')}.txt").write_bytes((end.join(lines) + end).encode())


def _write_extracted(base: Path, subject: str, frames: Iterable[np.ndarray], naming: str) -> None:
    folder = base / ("img" if naming == "zero" else "frames") / subject
    folder.mkdir(parents=True, exist_ok=True)
    for frame, pixels in enumerate(frames):
        name = f"{frame}.png" if naming == "zero" else f"{frame + 1:05d}.jpg"
        PIL.Image.fromarray(pixels).save(folder / name, **({"quality": 95} if naming == "one" else {}))
