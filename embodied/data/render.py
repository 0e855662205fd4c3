"""Render a recorded episode to an MP4 for people to watch.

Cameras side by side, scaled up to a watchable size, with the instruction and
the current language motion as a caption when OpenCV is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embodied.data.reader import Episode
from embodied.data.video import VideoConfig, write_mp4

CAPTION_HEIGHT = 36  # two lines of small text


def _caption(width: int, lines: Sequence[str]) -> np.ndarray | None:
    try:
        import cv2
    except ModuleNotFoundError:
        return None
    strip = np.zeros((CAPTION_HEIGHT, width, 3), np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(strip, text, (4, 14 + 16 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def episode_frames(episode: Episode, cameras: Sequence[str] | None = None, *, caption: bool = True,
                   min_height: int = 128) -> np.ndarray:
    """(T, H', W', 3) uint8 frames: the cameras side by side, upscaled, optionally captioned."""
    cameras = list(cameras or episode.images)
    if not cameras:
        raise ValueError(f"episode {episode.index} has no decoded camera images to render")
    tiles = np.concatenate([episode.images[c] for c in cameras], axis=2)  # (T, H, W*n, 3)
    scale = max(1, -(-min_height // tiles.shape[1]))
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    if tiles.shape[2] % 2:  # yuv420p needs even sizes
        tiles = np.pad(tiles, ((0, 0), (0, 0), (0, 1), (0, 0)))
    if not caption:
        return tiles
    frames = []
    for t, tile in enumerate(tiles):
        labels = [episode.subtask[t] or episode.task, episode.language_motion[t]]
        strip = _caption(tile.shape[1], [s for s in labels if s])
        if strip is None:
            return tiles
        frames.append(np.concatenate([tile, strip], axis=0))
    return np.stack(frames)


def render_episode(episode: Episode, path: str | Path, *, cameras: Sequence[str] | None = None,
                   caption: bool = True, fps: float | None = None, config: VideoConfig | None = None) -> Path:
    """Write `episode` as a watchable MP4 at `path` (at the recording rate unless fps is given)."""
    frames = episode_frames(episode, cameras, caption=caption)
    return write_mp4(path, frames, fps or episode.fps, config)
