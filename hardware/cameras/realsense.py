"""Intel RealSense RGB-D camera through librealsense (`pyrealsense2`, pip extra 'embodied[realsense]').

One librealsense pipeline streams colour and depth. Each frameset is aligned
to colour by librealsense's own `rs.align(rs.stream.color)`, which moves
every depth sample to the colour pixel it projects to (through the depth
intrinsics, the depth->colour extrinsics and the colour intrinsics). So after
alignment

    depth[v, u] = z (metres) that the depth camera measured for the surface seen at colour pixel (u, v)

with z = raw z16 value x the depth sensor's depth scale (0.001 m on most
D400 cameras, 0.0001 m on a D405: always read from the sensor, never
assumed). librealsense keeps the depth camera's z rather than re-computing
it along the colour camera's axis; a RealSense's two cameras are nearly
parallel, so the difference is small (a 3 degree tilt would make 1 mm at
0.8 m). A depth of 0 means "no measurement" (librealsense's convention),
not "touching the lens".

Intrinsics are the colour stream's (fx, fy, ppx, ppy) as K; when the stream
size differs from the config's width/height the images are resized and K
scaled with them (see `hardware.cameras.fit_frame`). Extrinsics T_world_cam
are handed to the camera; `make_camera` uses the identity until the robot
config has a field for a hand-eye calibration.

Sources (`CameraConfig.source`): "" (the first RealSense found), a serial
number, or a recording (.db3, or .bag from librealsense < 2.56) that the
same pipeline plays back in real time, looping. `write_recording` makes such
a file from arrays through librealsense's software device and recorder, so
that the whole pipeline (playback, align, depth scale) runs without a camera.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.types import CameraInfo
from hardware.cameras import CameraError, FrameGrabber, GrabbedCamera, extrinsics_matrix, fit_frame, intrinsics_matrix
from hardware.config import CameraConfig
from hardware.robot import CameraFrame

RECORDING_SUFFIXES = (".db3", ".bag")


def import_rs() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise CameraError(f"the RealSense camera needs pyrealsense2 ({e}): pip install 'embodied[realsense]' "
                          "(on Linux librealsense also needs libusb-1.0: apt install libusb-1.0-0)") from e
    return rs


def is_recording(source: str) -> bool:
    return Path(source).suffix.lower() in RECORDING_SUFFIXES


class RealSenseCamera(GrabbedCamera):
    """A RealSense colour (+ aligned depth) stream as a `hardware.robot.Camera`.

    config: name, source, width/height (the size `read` returns), fps, depth.
    extrinsics: T_world_cam, 16 numbers row-major or (4, 4); None = identity.
    first_frame_timeout / stale_after: seconds, see `FrameGrabber`.
    loop_recording: replay a recording from the start when it ends (False: reading after the end is a CameraError).
    """

    def __init__(self, config: CameraConfig, extrinsics: Sequence[float] | np.ndarray | None = None, *,
                 first_frame_timeout: float = 5.0, stale_after: float = 1.0, loop_recording: bool = True):
        self.config = config
        self.spec = config.spec()
        self.extrinsics = extrinsics_matrix(extrinsics, f"camera {config.name!r}")
        self.loop_recording = loop_recording
        self._timeouts = {"first_frame_timeout": first_frame_timeout, "stale_after": stale_after}
        self._pipeline: Any = None
        self._grabber: FrameGrabber | None = None
        self.intrinsics: np.ndarray | None = None  # K of the stream as delivered (before any resize)
        self.depth_scale: float | None = None  # metres per z16 unit

    @property
    def describe(self) -> str:
        src = self.config.source
        where = f"recording {src}" if src and is_recording(src) else f"serial {src}" if src else "first found"
        return f"realsense camera {self.config.name!r} ({where})"

    @property
    def playback(self) -> Any:
        """The rs.playback device of a recording source (pause / resume / seek), None for a live camera."""
        if self._pipeline is None or not is_recording(self.config.source):
            return None
        return self._pipeline.get_active_profile().get_device().as_playback()

    def connect(self) -> None:
        if self._grabber is not None:
            return
        rs = import_rs()
        pipeline, cfg = rs.pipeline(), rs.config()
        src = self.config.source
        if src and is_recording(src):
            if not Path(src).is_file():
                raise CameraError(f"{self.describe}: no such file")
            cfg.enable_device_from_file(src, repeat_playback=self.loop_recording)
            # A recording holds whatever the recording camera streamed: take it, resize later.
            cfg.enable_stream(rs.stream.color)
            if self.config.depth:
                cfg.enable_stream(rs.stream.depth)
        else:
            serials = connected_serials()
            if not serials or (src and src not in serials):
                raise CameraError(f"{self.describe}: not connected (RealSense serials found: {serials}); check the "
                                  "USB 3 cable, that `rs-enumerate-devices` lists it, and the serial in the config")
            if src:
                cfg.enable_device(src)
            self._enable_live_streams(rs, pipeline, cfg)
        try:
            profile = pipeline.start(cfg)
        except RuntimeError as e:
            raise CameraError(f"{self.describe} could not be started: {e}") from e
        self._pipeline = pipeline
        color = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self.intrinsics = intrinsics_matrix(color.fx, color.fy, color.ppx, color.ppy)
        align = None
        if self.config.depth:
            self.depth_scale = float(profile.get_device().first_depth_sensor().get_depth_scale())
            align = rs.align(rs.stream.color)
        self._grabber = FrameGrabber(lambda: self._grab(rs, align), self.describe, **self._timeouts)
        self._grabber.start()

    def _enable_live_streams(self, rs: Any, pipeline: Any, cfg: Any) -> None:
        """Ask for the config's size and rate; if the camera has no such mode, its default mode (resized later)."""
        c = self.config
        cfg.enable_stream(rs.stream.color, c.width, c.height, rs.format.rgb8, c.fps)
        if c.depth:
            cfg.enable_stream(rs.stream.depth, c.width, c.height, rs.format.z16, c.fps)
        if not cfg.can_resolve(rs.pipeline_wrapper(pipeline)):
            cfg.enable_stream(rs.stream.color, rs.format.rgb8, c.fps)
            if c.depth:
                cfg.enable_stream(rs.stream.depth, rs.format.z16, c.fps)
            if not cfg.can_resolve(rs.pipeline_wrapper(pipeline)):
                cfg.enable_stream(rs.stream.color, rs.format.rgb8, 0)
                if c.depth:
                    cfg.enable_stream(rs.stream.depth, rs.format.z16, 0)

    def _grab(self, rs: Any, align: Any) -> CameraFrame | None:
        """One frameset -> CameraFrame (runs in the grabber thread; copies out of librealsense's buffers)."""
        ok, frames = self._pipeline.try_wait_for_frames(200)
        if not ok:
            playback = None if self.loop_recording else self.playback
            if playback is not None and playback.current_status() == rs.playback_status.stopped:
                raise CameraError("the recording has ended")
            return None
        stamp = time.monotonic()
        if align is not None:
            frames = align.process(frames)
        color = frames.get_color_frame()
        depth_frame = frames.get_depth_frame() if align is not None else None
        if not color or (align is not None and not depth_frame):
            return None  # an incomplete set right after start: wait for the next
        rgb = to_rgb(np.asanyarray(color.get_data()), color.profile.format(), rs)
        depth = None
        if depth_frame:
            depth = np.asanyarray(depth_frame.get_data()).astype(np.float32) * np.float32(self.depth_scale)
        rgb, depth, k = fit_frame(rgb, depth, self.intrinsics, self.config.width, self.config.height)
        return CameraFrame(rgb, depth, CameraInfo(k, self.extrinsics), timestamp=stamp)

    def disconnect(self) -> None:
        self._stop_grabber()
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            finally:
                self._pipeline = None


