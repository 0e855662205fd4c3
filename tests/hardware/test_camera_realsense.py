"""The RealSense camera on a recording made through librealsense's own software device and recorder.

No RealSense is attached here, so the test builds the scene a camera would
see: a depth sensor and a colour sensor with different intrinsics and sizes,
the depth camera 3 cm to the side of the colour camera and turned 3 degrees,
a wall 1.5 m away and a square 0.8 m away. `write_recording` pushes those
frames through librealsense's software device into a .db3 file; the camera
plays it back through the same pipeline, `rs.align` and depth-scale code a
live camera uses. The checks are geometry worked out here independently:
where the square must land in colour pixels, and how far away it must read.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from hardware.cameras import CameraError, scale_intrinsics
from hardware.cameras.realsense import RealSenseCamera, make_camera, write_recording
from hardware.config import CameraConfig
from hardware.robot import Camera

DEPTH_SCALE = 0.0005  # m per unit, as a D405 (not the usual 0.001, so an assumed scale would show)
WALL_M, SQUARE_M = 1.5, 0.8
WD, HD = 128, 96  # depth image
WC, HC = 160, 120  # colour image
K_DEPTH = np.array([[95.0, 0, 63.5], [0, 95.0, 47.5], [0, 0, 1]])
K_COLOR = np.array([[130.0, 0, 81.0], [0, 128.0, 58.0], [0, 0, 1]])
SQUARE_U, SQUARE_V = (54, 74), (38, 58)  # depth pixels [start, stop) covered by the square
N_FRAMES, FPS = 15, 30


def depth_to_color() -> np.ndarray:
    """Pose of the depth camera in the colour camera's frame: 3 deg about y, 3 cm along x."""
    a = math.radians(3.0)
    t = np.eye(4)
    t[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    t[:3, 3] = (0.03, 0.0, 0.0)
    return t


def depth_frame() -> np.ndarray:
    z = np.full((HD, WD), WALL_M, np.float64)
    z[SQUARE_V[0]:SQUARE_V[1], SQUARE_U[0]:SQUARE_U[1]] = SQUARE_M
    return np.round(z / DEPTH_SCALE).astype(np.uint16)


def color_frame(n: int) -> np.ndarray:
    img = np.empty((HC, WC, 3), np.uint8)
    img[:] = (10 + 15 * n, 90, 200)  # red encodes the frame number
    return img


def to_color_pixel(u: float, v: float, z: float) -> tuple[float, float, float]:
    """Depth pixel (u, v) seen at depth z -> (u, v) in the colour image and z along the colour camera's axis."""
    p_depth = z * np.linalg.solve(K_DEPTH, [u, v, 1.0])
    t = depth_to_color()
    p = t[:3, :3] @ p_depth + t[:3, 3]
    uvw = K_COLOR @ p
    return uvw[0] / uvw[2], uvw[1] / uvw[2], p[2]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("realsense") / "scene.db3"
    write_recording(path, [color_frame(n) for n in range(N_FRAMES)], [depth_frame()] * N_FRAMES,
                    color_k=K_COLOR, depth_k=K_DEPTH, depth_to_color=depth_to_color(),
                    depth_scale=DEPTH_SCALE, fps=FPS)
    return str(path)


def grab(recording: str, width: int, height: int) -> tuple[RealSenseCamera, object]:
    cam = make_camera(CameraConfig("front", "realsense", recording, width=width, height=height, depth=True))
    assert isinstance(cam, Camera)
    cam.connect()
    try:
        return cam, cam.read()
    finally:
        cam.disconnect()


def square_box(depth: np.ndarray) -> tuple[int, int, int, int]:
    """(u0, u1, v0, v1) inclusive pixel bounds of where the aligned depth sees the square."""
    vs, us = np.nonzero((depth > 0) & (depth < (SQUARE_M + WALL_M) / 2))
    return us.min(), us.max(), vs.min(), vs.max()


def test_aligned_depth_lands_where_the_geometry_says_in_metres(recording):
    cam, frame = grab(recording, WC, HC)
    assert cam.depth_scale == pytest.approx(DEPTH_SCALE)
    assert frame.rgb.shape == (HC, WC, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (HC, WC) and frame.depth.dtype == np.float32
    np.testing.assert_allclose(frame.info.intrinsics, K_COLOR)  # the colour stream's K
    np.testing.assert_array_equal(frame.info.extrinsics, np.eye(4))  # no calibration in the config: identity

    # The square's centre, re-projected by hand, lands on the square. librealsense's align moves each depth
    # sample to its colour pixel but keeps the depth camera's z (1.1 mm more than z along the colour axis here).
    uc, vc, zc = to_color_pixel(np.mean(SQUARE_U) - 0.5, np.mean(SQUARE_V) - 0.5, SQUARE_M)
    assert abs(zc - SQUARE_M) > 2 * DEPTH_SCALE
    assert frame.depth[round(vc), round(uc)] == pytest.approx(SQUARE_M, abs=DEPTH_SCALE / 2)
    # Its edges land within a pixel of the projected edges (depth pixel u spans u - 0.5 .. u + 0.5).
    u0, v0, _ = to_color_pixel(SQUARE_U[0] - 0.5, SQUARE_V[0] - 0.5, SQUARE_M)
    u1, v1, _ = to_color_pixel(SQUARE_U[1] - 0.5, SQUARE_V[1] - 0.5, SQUARE_M)
    np.testing.assert_allclose(square_box(frame.depth), (u0, u1, v0, v1), atol=1.0)
    # The wall, far from the square, reads as the wall.
    uw, vw, _ = to_color_pixel(10.0, 85.0, WALL_M)
    assert frame.depth[round(vw), round(uw)] == pytest.approx(WALL_M, abs=DEPTH_SCALE / 2)
    # The colour image is the colour sensor's own, in RGB order.
    assert tuple(frame.rgb[60, 80][1:]) == (90, 200)


def test_a_smaller_config_size_resizes_both_images_and_scales_K(recording):
    _, full = grab(recording, WC, HC)
    _, half = grab(recording, WC // 2, HC // 2)
    assert half.rgb.shape == (HC // 2, WC // 2, 3) and half.depth.shape == (HC // 2, WC // 2)
    k = scale_intrinsics(K_COLOR, (WC, HC), (WC // 2, HC // 2))
    np.testing.assert_allclose(half.info.intrinsics, k, rtol=1e-6)
    assert k[0, 0] == pytest.approx(65.0) and k[0, 2] == pytest.approx(40.25)
    # Depth is sampled, never averaged across the square's edge: every value is a wall, a square or no reading.
    values = np.unique(np.round(half.depth, 2))
    assert set(values) <= set(np.unique(np.round(full.depth, 2)))
    # The square moves with K: its box in the half-size image is the full-size box, halved.
    np.testing.assert_allclose(square_box(half.depth), np.array(square_box(full.depth)) / 2, atol=1.0)


def test_frames_play_in_order_and_the_end_of_a_recording_is_a_clear_error(recording):
    cam = RealSenseCamera(CameraConfig("front", "realsense", recording, width=WC, height=HC, depth=True),
                          loop_recording=False)
    cam.connect()
    numbers, t0 = [], time.monotonic()
    try:
        with pytest.raises(CameraError, match=r"scene\.db3.*recording has ended"):
            while time.monotonic() - t0 < 10:
                numbers.append((int(cam.read().rgb[0, 0, 0]) - 10) // 15)
                time.sleep(0.005)
    finally:
        cam.disconnect()
    assert numbers == sorted(numbers)
    assert numbers[-1] >= N_FRAMES - 3 and len(set(numbers)) >= N_FRAMES // 2


def test_a_camera_that_stops_sending_is_an_error_not_an_old_picture(recording):
    cam = RealSenseCamera(CameraConfig("front", "realsense", recording, width=WC, height=HC, depth=True),
                          stale_after=0.3)
    cam.connect()
    try:
        cam.read()
        cam.playback.pause()  # the stream stalls, as a camera on a failing USB link does
        time.sleep(0.6)
        with pytest.raises(CameraError, match=r"scene\.db3.*no new frame for"):
            cam.read()
        cam.playback.resume()
        deadline = time.monotonic() + 10
        while True:  # it recovers once frames flow again
            try:
                assert cam.read().depth is not None
                break
            except CameraError:
                assert time.monotonic() < deadline, "no frames after resuming"
                time.sleep(0.05)
    finally:
        cam.disconnect()


def test_a_missing_camera_or_file_is_a_clear_error_naming_it(tmp_path):
    with pytest.raises(CameraError, match=r"serial 000111222333\).*not connected"):
        RealSenseCamera(CameraConfig("front", "realsense", "000111222333", depth=True)).connect()
    with pytest.raises(CameraError, match="gone.db3.*no such file"):
        RealSenseCamera(CameraConfig("front", "realsense", str(tmp_path / "gone.db3"))).connect()
