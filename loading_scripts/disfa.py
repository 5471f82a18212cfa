"""DISFA: per-AU intensity files plus stereo videos (or a folder of frames someone already extracted).

Format (docs/corpora.md §4): `ActionUnit_Labels/SN001/SN001_au12.txt`, lines `frame,intensity`, no header, frames
1-based, intensity 0..5, 12 AUs keyed by the file name. Label frame f is decoded video frame f-1 (0-based), which is
the `frame` column and the sample_id suffix: `disfa/SN001/0` is label line `1,...`. Videos are decoded sequentially
and only the frames a config keeps are converted (`video_frames`).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seke_hf.schema import AUS, NOT_ANNOTATED, au_name, empty_row

from .corpus_builder import CorpusBuilder, Skips
from .folds import DISFA_PARTS, FoldConfig, fold_configs, fold_subjects, keep_frame
from .raw_files import encode_image, find_child, iter_dirs, iter_files, local_path, read_lines
from .video_frames import frame_count, iter_frames, require_av

logger = logging.getLogger("seke_hf.loading")

DEPENDS_ON = ("seke_hf.loading_scripts.folds", "seke_hf.loading_scripts.video_frames")
"""Modules whose code changes what this builder yields (read by registration's cache key)."""

DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
"""The 12 AUs DISFA codes on every frame (docs/corpora.md §4.2); the other 5 of the 17 stay -1."""
OCCURRENCE_THRESHOLD = 2
"""An AU is present when its intensity is >= 2 (ME-GraphAU `AUIntensity >= 2`, OpenFace `> 1`; docs/corpora.md §4.2)."""
MAX_INTENSITY = 5
CAMERAS = ("left", "right")
FRAME_NUMBERINGS = ("auto", "zero", "one")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

LABEL_FILE = re.compile(r"^(SN\d+)_au(\d+)\.txt$", re.IGNORECASE)
VIDEO_FILE = re.compile(r"^(left|right)video(SN\d+)(?:_comp)?\.(?:avi|mp4|mkv|mov)$", re.IGNORECASE)
SUBJECT_DIR = re.compile(r"^SN\d+$", re.IGNORECASE)


@dataclass
class DisfaConfig(FoldConfig):
    """`camera`: which video; `au_threshold`: occurrence cut-off; `frames_dir`: a folder of extracted frames
    (`<frames_dir>/SN001/0.png` or `00001.jpg`, relative to the corpus root or absolute) used instead of videos;
    `frame_numbering`: how those files are numbered ("auto" detects 0-based `0.png` versus 1-based `00001.jpg`)."""

    camera: str = "left"
    au_threshold: int = OCCURRENCE_THRESHOLD
    frames_dir: str | None = None
    frame_numbering: str = "auto"

    def check(self) -> None:
        super().check()
        if self.camera not in CAMERAS:
            raise ValueError(f"camera must be one of {CAMERAS}, got {self.camera!r}")
        if not isinstance(self.au_threshold, int) or not 1 <= self.au_threshold <= MAX_INTENSITY:
            raise ValueError(f"au_threshold must be an intensity 1..{MAX_INTENSITY}, got {self.au_threshold!r}")
        if self.frame_numbering not in FRAME_NUMBERINGS:
            raise ValueError(f"frame_numbering must be one of {FRAME_NUMBERINGS}, got {self.frame_numbering!r}")


class Disfa(CorpusBuilder):
    SOURCE = "disfa"
    BUILDER_CONFIG_CLASS = DisfaConfig
    BUILDER_CONFIGS = fold_configs(DisfaConfig, "DISFA")
    DEFAULT_CONFIG_NAME = "all"
    DEFAULT_WRITER_BATCH_SIZE = 100  # decoded frames are ~100 kB JPEGs: keep the writer's buffer small
    MARKERS = ("[Aa]ction[Uu]nit_[Ll]abels",)
    FINGERPRINT = ("[Aa]ction[Uu]nit_[Ll]abels/*/*", "*[Vv]ideo*/*", "*/[Ss][Nn][0-9]*")
    LAYOUT = """\
  <DISFA>/                           (data_dir may be this folder or one above it)
    ActionUnit_Labels/SN001/SN001_au1.txt ... SN001_au26.txt   lines "frame,intensity", frames 1-based
    Videos_LeftCamera/LeftVideoSN001_comp.avi                  (camera="left", the default; needs PyAV)
    Videos_RightCamera/RightVideoSN001_Comp.avi                (camera="right"; the zip is named Video_RightCamera)
  or, instead of videos, a folder of extracted frames: <any folder>/SN001/0.png (0-based) or 00001.jpg (1-based)"""
    DESCRIPTION = (
        "DISFA: 27 adults watching emotive videos, 4,845 frames each (SN010: 4,844) with 12 AU intensities 0..5."
    )
    HOMEPAGE = "http://mohammadmahoor.com/disfa/"
    LICENSE = "DISFA licence agreement: non-commercial research only, no redistribution."
    CITATION = """@article{mavadati2013disfa,
  title={DISFA: A Spontaneous Facial Action Intensity Database},
  author={Mavadati, S. Mohammad and Mahoor, Mohammad H. and Bartlett, Kevin and Trinh, Philip and Cohn, Jeffrey F.},
  journal={IEEE Transactions on Affective Computing}, volume={4}, number={2}, pages={151--160}, year={2013}}"""

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        self.config.check()
        labels = find_label_files(root)
        if not labels:
            raise self.layout_error(f"no label files SNxxx_auN.txt found under {root}.")
        media = self._find_media(root)
        splits = fold_subjects(DISFA_PARTS, self.config.fold, labels, "DISFA")
        return {
            split: {"subjects": [{"subject": s, "labels": labels[s], **media.get(s, {})} for s in subjects]}
            for split, subjects in splits.items()
        }

    def _find_media(self, root: Path) -> dict[str, dict[str, str]]:
        """Subject -> {"video": path} or {"frames": folder}. Videos of the chosen camera win over extracted frames
        unless `frames_dir` is given; extracted frames are looked for only when no video is found."""
        if self.config.frames_dir is None:
            videos = find_videos(root, self.config.camera)
            if videos:
                require_av()
                return {subject: {"video": str(path)} for subject, path in videos.items()}
            frames_root = find_frames_root(root)
            if frames_root is None:
                raise self.layout_error(
                    f"no {self.config.camera}-camera video (e.g. LeftVideoSN001_comp.avi) and no folder of "
                    f"extracted frames (<folder>/SN001/0.png) found under {root}."
                )
            logger.info("disfa: no %s-camera video; reading extracted frames from %s", self.config.camera, frames_root)
        else:
            frames_root = root / Path(self.config.frames_dir).expanduser()
            if not frames_root.is_dir():
                raise self.layout_error(f"frames_dir {frames_root} is not a folder.")
        return {
            folder.name.upper(): {"frames": str(folder), "frames_root": str(frames_root)}
            for folder in iter_dirs(frames_root)
            if SUBJECT_DIR.match(folder.name)
        }

    def label_rows(
        self, root: Path, skips: Skips, subjects: list[dict[str, Any]]
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        for entry in subjects:
            subject = entry["subject"]
            labels = read_intensities(entry["labels"], skips)
            wanted = [f - 1 for f in sorted(labels) if keep_frame(f - 1, self.config.frame_stride)]
            if "video" in entry:
                located = self._video_locators(entry["video"], subject, wanted, skips)
            elif "frames" in entry:
                located = self._extracted_locators(local_path(entry["frames"]), wanted, skips)
            else:
                for frame in wanted:
                    skips.add("no video or frame folder for the subject", f"{subject} frame {frame}")
                continue
            for frame, locator in located:
                yield self._row(subject, frame, labels[frame + 1]), locator

    def read_images(self, locators: Sequence[Any], skips: Skips) -> Iterator[dict[str, Any] | None]:
        """Extracted frames as shipped; video frames decoded one video at a time, as far as the last one needed."""
        for is_video, group in itertools.groupby(locators, key=lambda locator: isinstance(locator, list)):
            if not is_video:
                for path in group:
                    yield skips.image(local_path(path))
                continue
            for video, frames in itertools.groupby(group, key=lambda locator: locator[0]):
                yield from self._decoded(video, [frame for _, frame in frames], skips)

    def _video_locators(
        self, video: str, subject: str, wanted: list[int], skips: Skips
    ) -> Iterator[tuple[int, list[Any]]]:
        """The labelled frames the video holds, by its frame count (container metadata, or counted packets)."""
        count = frame_count(local_path(video))
        for frame in wanted:
            if frame < count:
                yield frame, [video, frame]
            else:
                skips.add("labelled frame the video lacks", f"{subject} frame {frame}")

    def _decoded(self, video: str, frames: list[int], skips: Skips) -> Iterator[dict[str, Any] | None]:
        """The frames of one video in the order asked; a frame its metadata promised but decoding lacks is None."""
        images = {frame: encode_image(image) for frame, image in iter_frames(local_path(video), frames)}
        subject = _subject_of(video)
        for frame in frames:
            image = images.pop(frame, None)
            if image is None:
                skips.add("labelled frame the video lacks", f"{subject} frame {frame}")
            yield image

    def _extracted_locators(self, folder: Path, wanted: list[int], skips: Skips) -> Iterator[tuple[int, str]]:
        images = {int(p.stem): p for p in iter_files(folder, IMAGE_SUFFIXES) if p.stem.isdigit()}
        offset = 0 if frame_numbering(images, self.config.frame_numbering) == "zero" else 1
        for frame in wanted:
            path = images.get(frame + offset)
            if path is None:
                skips.add("labelled frame without image", f"{folder.name} frame {frame}")
                continue
            yield frame, str(path)

    def _row(self, subject: str, frame: int, intensity: dict[str, int]) -> dict[str, Any]:
        row = empty_row(f"disfa/{subject}/{frame}", self.SOURCE, subject=subject, frame=frame)
        threshold = self.config.au_threshold
        for au, value in intensity.items():
            row["au_intensity"][au] = value
            row["aus"][au] = NOT_ANNOTATED if value == NOT_ANNOTATED else int(value >= threshold)
        return row


def find_label_files(root: Path) -> dict[str, dict[str, str]]:
    """Subject -> AU name -> label file, keyed by the file name (never by listing order; docs/corpora.md §4.6)."""
    folder = find_child(root, "ActionUnit_Labels")
    found: dict[str, dict[str, str]] = {}
    for path in sorted(folder.rglob("*")) if folder else ():
        match = LABEL_FILE.match(path.name)
        if match and "__MACOSX" not in path.parts and not path.name.startswith("."):
            au = au_name(match[2])
            if int(match[2]) in DISFA_AUS:
                found.setdefault(match[1].upper(), {})[au] = str(path)
    return found


def read_intensities(files: dict[str, str], skips: Skips) -> dict[int, dict[str, int]]:
    """1-based label frame -> AU -> intensity 0..5, or -1 where a file lacks the frame or holds no valid value."""
    per_au: dict[str, dict[int, int]] = {}
    for au, path in files.items():
        values = per_au[au] = {}
        for line in skips.label_lines(path, read_lines(local_path(path))):
            frame, _, value = line.replace(" ", ",").replace("\t", ",").partition(",")
            value = value.strip(", \t")
            if not frame.isdigit() or int(frame) < 1 or "," in value or not value:
                skips.add("unreadable label line", f"{local_path(path).name}: {line}", path)
                continue
            number = int(value) if value.isdigit() else NOT_ANNOTATED
            values[int(frame)] = number if number <= MAX_INTENSITY else NOT_ANNOTATED
    frames = sorted(set().union(*per_au.values())) if per_au else []
    coded = [au for au in AUS if au in per_au]
    return {f: {au: per_au[au].get(f, NOT_ANNOTATED) for au in coded} for f in frames}


def find_videos(root: Path, camera: str) -> dict[str, Path]:
    """Subject -> video of `camera`, matched case-insensitively in the root and its `*video*` folders (two levels,
    as unzipping `Videos_LeftCamera.zip` or `Video_RightCamera.zip` may nest)."""
    folders = [root]
    for folder in iter_dirs(root):
        if "video" in folder.name.lower():
            folders += [folder, *iter_dirs(folder)]
    videos: dict[str, Path] = {}
    for folder in folders:
        for path in iter_files(folder):
            match = VIDEO_FILE.match(path.name)
            if match and match[1].lower() == camera:
                videos.setdefault(match[2].upper(), path)
    return videos


def find_frames_root(root: Path, max_depth: int = 3) -> Path | None:
    """The folder below `root` holding the most `SNxxx/` folders of images (a published frame extraction)."""
    best, best_count, level = None, 0, [root]
    for _ in range(max_depth):
        next_level = []
        for folder in level:
            subjects = [d for d in iter_dirs(folder) if SUBJECT_DIR.match(d.name)]
            count = sum(_has_image(d) for d in subjects)
            if count > best_count:
                best, best_count = folder, count
            next_level += [d for d in iter_dirs(folder) if not SUBJECT_DIR.match(d.name)]
        level = next_level
    return best


def frame_numbering(images: dict[int, Path], requested: str = "auto") -> str:
    """ "zero" or "one": a frame numbered 0 means 0-based (`0.png`, ME-GraphAU, JAA-Net); zero-padded names without a
    0 mean 1-based (`00001.jpg`, FG-Net, LibreFace); unpadded names without 0 are read as 0-based with frame 0
    dropped (JAA-Net drops frames). Pass frame_numbering="zero"/"one" to override."""
    if requested != "auto":
        return requested
    if 0 in images:
        return "zero"
    padded = any(len(p.stem) > 1 and p.stem.startswith("0") for p in images.values())
    return "one" if padded else "zero"


def _subject_of(video: str) -> str:
    match = VIDEO_FILE.match(local_path(video).name)
    return match[2].upper() if match else local_path(video).stem


def _has_image(folder: Path) -> bool:
    return next(iter_files(folder, IMAGE_SUFFIXES), None) is not None