def to_rgb(pixels: np.ndarray, fmt: Any, rs: Any) -> np.ndarray:
    """A colour frame's pixels (H, W, C) in any of librealsense's 8-bit colour formats -> (H, W, 3) RGB copy."""
    if fmt == rs.format.rgb8:
        return np.array(pixels, np.uint8)
    if fmt == rs.format.bgr8:
        return np.ascontiguousarray(pixels[..., ::-1])
    if fmt == rs.format.rgba8:
        return np.ascontiguousarray(pixels[..., :3])
    if fmt == rs.format.bgra8:
        return np.ascontiguousarray(pixels[..., 2::-1])
    raise CameraError(f"colour format {fmt} is not supported: stream rgb8, bgr8, rgba8 or bgra8")


def connected_serials() -> list[str]:
    rs = import_rs()
    return [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]


def make_camera(config: CameraConfig) -> RealSenseCamera:
    """The robot config's RealSense camera (intrinsics from the device; extrinsics from the file, else identity)."""
    return RealSenseCamera(config, config.extrinsics or None)


# --------------------------------------------------------------------------- recordings from arrays


def _rs_intrinsics(rs: Any, k: np.ndarray, width: int, height: int) -> Any:
    i = rs.intrinsics()
    i.width, i.height = width, height
    i.fx, i.fy, i.ppx, i.ppy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
    i.model, i.coeffs = rs.distortion.none, [0.0] * 5
    return i


