"""MP4 video in and out (H.264, yuv420p, through PyAV).

Used by the dataset for camera streams and by the rest of the stack for
rollout videos. Frames are (H, W, 3) uint8 RGB; H and W must be even, which
yuv420p requires.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from embodied.data.errors import DatasetError, damaged, missing
from embodied.data.storage import publish, temp_path


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """How camera streams are encoded.

    crf: x264 constant rate factor (0 lossless .. 51; 18 is visually lossless).
    gop: frames between keyframes; 2 keeps random access cheap for LeRobot's
    timestamp-seeking loader at some cost in file size.
    """

    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    gop: int = 2
    pix_fmt: str = "yuv420p"

    def options(self) -> dict[str, str]:
        return {"crf": str(self.crf), "preset": self.preset, "g": str(self.gop)}

    def feature_info(self, fps: float, height: int, width: int) -> dict[str, Any]:
        """The ``info`` block of a LeRobot video feature."""
        return {
            "video.height": height,
            "video.width": width,
            "video.codec": av.codec.Codec(self.codec, "w").canonical_name,
            "video.pix_fmt": self.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(fps) if float(fps).is_integer() else float(fps),
            "video.channels": 3,
            "has_audio": False,
        }


def check_frame_size(height: int, width: int, what: str = "video") -> None:
    if height <= 0 or width <= 0 or height % 2 or width % 2:
        raise ValueError(
            f"{what} frames are {height}x{width}; H.264 yuv420p needs even, positive sizes. "
            "Crop or pad the images by one pixel (or pick an even camera resolution)."
        )


class Mp4Writer:
    """Encode frames one at a time into an MP4 at `path` (not atomic: see `write_mp4`)."""

    def __init__(self, path: str | Path, fps: float, height: int, width: int, config: VideoConfig | None = None):
        check_frame_size(height, width)
        self.path = Path(path)
        self.shape = (height, width, 3)
        self.frames = 0
        config = config or VideoConfig()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w", format="mp4")  # temp names lack .mp4
        self._stream = self._container.add_stream(
            config.codec, rate=Fraction(fps).limit_denominator(1001), options=config.options()
        )
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, config.pix_fmt

    def write(self, frame: np.ndarray) -> None:
        """frame: (H, W, 3) uint8 RGB."""
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"video frame is {frame.shape} {frame.dtype}; expected {self.shape} uint8")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames
        self._container.mux(self._stream.encode(vf))
        self.frames += 1

    def close(self) -> int:
        """Flush the encoder and finish the file; returns the number of frames."""
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
        return self.frames

    def abort(self) -> None:
        """Stop without finishing the file and delete it."""
        if self._container is not None:
            try:
                self._container.close()
            except av.error.FFmpegError:
                pass
            self._container = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:  # noqa: PYI034
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float, config: VideoConfig | None = None) -> Path:
    """Write (T, H, W, 3) uint8 frames (an array or any iterable of frames) to `path`, atomically."""
    path = Path(path)
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise ValueError(f"write_mp4({path}): no frames to write") from None
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"write_mp4({path}): frames must be (H, W, 3) uint8, got {first.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with Mp4Writer(tmp, fps, first.shape[0], first.shape[1], config) as w:
        w.write(first)
        for frame in it:
            w.write(np.asarray(frame))
    publish(tmp, path)
    return path


def read_mp4(path: str | Path, *, start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
    """Decode an MP4 to (T, H, W, 3) uint8 RGB; optionally only frames with start_s <= time < end_s.

    A missing or damaged file is a DatasetError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise missing(path, "Check the path, or re-record the video.")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: has no video stream. Re-record the video.", path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # Half a frame of slack absorbs timestamp rounding in the container's time base.
            slack = 0.5 / float(stream.average_rate or 30)
            for frame in container.decode(stream):
                t = frame.time
                if t is not None and start_s is not None and t < start_s - slack:
                    continue
                if t is not None and end_s is not None and t >= end_s - slack:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise damaged(path, "is not a readable MP4 video", e,
                      "The video is damaged: restore it from a backup, or re-record it.") from None
    if not frames:
        raise DatasetError(f"{path}: holds no video frames{' in the requested time range' if start_s else ''}. "
                           "The video is damaged or empty: restore it from a backup, or re-record it.", path)
    return np.stack(frames)

