"""MP4 I/O for the rest of the stack, and rendering an episode to watch."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.data import VideoConfig, open_dataset, read_mp4, render_episode, write_mp4
from embodied.data.render import CAPTION_HEIGHT
from embodied.data.synthetic import synthetic_image, write_synthetic_dataset


def test_write_then_read_mp4(tmp_path):
    frames = np.stack([synthetic_image(48, 64, t, seed=1) for t in range(15)])
    path = write_mp4(tmp_path / "rollouts" / "ep0.mp4", frames, fps=20)
    video = read_mp4(path)
    assert video.shape == (15, 48, 64, 3) and video.dtype == np.uint8
    assert np.abs(video.astype(np.int16) - frames).mean() < 3.0
    assert not list(path.parent.glob(".*.tmp"))
    lossless = read_mp4(write_mp4(tmp_path / "q.mp4", iter(frames), fps=20, config=VideoConfig(crf=0)))
    assert np.abs(lossless.astype(np.int16) - frames).mean() < np.abs(video.astype(np.int16) - frames).mean()


def test_read_a_time_range(tmp_path):
    frames = np.stack([np.full((16, 16, 3), 10 * t, np.uint8) for t in range(10)])
    video = read_mp4(write_mp4(tmp_path / "v.mp4", frames, fps=10), start_s=0.3, end_s=0.6)
    assert len(video) == 3 and abs(int(video[0, 0, 0, 0]) - 30) <= 2


def test_odd_sizes_and_empty_input_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8), fps=10)
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "none.mp4", [], fps=10)


def test_render_episode_puts_cameras_side_by_side_with_a_caption(tmp_path):
    ds = open_dataset(write_synthetic_dataset(tmp_path / "ds", num_episodes=1, length=5))
    ep = ds.episode(0)
    video = read_mp4(render_episode(ep, tmp_path / "ep0.mp4"))
    # Two 32x32 cameras scaled x4 to reach 128 px, plus the caption strip.
    assert video.shape == (5, 128 + CAPTION_HEIGHT, 256, 3)
    assert video[:, 128 + 4 :, :, :].max() > 128, "caption text should be drawn"
    front = video[0, :128:4, :128:4].astype(np.int16)
    assert np.abs(front - ep.images["front"][0]).mean() < 6
    plain = read_mp4(render_episode(ep, tmp_path / "plain.mp4", cameras=["wrist"], caption=False))
    assert plain.shape == (5, 128, 128, 3)
