"""Selected frames of a video, decoded sequentially with PyAV (the optional `seke-hf[video]` extra).

A DISFA video holds ~4,845 frames of 1024x768: loading one whole would take ~11 GB, so frames are decoded one at a
time, in order, and only the wanted ones are converted to images. Decoding stops after the last wanted frame. For
an intra-only codec (MJPEG, FFV1, ...) every packet is one frame, so unwanted packets are not even decoded.

Frame numbering is the decode order (0-based), as `ffmpeg -i video.avi %05d.jpg` numbers the frames that published
extractions of DISFA are made of (corpora.md §4.3), not the container timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import PIL.Image

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


def iter_frames(path: Path, wanted: Iterable[int]) -> Iterator[tuple[int, PIL.Image.Image]]:
    """(index, RGB image) for each 0-based frame index in `wanted` that the video has, in increasing order.

    Indices past the end of the video are not yielded; the caller decides how to count them.
    """
    av = require_av()
    wanted = sorted({int(i) for i in wanted if int(i) >= 0})
    if not wanted:
        return
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise UnreadableVideo(f"unreadable video {path}: {e}") from e
    with container:
        if not container.streams.video:
            raise UnreadableVideo(f"unreadable video {path}: it has no video stream")
        stream = container.streams.video[0]
        select = _wanted_packets if stream.codec_context.codec.intra_only else _wanted_decoded
        index = -1
        try:
            for index, frame in select(container, stream, wanted):
                # to_ndarray + fromarray is ~10x faster than VideoFrame.to_image, which copies row by row.
                yield index, PIL.Image.fromarray(frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as e:
            raise UnreadableVideo(f"unreadable video {path}: decoding failed after frame {index}: {e}") from e


def _wanted_decoded(container: Any, stream: Any, wanted: list[int]) -> Iterator[tuple[int, Any]]:
    """Inter-coded video: every frame must be decoded; frame threading keeps the cores busy."""
    stream.thread_type = "AUTO"
    keep, last = set(wanted), wanted[-1]
    for index, frame in enumerate(container.decode(stream)):
        if index in keep:
            yield index, frame
        if index >= last:
            return


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