def _video_stream(rs: Any, kind: Any, uid: int, fmt: Any, bpp: int, k: np.ndarray, size: tuple[int, int],
                  fps: int) -> Any:
    s = rs.video_stream()
    s.type, s.index, s.uid, s.fmt, s.bpp, s.fps = kind, 0, uid, fmt, bpp, fps
    s.width, s.height = size
    s.intrinsics = _rs_intrinsics(rs, k, *size)
    return s


def write_recording(path: str | Path, color: Sequence[np.ndarray], depth: Sequence[np.ndarray], *,
                    color_k: np.ndarray, depth_k: np.ndarray, depth_to_color: np.ndarray | None = None,
                    depth_scale: float = 0.001, fps: int = 30, serial: str = "000000000000") -> Path:
    """Write frames as a RealSense recording that `RealSenseCamera` (or realsense-viewer) plays back.

    color: N frames (Hc, Wc, 3) uint8 RGB. depth: N frames (Hd, Wd) uint16 in
    units of `depth_scale` metres (0 = no measurement). color_k / depth_k: the
    two sensors' 3x3 K (pixels). depth_to_color: 4x4 pose of the depth camera
    in the colour camera's frame (p_color = R p_depth + t, metres; identity if
    None). The frames go through librealsense's software device and recorder,
    so the file carries the intrinsics, extrinsics and depth units exactly as a
    real camera's recording does. librealsense >= 2.56 writes .db3 only.
    """
    rs = import_rs()
    if len(color) != len(depth) or not color:
        raise ValueError(f"need as many colour as depth frames, at least one; got {len(color)} and {len(depth)}")
    (hc, wc), (hd, wd) = color[0].shape[:2], depth[0].shape[:2]
    dev = rs.software_device()
    dev.register_info(rs.camera_info.serial_number, serial)
    dev.register_info(rs.camera_info.name, "embodied synthetic RGB-D")
    depth_sensor, color_sensor = dev.add_sensor("Stereo Module"), dev.add_sensor("RGB Camera")
    depth_profile = depth_sensor.add_video_stream(
        _video_stream(rs, rs.stream.depth, 0, rs.format.z16, 2, depth_k, (wd, hd), fps), True)
    depth_sensor.add_read_only_option(rs.option.depth_units, float(depth_scale))
    color_profile = color_sensor.add_video_stream(
        _video_stream(rs, rs.stream.color, 1, rs.format.rgb8, 3, color_k, (wc, hc), fps), True)
    t = np.eye(4) if depth_to_color is None else np.asarray(depth_to_color, np.float64)
    ext = rs.extrinsics()
    ext.rotation = [float(x) for x in t[:3, :3].flatten(order="F")]  # librealsense stores R column-major
    ext.translation = [float(x) for x in t[:3, 3]]
    depth_profile.register_extrinsics_to(color_profile, ext)
    dev.create_matcher(rs.matchers.default)

    path = Path(path)
    path.unlink(missing_ok=True)
    recorder = rs.recorder(str(path), dev)
    sensors = recorder.query_sensors()  # the recorder's wrappers: frames pushed below pass through them
    for sensor, profile in zip(sensors, (depth_profile, color_profile)):
        sensor.open(profile)
        sensor.start(lambda frame: None)
    period_ms = 1000.0 / fps
    for n, (c, d) in enumerate(zip(color, depth), start=1):
        for sensor, profile, pixels, bpp in ((depth_sensor, depth_profile, np.ascontiguousarray(d, np.uint16), 2),
                                             (color_sensor, color_profile, np.ascontiguousarray(c, np.uint8), 3)):
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = pixels, bpp, pixels.shape[1] * bpp
            f.timestamp, f.frame_number = n * period_ms, n
            f.domain = rs.timestamp_domain.hardware_clock
            f.profile = profile.as_video_stream_profile()
            if bpp == 2:
                f.depth_units = float(depth_scale)
            sensor.on_video_frame(f)
        time.sleep(period_ms / 1000.0)  # the recorder stamps frames with wall time: pace them as a camera would
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del sensors, recorder  # the file is finalised when the recorder is destroyed
    return path
