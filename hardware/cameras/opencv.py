"""A UVC webcam, video file or stream URL through `cv2.VideoCapture` (pip extra 'embodied[hardware]').

`CameraConfig.source` says what to open:

    ""  or "0", "1", ...      a device index (V4L2 /dev/videoN on Linux)
    "/dev/video2"             a device path
    "clip.avi", "run.mp4"     a video file, played at its own frame rate (as a camera would deliver it), looping
    "rtsp://...", "http://..."  a network stream

Devices are asked for the config's width, height and fps; many ignore some of
that, so every frame is resized to the config's size if it differs. OpenCV
delivers BGR; `read` returns RGB.

Intrinsics: K for the images `read` returns (the config's width x height),
handed to the camera (e.g. from cv2.calibrateCamera). Without one, K is a
guess: a distortion-free pinhole with a 60 degree horizontal field of view at
the stream's native size, scaled with any resize (`hardware.cameras.pinhole_guess`).
Extrinsics T_world_cam likewise; `make_camera` uses the identity until the
robot config has fields for both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.types import CameraInfo
from hardware.cameras import CameraError, FrameGrabber, GrabbedCamera, extrinsics_matrix, fit_frame, pinhole_guess
from hardware.config import CameraConfig
from hardware.robot import CameraFrame

# A device that fails this many reads in a row has gone (unplugged, or another program took it).
MAX_FAILED_READS = 10


def import_cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise CameraError(f"the OpenCV camera needs opencv-python ({e}): pip install 'embodied[hardware]'") from e
    return cv2


def parse_source(source: str) -> tuple[int | str, str]:
    """(what cv2.VideoCapture takes, kind) with kind one of "device", "file", "stream"."""
    s = source.strip()
    if s == "" or s.isdigit():
        return int(s or 0), "device"
    if s.startswith("/dev/"):
        return s, "device"
    if "://" in s:
        return s, "stream"
    return s, "file"


class OpenCVCamera(GrabbedCamera):
    """A `hardware.robot.Camera` over cv2.VideoCapture (colour only: depth is None).

    intrinsics: K (3, 3) or (fx, fy, cx, cy) in pixels of the config-sized image; None = pinhole guess.
    extrinsics: T_world_cam, 16 numbers row-major or (4, 4); None = identity.
    loop_file: start a video file over when it ends (False: reading after the end is a CameraError).
    first_frame_timeout / stale_after: seconds, see `FrameGrabber`.
    """

    def __init__(self, config: CameraConfig, intrinsics: Sequence[float] | np.ndarray | None = None,
                 extrinsics: Sequence[float] | np.ndarray | None = None, *, loop_file: bool = True,
                 first_frame_timeout: float = 5.0, stale_after: float = 1.0):
        if config.depth:
            raise ValueError(f"camera {config.name!r}: an OpenCV camera has no depth; set depth = false "
                             "(or use kind = 'realsense' for an RGB-D camera)")
        self.config = config
        self.spec = config.spec()
        self.intrinsics = None if intrinsics is None else _k_matrix(intrinsics, config.name)
        self.extrinsics = extrinsics_matrix(extrinsics, f"camera {config.name!r}")
        self.loop_file = loop_file
        self._timeouts = {"first_frame_timeout": first_frame_timeout, "stale_after": stale_after}
        self.target, self.kind = parse_source(config.source)
        self._cap: Any = None
        self._grabber: FrameGrabber | None = None
        self._frames_in_pass = 0
        self._failed_reads = 0
        self._next_due = 0.0
        self._period = 0.0

    @property
    def describe(self) -> str:
        what = {"device": "device", "file": "video file", "stream": "stream"}[self.kind]
        return f"opencv camera {self.config.name!r} ({what} {self.target})"

    def connect(self) -> None:
        if self._grabber is not None:
            return
        cv2 = import_cv2()
        if self.kind == "file" and not Path(self.target).is_file():
            raise CameraError(f"{self.describe}: no such file")
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            hint = ("is it plugged in, and may this user read it (group 'video')? `v4l2-ctl --list-devices` "
                    "lists cameras" if self.kind == "device" else "can this OpenCV build decode it (codec)?")
            raise CameraError(f"{self.describe} could not be opened: {hint}")
        if self.kind == "device":
            # Requests, not guarantees: frames are resized below whatever the device chose.
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
            cap.set(cv2.CAP_PROP_FPS, self.config.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing old frames
        fps = cap.get(cv2.CAP_PROP_FPS) if self.kind == "file" else 0.0
        self._period = 1.0 / (fps if fps and fps > 0 else self.config.fps) if self.kind == "file" else 0.0
        self._cap, self._frames_in_pass, self._failed_reads = cap, 0, 0
        self._next_due = time.monotonic()
        self._grabber = FrameGrabber(lambda: self._grab(cv2), self.describe, **self._timeouts)
        self._grabber.start()

    def _grab(self, cv2: Any) -> CameraFrame | None:
        """Read one frame (in the grabber thread); a file is paced to its frame rate like a live camera."""
        if self._period:
            delay = self._next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_due = max(self._next_due + self._period, time.monotonic() - self._period)
        ok, bgr = self._cap.read()
        if not ok and self.kind == "file":
            if not self.loop_file or self._frames_in_pass == 0:
                raise CameraError(f"the video ended after {self._frames_in_pass} frames")
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._frames_in_pass = 0
            ok, bgr = self._cap.read()
        if not ok:
            self._failed_reads += 1
            if self._failed_reads >= MAX_FAILED_READS:
                raise CameraError(f"{self._failed_reads} reads in a row returned no frame (unplugged?)")
            time.sleep(0.01)
            return None
        self._failed_reads = 0
        self._frames_in_pass += 1
        stamp = time.monotonic()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        rgb, _, k = fit_frame(rgb, None, pinhole_guess(w, h), self.config.width, self.config.height)
        if self.intrinsics is not None:
            k = self.intrinsics
        return CameraFrame(rgb, None, CameraInfo(k, self.extrinsics), timestamp=stamp)

    def disconnect(self) -> None:
        self._stop_grabber()
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _k_matrix(intrinsics: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    k = np.asarray(intrinsics, np.float64)
    if k.shape == (4,):
        fx, fy, cx, cy = k
        k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"camera {name!r}: intrinsics must be (fx, fy, cx, cy) or a 3x3 K with fx, fy > 0; "
                         f"got {np.asarray(intrinsics).tolist()}")
    return k


def make_camera(config: CameraConfig) -> OpenCVCamera:
    """The robot config's OpenCV camera: its intrinsics / extrinsics when the file gives them, else a pinhole
    guess and the identity."""
    return OpenCVCamera(config, config.intrinsics or None, config.extrinsics or None)
