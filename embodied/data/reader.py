"""Read a dataset written by `DatasetWriter`: metadata, episodes, training windows.

    ds = open_dataset("data/pick")
    ep = ds.episode(0)                 # numpy arrays of one episode
    for w in ds.windows(obs_horizon=2, action_horizon=8):
        ...                            # one training sample per frame

Only episodes counted by meta/info.json are visible (see writer.py), so a
dataset whose writer was killed reads as the episodes it had finished.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from embodied.data import episodes as eps
from embodied.data import format as fmt
from embodied.data.errors import DatasetError, damaged
from embodied.data.stats import Stats, aggregate_features
from embodied.data.video import read_mp4
from embodied.types import CameraInfo, Correction, EmbodimentSpec, Observation


@dataclasses.dataclass
class Episode:
    """One recorded episode of T frames, as numpy arrays.

    state: {key: (T, d) float32} in the spec's units; actions: (T, D) float32;
    images: {camera: (T, H, W, 3) uint8} (decoded video, so within codec
    tolerance of what was recorded); timestamps: (T,) float32 seconds on the
    episode clock (frame_index / fps); language_motion, subtask: one label per
    frame; corrections: per frame, the Correction events given at that frame.
    In a dataset recorded with depth: depth {camera: (T, H, W) float32 metres,
    0 = no reading} and cameras {camera: ((T, 3, 3) intrinsics K, (T, 4, 4)
    extrinsics T_world_cam)}; else both are empty.
    """

    index: int
    task: str
    success: bool
    fps: float
    state: dict[str, np.ndarray]
    actions: np.ndarray
    images: dict[str, np.ndarray]
    timestamps: np.ndarray
    language_motion: list[str]
    subtask: list[str]
    corrections: list[list[Correction]]
    depth: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    cameras: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def observation(self, t: int) -> Observation:
        """Frame t as an Observation (images, state, task as instruction), e.g. to replay it into a policy."""
        return Observation(
            images={cam: frames[t] for cam, frames in self.images.items()},
            state={k: v[t] for k, v in self.state.items()},
            instruction=self.task,
            timestamp=float(self.timestamps[t]),
            depth={cam: np.asarray(d[t], np.float32) for cam, d in self.depth.items()},
            cameras={cam: CameraInfo(k[t], e[t]) for cam, (k, e) in self.cameras.items()},
        )


class _LRU(OrderedDict):
    """A tiny least-recently-used cache (decoded videos are large)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key: Any, make: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Dataset:
    """A dataset folder opened for reading; cheap to open (files are read per episode, then cached).

    cache_episodes: how many episodes' decoded data to keep in memory.
    """

    def __init__(self, root: str | Path, *, cache_episodes: int = 4):
        self.root = Path(root)
        self.info = fmt.read_info(self.root)
        self.spec: EmbodimentSpec = fmt.spec_from_info(self.info, self.root / fmt.INFO_PATH)
        self.layout = fmt.Layout(self.root, int(self.info["chunks_size"]))
        self.fps = float(self.info["fps"])
        self.num_episodes = int(self.info["total_episodes"])
        self.num_frames = int(self.info["total_frames"])
        self.tasks: list[str] = fmt.read_tasks(self.layout, int(self.info["total_tasks"]))
        self._rows = eps.read_rows(self.layout, self.num_episodes, self.spec)
        if sum(r["length"] for r in self._rows) != self.num_frames:
            raise DatasetError(
                f"{self.layout.episodes_dir}: episode lengths add up to {sum(r['length'] for r in self._rows)} frames "
                f"but info.json says {self.num_frames}. {fmt.BROKEN_META_HINT}",
                self.layout.episodes_dir,
            )
        self._cache = _LRU(max(1, cache_episodes) * (1 + len(self.spec.cameras)))
        self._stats: dict[str, Stats] | None = None

    # -------------------------------------------------------------- metadata

    @property
    def robot_type(self) -> str | None:
        return self.info.get("robot_type")

    @property
    def camera_names(self) -> tuple[str, ...]:
        return self.spec.camera_names

    @property
    def depth_cameras(self) -> tuple[str, ...]:
        """The cameras whose depth and calibration every frame holds (() for a dataset recorded without depth)."""
        return fmt.recorded_depth(self.info)

    @property
    def demonstrations(self) -> bool:
        """False for a scene dataset: its frames teach perception, its actions are not to be imitated."""
        return fmt.holds_demonstrations(self.info)

    @property
    def episode_lengths(self) -> list[int]:
        return [int(r["length"]) for r in self._rows]

    @property
    def successes(self) -> list[bool]:
        return [bool(r["success"]) for r in self._rows]

    @property
    def episode_sources(self) -> list[tuple[str | None, int | None]]:
        """(env, seed) that made each episode; (None, None) where the dataset does not know
        (teleoperated episodes, datasets written before it was recorded)."""
        return [(r["env"], r["seed"]) for r in self._rows]

    def episode_task(self, i: int) -> str:
        return self._row(i)["tasks"][0]

    @property
    def stats(self) -> dict[str, Stats]:
        """{feature: {min,max,mean,std,count,q01,q99: array}} over the committed episodes.

        Rebuilt from the per-episode statistics in the episodes table (the same
        numbers meta/stats.json holds for LeRobot), so it is exact even if the
        writer died between writing stats.json and committing.
        """
        if self._stats is None:
            self._stats = aggregate_features([eps.row_stats(r, self.spec) for r in self._rows])
        return self._stats

    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        return (f"Dataset({str(self.root)!r}: {self.num_episodes} episodes, {self.num_frames} frames, "
                f"{len(self.tasks)} tasks, {self.fps:g} fps, cameras {list(self.camera_names)})")

    # -------------------------------------------------------------- episodes

    def _row(self, i: int) -> eps.Row:
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: {self.root} has {self.num_episodes} episodes")
        return self._rows[i]

    def episode(self, i: int, cameras: Sequence[str] | None = None) -> Episode:
        """Episode i with the given cameras decoded (default: all). Damaged files raise DatasetError."""
        row = self._row(i)
        cameras = self.camera_names if cameras is None else tuple(cameras)
        for cam in cameras:
            self.spec.camera(cam)  # a clear KeyError for an unknown camera
        data = self._cache.get_or((i, "data"), lambda: self._read_data(i, row))
        images = {cam: self._cache.get_or((i, cam), lambda cam=cam: self._read_video(i, row, cam)) for cam in cameras}
        return Episode(index=i, task=row["tasks"][0], success=bool(row["success"]), fps=self.fps, images=images, **data)

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(self.num_episodes))

    def _read_data(self, i: int, row: eps.Row) -> dict[str, Any]:
        path = self.layout.data(row["data/chunk_index"], row["data/file_index"])
        table = fmt.read_table(path, "episode data", fmt.BROKEN_EPISODE_HINT)
        needed = [fmt.STATE, fmt.ACTION, *fmt.SCALAR_FEATURES, *fmt.STRING_FEATURES]
        fmt.require_columns(table, needed, path, fmt.BROKEN_EPISODE_HINT)
        episode_index = table.column("episode_index").to_numpy()
        if not (episode_index == i).all():  # v3 files may pack several episodes
            table = table.filter(pa.array(episode_index == i))
        length = int(row["length"])
        if table.num_rows != length:
            raise DatasetError(f"{path}: holds {table.num_rows} frames of episode {i}, the episodes table says "
                               f"{length}. {fmt.BROKEN_EPISODE_HINT}", path)
        state = fmt.list_column(table, fmt.STATE, fmt.state_dim(self.spec), np.float32, path)
        try:
            corrections = [[Correction.from_dict(c) for c in json.loads(s)]
                           for s in table.column("corrections").to_pylist()]
        except (TypeError, KeyError, ValueError) as e:
            raise damaged(path, "has a malformed 'corrections' column", e, fmt.BROKEN_EPISODE_HINT) from None
        actions = fmt.list_column(table, fmt.ACTION, self.spec.action.dim, np.float32, path)
        state.flags.writeable = actions.flags.writeable = False  # cached and shared between Episode objects
        depth, cameras = self._read_geometry(table, length, path)
        return {
            "depth": depth,
            "cameras": cameras,
            "state": fmt.split_state(state, self.spec),
            "actions": actions,
            "timestamps": table.column("timestamp").to_numpy().astype(np.float32),
            "language_motion": table.column("language_motion").to_pylist(),
            "subtask": table.column("subtask").to_pylist(),
            "corrections": corrections,
        }

    def _read_geometry(self, table: pa.Table, length: int, path: Path
                       ) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Each depth camera's (T, H, W) depth in metres and ((T, 3, 3), (T, 4, 4)) calibration."""
        depth, cameras = {}, {}
        for cam in self.depth_cameras:
            spec = self.spec.camera(cam)
            keys = (fmt.depth_key(cam), fmt.intrinsics_key(cam), fmt.extrinsics_key(cam))
            fmt.require_columns(table, keys, path, fmt.BROKEN_EPISODE_HINT)
            mm = fmt.list_column(table, keys[0], spec.height * spec.width, np.uint16, path)
            depth[cam] = mm.reshape(length, spec.height, spec.width) * np.float32(fmt.DEPTH_UNIT_M)
            cameras[cam] = (fmt.list_column(table, keys[1], 9, np.float32, path).reshape(length, 3, 3),
                            fmt.list_column(table, keys[2], 16, np.float32, path).reshape(length, 4, 4))
            depth[cam].flags.writeable = False
        return depth, cameras

    def _read_video(self, i: int, row: eps.Row, cam: str) -> np.ndarray:
        key = f"videos/{fmt.video_key(cam)}"
        path = self.layout.video(cam, row[f"{key}/chunk_index"], row[f"{key}/file_index"])
        frames = read_mp4(path, start_s=row[f"{key}/from_timestamp"], end_s=row[f"{key}/to_timestamp"])
        spec = self.spec.camera(cam)
        if frames.shape[1:] != (spec.height, spec.width, 3) or len(frames) != row["length"]:
            raise DatasetError(
                f"{path}: decodes to {frames.shape} for episode {i}; expected ({row['length']}, {spec.height}, "
                f"{spec.width}, 3). The video is damaged or truncated: restore it from a backup, or re-record "
                "the episode.",
                path,
            )
        frames.flags.writeable = False  # cached and shared between Episode objects
        return frames

    def verify(self) -> list[DatasetError]:
        """Read every episode fully; returns the problems found (empty when the dataset is sound)."""
        problems = []
        for i in range(self.num_episodes):
            try:
                self.episode(i)
            except DatasetError as e:
                problems.append(e)
        return problems

    # --------------------------------------------------------------- windows

    def windows(self, obs_horizon: int = 1, action_horizon: int = 1, *, cameras: Sequence[str] | None = None,
                future_offset: int | None = None, episodes: Sequence[int] | None = None,
                goal_frame: bool = False) -> Iterator[dict[str, Any]]:
        """Training windows, one per frame t of each episode (in order); see `windows.make_window`."""
        from embodied.data.windows import iter_windows

        return iter_windows(self, obs_horizon, action_horizon, cameras=cameras, future_offset=future_offset,
                            episodes=episodes, goal_frame=goal_frame)


def open_dataset(root: str | Path, **kwargs: Any) -> Dataset:
    """Open the dataset at `root` for reading (see `Dataset`)."""
    return Dataset(root, **kwargs)
