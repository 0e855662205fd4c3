"""The dataset layer: LeRobotDataset v3.0 episodes with language labels and corrections.

- `DatasetWriter` records episodes crash-safely; `open_dataset` / `Dataset`
  read them back (`episode(i)`, `windows(...)`, `stats`).
- `write_mp4` / `read_mp4` are the stack's video I/O; `render_episode` makes
  a watchable MP4 of an episode.
- Every problem with files on disk is a `DatasetError` naming the file.
"""

from embodied.data.errors import DatasetError, DatasetSpecError
from embodied.data.reader import Dataset, Episode, open_dataset
from embodied.data.render import render_episode
from embodied.data.video import VideoConfig, read_mp4, write_mp4
from embodied.data.writer import DatasetWriter

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetSpecError",
    "DatasetWriter",
    "Episode",
    "VideoConfig",
    "open_dataset",
    "read_mp4",
    "render_episode",
    "write_mp4",
]
