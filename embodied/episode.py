"""An in-memory recorder: one episode's frames, ready to be written elsewhere.

Worker processes record into an `EpisodeBuffer` and send the finished
`RecordedEpisode` to the one process that owns the dataset writer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from embodied.types import Correction, Observation


@dataclasses.dataclass
class Frame:
    obs: Observation
    action: np.ndarray
    language_motion: str = ""
    subtask: str = ""
    corrections: tuple[Correction, ...] = ()


@dataclasses.dataclass
class RecordedEpisode:
    task: str
    success: bool
    frames: list[Frame]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def write_to(self, writer: Any) -> Any:
        """Replay into a DatasetWriter, with meta's env and seed (when set) as the episode's provenance;
        returns its episode index."""
        writer.start_episode(self.task, env=self.meta.get("env"), seed=self.meta.get("seed"))
        for f in self.frames:
            writer.add_frame(
                f.obs, f.action, language_motion=f.language_motion, subtask=f.subtask, corrections=f.corrections
            )
        return writer.end_episode(self.success)


class EpisodeBuffer:
    """Recorder that keeps the current episode in memory; `end_episode` returns it."""

    def __init__(self) -> None:
        self._task: str | None = None
        self._frames: list[Frame] = []

    def start_episode(self, task: str) -> None:
        if self._task is not None:
            raise RuntimeError("start_episode called twice: end or discard the episode in progress first")
        self._task, self._frames = task, []

    def add_frame(
        self,
        obs: Observation,
        action: np.ndarray,
        *,
        language_motion: str = "",
        subtask: str = "",
        corrections: Iterable[Correction] = (),
    ) -> None:
        if self._task is None:
            raise RuntimeError("add_frame before start_episode")
        self._frames.append(Frame(obs, np.array(action, np.float32), language_motion, subtask, tuple(corrections)))

    def end_episode(self, success: bool) -> RecordedEpisode:
        if self._task is None:
            raise RuntimeError("end_episode without an episode in progress")
        ep = RecordedEpisode(self._task, bool(success), self._frames)
        self._task, self._frames = None, []
        return ep

    def discard_episode(self) -> None:
        self._task, self._frames = None, []
