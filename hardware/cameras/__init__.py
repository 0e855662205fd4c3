"""Cameras: `hardware/cameras/<kind>.py` has `make_camera(config: CameraConfig) -> Camera`.

Kinds: `realsense` (RGB-D through librealsense) and `opencv` (any UVC webcam,
video file or stream URL through cv2.VideoCapture). A twin's `sim` cameras
come from the twin itself (see hardware/robots.py).

What every camera shares lives here:

- `FrameGrabber`: a background thread that keeps the newest frame, so that
  `Camera.read()` returns at once instead of waiting up to a frame period,
  and turns a dead or silent stream into a `CameraError` naming the source.
- `fit_frame`: resize a frame to the size the robot's spec promises and
  scale the intrinsics with it.
- `pinhole_guess`, `extrinsics_matrix`: intrinsics and extrinsics when a
  config gives none.

Nothing here imports a vendor SDK; cv2 is imported only when a frame must be resized.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from hardware.robot import CameraFrame


class CameraError(RuntimeError):
    """A camera cannot be opened, or stopped delivering frames. The message names the source."""


# A webcam of unknown make: 60 degrees horizontal field of view is typical of UVC webcams (C920: 70, C270: 55).
DEFAULT_HFOV_DEG = 60.0


def pinhole_guess(width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> np.ndarray:
    """K (3, 3) in pixels for a distortion-free camera with square pixels and a centred principal point.

    fx = fy = (width / 2) / tan(hfov / 2); cx = (width - 1) / 2, cy = (height - 1) / 2
    (pixel centres at integer coordinates). E.g. 640x480 at 60 deg: fx = 554.3, cx = 319.5.
    Good to a few percent for grasping geometry only if the lens really is ~60 deg:
    calibrate (cv2.calibrateCamera) and put the numbers in the config for anything better.
    """
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def extrinsics_matrix(values: Sequence[float] | np.ndarray | None, where: str) -> np.ndarray:
    """T_world_cam (4, 4) from 16 numbers (row-major) or a 4x4 array; None gives the identity.

    The identity means "camera frame = world frame": right until a hand-eye
    calibration says otherwise, and then the config must say so.
    """
    if values is None or (not isinstance(values, np.ndarray) and len(values) == 0):
        return np.eye(4)
    t = np.asarray(values, np.float64)
    if t.size != 16:
        raise ValueError(f"{where}: extrinsics need 16 numbers (a row-major 4x4 T_world_cam), got {t.size}")
    t = t.reshape(4, 4)
    if not np.all(np.isfinite(t)) or not np.allclose(t[3], [0, 0, 0, 1]):
        raise ValueError(f"{where}: extrinsics must be finite with last row [0, 0, 0, 1], got {t[3].tolist()}")
    r = t[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
        raise ValueError(f"{where}: the extrinsics' 3x3 block is not a rotation (R R^T != I or det < 0)")
    return t


def scale_intrinsics(k: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """K for an image resized from (width, height) `from_size` to `to_size`.

    With pixel centres at integer coordinates, pixel u in the old image covers
    [u - 0.5, u + 0.5]; its left edge -0.5 maps to -0.5, so u' = (u + 0.5) s - 0.5
    with s = new / old. Hence fx' = fx s_x and cx' = (cx + 0.5) s_x - 0.5 (same in y).
    Example: 640 -> 320 wide, cx 319.5 -> 159.5 (still the centre), fx 600 -> 300.
    """
    (w0, h0), (w1, h1) = from_size, to_size
    sx, sy = w1 / w0, h1 / h0
    out = np.array(k, np.float64, copy=True)
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 1] *= sx
    out[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return out


def fit_frame(rgb: np.ndarray, depth: np.ndarray | None, k: np.ndarray, width: int, height: int
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resize rgb (H, W, 3) uint8 and depth (H, W) float32 m to (height, width); return them with K scaled.

    Colour is area-averaged; depth takes the nearest sample, because averaging
    across an object's edge would invent depths that belong to neither surface.
    Frames already of the right size pass through untouched.
    """
    h0, w0 = rgb.shape[:2]
    if (w0, h0) == (width, height):
        return rgb, depth, k
    import cv2

    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if width < w0 else cv2.INTER_LINEAR)
    if depth is not None:
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)
    return rgb, depth, scale_intrinsics(k, (w0, h0), (width, height))


class FrameGrabber:
    """Calls `grab()` in a background thread and keeps the newest frame it returns.

    grab: blocks for at most about a frame period; returns a CameraFrame, or
    None when no frame came in that time (a timeout, not an error); raises
    when the stream is over or broken. describe: e.g. "realsense camera
    'front' (serial 123)", used in every error message.
    first_frame_timeout: seconds `latest` waits for the very first frame.
    stale_after: seconds without a new frame after which `latest` raises: a
    camera that silently stops must not feed the policy an old picture.
    """

    def __init__(self, grab: Callable[[], CameraFrame | None], describe: str, *,
                 first_frame_timeout: float = 5.0, stale_after: float = 1.0):
        self._grab, self.describe = grab, describe
        self.first_frame_timeout, self.stale_after = first_frame_timeout, stale_after
        self._frame: CameraFrame | None = None
        self._error: BaseException | None = None
        self._new = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = 0  # frames grabbed so far

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"grab {self.describe}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._grab()
            except Exception as e:  # noqa: BLE001 - any failure must reach read(), not end the thread silently
                with self._new:
                    self._error = e
                    self._new.notify_all()
                return
            if frame is not None:
                with self._new:
                    self._frame = frame
                    self.frames += 1
                    self._new.notify_all()

    def latest(self) -> CameraFrame:
        """The newest frame (waits for the first one); CameraError if the stream died or went silent."""
        with self._new:
            if self._frame is None and self._error is None:
                self._new.wait_for(lambda: self._frame is not None or self._error is not None,
                                   timeout=self.first_frame_timeout)
            if self._error is not None:
                raise CameraError(f"{self.describe} stopped delivering frames: {self._error}") from self._error
            if self._frame is None:
                raise CameraError(f"{self.describe} gave no frame within {self.first_frame_timeout:.1f} s of "
                                  "connecting: check the cable/USB port and that no other program holds the camera")
            age = time.monotonic() - self._frame.timestamp
            if age > self.stale_after:
                raise CameraError(f"{self.describe} has sent no new frame for {age:.1f} s (limit "
                                  f"{self.stale_after:.1f} s): is it unplugged or starved of USB bandwidth?")
            return self._frame

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


class GrabbedCamera:
    """What every camera with a `FrameGrabber` shares: `read()` hands out the newest frame; subclasses set
    `describe` and `_grabber` (in connect) and call `_stop_grabber()` from disconnect."""

    describe = "camera"
    _grabber: FrameGrabber | None = None

    def read(self):
        """The newest `CameraFrame` (never waits for a frame period)."""
        if self._grabber is None:
            raise CameraError(f"{self.describe}: read() before connect()")
        return self._grabber.latest()

    def _stop_grabber(self) -> None:
        if self._grabber is not None:
            self._grabber.stop()
            self._grabber = None
