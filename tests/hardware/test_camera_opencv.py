"""The OpenCV/UVC camera on a real video file that the test writes with cv2.VideoWriter (MJPG in AVI).

Frame n of the clip is a uniform colour that encodes n, with a pure-red
top-left quadrant: reading it back checks frame order, colours within the
codec's tolerance, BGR -> RGB, resizing with K, and the errors a user sees.
"""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
import pytest

from hardware.cameras import CameraError, pinhole_guess, scale_intrinsics
from hardware.cameras.opencv import OpenCVCamera, make_camera
from hardware.config import CameraConfig
from hardware.robot import Camera

N_FRAMES, FPS, W, H = 24, 30, 64, 48
MJPG_TOLERANCE = 12  # grey levels: JPEG on flat colour patches


def frame_rgb(n: int) -> np.ndarray:
    """Frame n: R encodes n (10 + 9 n), G and B fixed; top-left quadrant pure red."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = (10 + 9 * n, 200, 60)
    img[: H // 2, : W // 2] = (255, 0, 0)
    return img


def frame_number(rgb: np.ndarray) -> int:
    """Decode n from the bottom-right quadrant of a frame (any size)."""
    h, w = rgb.shape[:2]
    r = float(np.median(rgb[h // 2 + 2:, w // 2 + 2:, 0]))
    return round((r - 10) / 9)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    for n in range(N_FRAMES):
        writer.write(cv2.cvtColor(frame_rgb(n), cv2.COLOR_RGB2BGR))  # VideoWriter takes BGR
    writer.release()
    return str(path)


def read_until_end(cam: OpenCVCamera, limit_s: float = 10.0) -> tuple[list[np.ndarray], CameraError]:
    """Read as a control loop would (faster than the clip's rate) until the camera reports the end."""
    frames, t0 = [], time.monotonic()
    while time.monotonic() - t0 < limit_s:
        try:
            frames.append(cam.read().rgb)
        except CameraError as e:
            return frames, e
        time.sleep(0.005)
    raise AssertionError("the clip never ended")


def test_frames_come_back_in_order_with_their_colours_as_rgb(clip):
    cam = OpenCVCamera(CameraConfig("front", "opencv", clip, width=W, height=H), loop_file=False)
    assert isinstance(cam, Camera)
    cam.connect()
    try:
        t0 = time.monotonic()
        frames, end = read_until_end(cam)
        elapsed = time.monotonic() - t0
    finally:
        cam.disconnect()
    numbers = [frame_number(f) for f in frames]
    assert numbers == sorted(numbers), "frames went backwards"
    # read() gives the newest frame, so a busy reader may skip one, but sees the clip from start to end.
    distinct = sorted(set(numbers))
    assert distinct[0] <= 2 and distinct[-1] >= N_FRAMES - 3
    assert len(distinct) >= N_FRAMES // 2, f"played too fast to be seen: {distinct}"
    # Played at the clip's own rate, like a camera (24 frames at 30 fps: 0.8 s), not decoded in a burst.
    assert elapsed > 0.6 * N_FRAMES / FPS
    for f, n in zip(frames, numbers):
        assert f.shape == (H, W, 3) and f.dtype == np.uint8
        assert np.abs(f[4:H // 2 - 4, 4:W // 2 - 4].astype(int) - (255, 0, 0)).max() <= MJPG_TOLERANCE
        assert np.abs(f[H // 2 + 4:, W // 2 + 4:].astype(int) - frame_rgb(n)[-1, -1]).max() <= MJPG_TOLERANCE
    assert "video ended after 24 frames" in str(end) and clip in str(end)


def test_frames_are_resized_to_the_config_and_K_scaled_with_them(clip):
    cam = make_camera(CameraConfig("wrist", "opencv", clip, width=32, height=24))
    cam.connect()
    try:
        frame = cam.read()
    finally:
        cam.disconnect()
    assert frame.rgb.shape == (24, 32, 3) and frame.depth is None
    expected_k = scale_intrinsics(pinhole_guess(W, H), (W, H), (32, 24))
    np.testing.assert_allclose(frame.info.intrinsics, expected_k, rtol=1e-6)
    assert frame.info.intrinsics[0, 2] == pytest.approx(15.5)  # still the image centre
    np.testing.assert_array_equal(frame.info.extrinsics, np.eye(4))
    assert np.abs(frame.rgb[2:10, 2:14].astype(int) - (255, 0, 0)).max() <= MJPG_TOLERANCE


def test_given_intrinsics_and_extrinsics_are_published_and_a_file_loops(clip):
    t = np.eye(4)
    t[:3, 3] = (0.5, 0.0, 0.8)
    cam = OpenCVCamera(CameraConfig("front", "opencv", clip, width=W, height=H),
                       intrinsics=(70.0, 71.0, 31.5, 23.5), extrinsics=t.flatten())
    cam.connect()
    try:
        numbers, t0 = [], time.monotonic()
        while time.monotonic() - t0 < 2.0 * N_FRAMES / FPS:
            frame = cam.read()
            numbers.append(frame_number(frame.rgb))
            time.sleep(0.01)
    finally:
        cam.disconnect()
    np.testing.assert_allclose(frame.info.intrinsics, [[70, 0, 31.5], [0, 71, 23.5], [0, 0, 1]])
    np.testing.assert_allclose(frame.info.extrinsics, t)
    wraps = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    assert wraps >= 1, "looping a file must start it over"


def test_a_missing_file_or_device_is_a_clear_error_naming_it(tmp_path):
    missing = tmp_path / "nope.avi"
    with pytest.raises(CameraError, match="nope.avi.*no such file"):
        OpenCVCamera(CameraConfig("front", "opencv", str(missing))).connect()
    with pytest.raises(CameraError, match=r"device 63\).*could not be opened"):
        OpenCVCamera(CameraConfig("front", "opencv", "63")).connect()
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CameraError, match="junk.avi"):
        OpenCVCamera(CameraConfig("front", "opencv", str(junk))).connect()


def test_bad_settings_are_refused_before_anything_opens(clip):
    with pytest.raises(ValueError, match="no depth"):
        OpenCVCamera(CameraConfig("front", "opencv", clip, depth=True))
    with pytest.raises(ValueError, match="intrinsics"):
        OpenCVCamera(CameraConfig("front", "opencv", clip), intrinsics=(0.0, 1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="16 numbers"):
        OpenCVCamera(CameraConfig("front", "opencv", clip), extrinsics=[1.0, 0.0])
    with pytest.raises(ValueError, match="not a rotation"):
        OpenCVCamera(CameraConfig("front", "opencv", clip), extrinsics=np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(CameraError, match="before connect"):
        OpenCVCamera(CameraConfig("front", "opencv", clip)).read()
