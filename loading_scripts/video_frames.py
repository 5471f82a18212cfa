"""Selected frames of a video with PyAV (the optional `seke-hf[video]` extra), and its frame count without decoding.

A DISFA video holds ~4,845 frames of 1024x768: loading one whole would take ~11 GB, so frames are decoded one at a
time, in order, and only the wanted ones are converted to images. Decoding stops after the last wanted frame, and
where the next wanted frame is far ahead, the decoder seeks to the keyframe before it instead of decoding the
frames between (when the stream's timestamps allow it; otherwise it decodes on). For an intra-only codec (MJPEG,
FFV1, ...) every packet is one frame, so unwanted packets are not even decoded.

Frame numbering is the decode order (0-based), as `ffmpeg -i video.avi %05d.jpg` numbers the frames that published
extractions of DISFA are made of (docs/corpora.md §4.3), not the container timestamps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import PIL.Image

from .remote_files import RemotePath

INSTALL_HINT = 'pip install "seke-hf[video]"'


class UnreadableVideo(ValueError):
    """A video file exists but cannot be opened or decoded."""


def require_av() -> ModuleType:
    """The `av` module, or an ImportError saying how to install it."""
    try:
        import av
    except ImportError as e:
        raise ImportError(
            f"Reading frames from video needs PyAV, an optional dependency of seke-hf: {INSTALL_HINT} "
            "(or pip install av). Alternatively point the loader at a folder of already-extracted frames."
        ) from e
    return av


SEEK_AHEAD = 48
"""Seek instead of decoding on when the next wanted frame is at least this far ahead (~2 s of DISFA's 20 fps)."""


@contextlib.contextmanager
def open_video(path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream), or `UnreadableVideo` naming the file. A remote video (`RemotePath`) is
    streamed from its object through a buffered fsspec file: PyAV reads and seeks as it decodes, no download."""
    av = require_av()
    with contextlib.ExitStack() as stack:
        try:
            source = stack.enter_context(path.open("rb")) if isinstance(path, RemotePath) else str(path)
            container = stack.enter_context(av.open(source))
        except (av.FFmpegError, OSError) as e:
            raise UnreadableVideo(f"unreadable video {path}: {e}") from e
        if not container.streams.video:
            raise UnreadableVideo(f"unreadable video {path}: it has no video stream")
        yield container, container.streams.video[0]


def frame_count(path: Path) -> int:
    """The video's number of frames from its container header, or by counting its packets (no frame is decoded)
    where the header does not say. A header that overstates the count is caught when frames are decoded: frames the
    video lacks are not yielded by `iter_frames`."""
    av = require_av()
    with open_video(path) as (container, stream):
        if stream.frames > 0:
            return stream.frames
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as e:
            raise UnreadableVideo(f"unreadable video {path}: {e}") from e


def iter_frames(path: Path, wanted: Iterable[int]) -> Iterator[tuple[int, PIL.Image.Image]]:
    """(index, RGB image) for each 0-based frame index in `wanted` that the video has, in increasing order.

    Indices past the end of the video are not yielded; the caller decides how to count them.
    """
    av = require_av()
    wanted = sorted({int(i) for i in wanted if int(i) >= 0})
    if not wanted:
        return
    with open_video(path) as (container, stream):
        select = _wanted_packets if stream.codec_context.codec.intra_only else _wanted_decoded
        index = -1
        try:
            for index, frame in select(container, stream, wanted):
                # to_ndarray + fromarray is ~10x faster than VideoFrame.to_image, which copies row by row.
                yield index, PIL.Image.fromarray(frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as e:
            raise UnreadableVideo(f"unreadable video {path}: decoding failed after frame {index}: {e}") from e


def _wanted_decoded(container: Any, stream: Any, wanted: list[int]) -> Iterator[tuple[int, Any]]:
    """Inter-coded video: frames are decoded in order, from the start or from the keyframe before a wanted frame far
    ahead; frame threading keeps the cores busy. Every frame's timestamp is checked against its count, so a stream
    whose timestamps are not regular falls back to decoding from the start (the frame count defines the index)."""
    stream.thread_type = "AUTO"
    clock = _FrameClock.of(stream)
    last = wanted[-1]
    pending = iter(wanted)
    target = next(pending)
    index, frames, seeked, sought = -1, container.decode(stream), False, -1
    while True:
        if clock is not None and target != sought and target - index >= SEEK_AHEAD:
            # At most one seek per wanted frame: the keyframe before it may lie behind where the decoder is.
            container.seek(clock.pts(target), stream=stream, backward=True, any_frame=False)
            frames, seeked, sought, index = container.decode(stream), True, target, None
        frame = next(frames, None)
        if frame is None:
            return
        stamped = clock.index(frame.pts) if clock is not None else None
        index = stamped if index is None else index + 1
        if seeked and (index is None or stamped != index or index > target):
            yield from _decode_from_start(container, stream, [i for i in wanted if i >= target])
            return
        if index == target:
            yield index, frame
            if index >= last:
                return
            target = next(pending)


def _decode_from_start(container: Any, stream: Any, wanted: list[int]) -> Iterator[tuple[int, Any]]:
    container.seek(0, stream=stream, backward=True, any_frame=True)
    keep, last = set(wanted), wanted[-1]
    for index, frame in enumerate(container.decode(stream)):
        if index in keep:
            yield index, frame
        if index >= last:
            return


class _FrameClock:
    """Frame index <-> timestamp of a constant-rate stream whose frames are stamped 0, 1, 2, ... frame durations
    from its start (what AVI and most MP4 files are). None when the stream does not say enough to trust it."""

    def __init__(self, start: int, ticks_per_frame: Fraction):
        self.start, self.ticks_per_frame = start, ticks_per_frame

    @classmethod
    def of(cls, stream: Any) -> _FrameClock | None:
        rate, time_base = stream.average_rate, stream.time_base
        if not rate or not time_base:
            return None
        ticks = 1 / (Fraction(rate) * Fraction(time_base))
        return cls(stream.start_time or 0, ticks)

    def pts(self, index: int) -> int:
        return self.start + round(index * self.ticks_per_frame)

    def index(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        position = (pts - self.start) / self.ticks_per_frame
        return int(position) if position == int(position) and position >= 0 else None


def _wanted_packets(container: Any, stream: Any, wanted: list[int]) -> Iterator[tuple[int, Any]]:
    """Intra-only video: one non-empty packet is one frame, so only the wanted packets are decoded."""
    keep, last = set(wanted), wanted[-1]
    index = 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream packet, not a frame
            continue
        if index in keep:
            for frame in packet.decode():
                yield index, frame
        if index >= last:
            return
        index += 1
