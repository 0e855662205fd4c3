"""Record episodes into a LeRobotDataset v3.0 folder, crash-safely.

An episode in progress lives in memory (state, actions, labels) and in hidden
temp files (its videos, encoded as frames arrive). `end_episode` publishes it:
the episode's data and video files are renamed into place first, then the
episodes table, tasks and stats, and last meta/info.json, whose
``total_episodes`` is the commit point: readers only see episodes it counts.
A process killed at any instant therefore loses at most the episode in
progress; the next writer removes its leftovers.

    with DatasetWriter("data/pick", env_spec) as w:
        w.start_episode("pick up the red cube")
        for obs, action in steps:
            w.add_frame(obs, action, language_motion="move arm left")
        w.end_episode(success=True)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embodied.data import episodes as eps
from embodied.data import format as fmt
from embodied.data.errors import DatasetError, DatasetSpecError
from embodied.data.stats import aggregate_features, image_stats, numeric_stats, thumbnail, to_json
from embodied.data.storage import (
    LOCK_NAME,
    WriterLock,
    publish,
    remove_stale_temps,
    temp_path,
    write_json_atomic,
    write_table_atomic,
)
from embodied.data.video import Mp4Writer, VideoConfig, check_frame_size
from embodied.types import Action, Correction, EmbodimentSpec, Observation, SpecMismatchError

log = logging.getLogger(__name__)

_EPISODE_FILE = re.compile(r"chunk-(\d+)/file-(\d+)\.(parquet|mp4)$")


@dataclasses.dataclass
class _Recording:
    """The episode in progress."""

    episode_index: int
    task: str
    env: str | None
    seed: int | None
    videos: dict[str, Mp4Writer]
    states: list[np.ndarray] = dataclasses.field(default_factory=list)
    actions: list[np.ndarray] = dataclasses.field(default_factory=list)
    language_motion: list[str] = dataclasses.field(default_factory=list)
    subtask: list[str] = dataclasses.field(default_factory=list)
    corrections: list[str] = dataclasses.field(default_factory=list)
    thumbnails: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    depth: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)       # (H, W) uint16 mm
    intrinsics: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)  # (3, 3)
    extrinsics: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)  # (4, 4)


class DatasetWriter:
    """Create a dataset at `root`, or append to the one there (which must have the same spec).

    fps defaults to the spec's control rate, and must equal it: one frame is
    one control tick. robot_type defaults to the spec's name. Only one writer
    may hold a dataset at a time. demonstrations=False records a scene
    dataset: frames and state for perception, with actions that only moved
    the robot and that training must not imitate (`Dataset.demonstrations`).
    depth=True also records, for each camera whose spec has depth, every
    frame's depth image and camera calibration (`Observation.depth`,
    `Observation.cameras`; see embodied.data.format), which a frame must then carry.
    """

    def __init__(self, root: str | Path, spec: EmbodimentSpec, fps: float | None = None, *,
                 robot_type: str | None = None, video: VideoConfig | None = None,
                 chunks_size: int = fmt.DEFAULT_CHUNKS_SIZE, demonstrations: bool = True, depth: bool = False):
        self.root = Path(root)
        self.demonstrations = demonstrations
        self.depth_cameras = fmt.depth_cameras(spec) if depth else ()
        if depth and not self.depth_cameras:
            raise ValueError(f"depth=True, but none of {spec.name!r}'s cameras {list(spec.camera_names)} has depth "
                             "in its spec (CameraSpec.depth); record without depth")
        self.spec = spec
        self.video = video or VideoConfig()
        fps = spec.control_hz if fps is None else float(fps)
        if not math.isclose(fps, spec.control_hz, rel_tol=1e-9):
            raise ValueError(
                f"fps {fps} differs from {spec.name!r}'s control rate {spec.control_hz} Hz; a dataset frame is "
                "one control tick, so record at the control rate (leave fps out)."
            )
        for cam in spec.cameras:
            check_frame_size(cam.height, cam.width, f"camera {cam.name!r}")
        self.fps = fps
        self._recording: _Recording | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock(self.root)
        self._lock.acquire()
        try:
            if (self.root / fmt.INFO_PATH).exists():
                self._open_existing(robot_type)
            else:
                self._create(robot_type or spec.name, chunks_size)
        except BaseException:
            self._lock.release()
            raise

    # ----------------------------------------------------------------- setup

    def _create(self, robot_type: str, chunks_size: int) -> None:
        stray = [p.name for p in self.root.iterdir() if p.name != LOCK_NAME]
        if stray:
            raise DatasetError(
                f"{self.root}: folder is not empty ({', '.join(sorted(stray)[:5])}) and has no meta/info.json, "
                "so it is not a dataset. Write to a new or empty folder.",
                self.root,
            )
        self.layout = fmt.Layout(self.root, chunks_size)
        video_info = {c.name: self.video.feature_info(self.fps, c.height, c.width) for c in self.spec.cameras}
        self._info = fmt.new_info(self.spec, self.fps, robot_type, video_info, chunks_size, self.demonstrations,
                                  depth=bool(self.depth_cameras))
        self._rows: list[eps.Row] = []
        self._table: pa.Table | None = None  # the rows of the last episodes-table file, so a commit appends one
        self._stats: dict | None = None      # statistics over the committed episodes, merged one episode at a time
        self._tasks: list[str] = []
        write_json_atomic(self.layout.info, self._info)

    def _open_existing(self, robot_type: str | None) -> None:
        info_path = self.root / fmt.INFO_PATH
        info = fmt.read_info(self.root)
        stored = fmt.spec_from_info(info, info_path)
        if stored != self.spec:
            diffs = [f"{f}: dataset has {getattr(stored, f)!r}, writer got {getattr(self.spec, f)!r}"
                     for f in ("name", "cameras", "state", "action") if getattr(stored, f) != getattr(self.spec, f)]
            raise DatasetSpecError(
                f"{self.root}: this dataset was recorded with a different embodiment spec; "
                + "; ".join(diffs) + ". Write to a new folder for this embodiment.",
                info_path,
            )
        if not math.isclose(float(info["fps"]), self.fps, rel_tol=1e-9):
            raise DatasetSpecError(f"{info_path}: dataset is at {info['fps']} fps, writer at {self.fps}. "
                                   "Write to a new folder.", info_path)
        if robot_type is not None and robot_type != info.get("robot_type"):
            raise DatasetSpecError(f"{info_path}: dataset robot_type is {info.get('robot_type')!r}, writer got "
                                   f"{robot_type!r}. Leave robot_type out, or write to a new folder.", info_path)
        if fmt.holds_demonstrations(info) != self.demonstrations:
            kinds = {True: "demonstrations", False: "scenes (actions not to imitate)"}
            raise DatasetSpecError(f"{info_path}: this dataset holds {kinds[fmt.holds_demonstrations(info)]}, the "
                                   f"writer records {kinds[self.demonstrations]}; write to a new folder.", info_path)
        if fmt.recorded_depth(info) != self.depth_cameras:
            has = "holds depth" if fmt.recorded_depth(info) else "holds no depth"
            raise DatasetSpecError(f"{info_path}: this dataset {has}, the writer was given depth="
                                   f"{bool(self.depth_cameras)}; give the same, or write to a new folder.", info_path)
        self.layout = fmt.Layout(self.root, int(info["chunks_size"]))
        self._info = info
        self._rows = eps.read_rows(self.layout, int(info["total_episodes"]), self.spec)
        self._table = None  # built from _rows by the first commit
        self._stats = aggregate_features([eps.row_stats(r, self.spec) for r in self._rows]) or None
        self._tasks = fmt.read_tasks(self.layout, int(info["total_tasks"]))
        self._repair()

    def _repair(self) -> None:
        """Remove what a killed writer left behind, so the files agree with info.json again."""
        removed = remove_stale_temps(self.root)
        total = len(self._rows)
        for path in [*self.root.glob("data/chunk-*/file-*.parquet"), *self.root.glob("videos/*/chunk-*/file-*.mp4")]:
            m = _EPISODE_FILE.search(path.as_posix())
            if m and int(m[1]) * self.layout.chunks_size + int(m[2]) >= total:
                path.unlink()
                removed.append(path)
        # Rows or tasks past the committed totals come from an end_episode cut short before its commit.
        committed = Counter(self.layout.episodes(*eps.location(r)) for r in self._rows)
        stale_meta = self._count_rows(self.layout.tasks) > len(self._tasks) or any(
            self._count_rows(path) != committed[path] for path in self.layout.episodes_files())
        if stale_meta or removed:
            self._write_meta()
            log.warning("%s: cleaned up after an interrupted writer (%d stale files)", self.root, len(removed))

    @staticmethod
    def _count_rows(path: Path) -> int:
        if not path.exists():
            return 0
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 1 << 62  # unreadable: rewrite it from what info.json commits

    def _write_meta(self) -> None:
        """Episodes tables, tasks and stats from the in-memory (committed) state; info.json is not touched."""
        files: dict[tuple[int, int], list[eps.Row]] = {}
        for row in self._rows:
            files.setdefault(eps.location(row), []).append(row)
        kept = {self.layout.episodes(*loc) for loc in files}
        for path in self.layout.episodes_files():
            if path not in kept:
                path.unlink()
        for loc, rows in files.items():
            write_table_atomic(self.layout.episodes(*loc), eps.to_table(rows, self.spec))
        if self._tasks:
            write_table_atomic(self.layout.tasks, fmt.tasks_table(self._tasks))
        else:
            self.layout.tasks.unlink(missing_ok=True)
        if self._stats:
            write_json_atomic(self.layout.stats, to_json(self._stats))
        else:
            self.layout.stats.unlink(missing_ok=True)

    # ------------------------------------------------------------- recording

    @property
    def num_episodes(self) -> int:
        """Episodes committed so far."""
        return int(self._info["total_episodes"])

    @property
    def recording(self) -> bool:
        return self._recording is not None

    def start_episode(self, task: str, *, env: str | None = None, seed: int | None = None) -> int:
        """Begin recording an episode of `task` (its instruction); returns the index it will get.

        env, seed: where the episode came from (a registered env and its reset seed), stored in the
        episodes table so that a collection can tell which episodes it already recorded."""
        self._check_open()
        if self._recording is not None:
            raise RuntimeError("an episode is already being recorded; call end_episode() or discard_episode() first")
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"start_episode needs the task's instruction as a non-empty string, got {task!r}")
        index = self.num_episodes
        chunk, file = self.layout.chunk_file(index)
        videos = {}
        try:
            for cam in self.spec.cameras:
                final = self.layout.video(cam.name, chunk, file)
                final.parent.mkdir(parents=True, exist_ok=True)
                videos[cam.name] = Mp4Writer(temp_path(final), self.fps, cam.height, cam.width, self.video)
        except BaseException:
            for w in videos.values():
                w.abort()
            raise
        self._recording = _Recording(index, task, env, None if seed is None else int(seed), videos,
                                     thumbnails={c: [] for c in self.spec.camera_names})
        return index

    def add_frame(self, obs: Observation, action: np.ndarray | Action, *, language_motion: str = "",
                  subtask: str = "", corrections: Iterable[Correction | Mapping[str, Any]] = ()) -> None:
        """Record one control tick: what was seen, what was done, and its labels.

        action: (D,) in the spec's action space; language_motion: RT-H style
        label of this step ("move arm left"); subtask: the active instruction
        segment; corrections: the correction events given at this step.
        """
        rec = self._require_recording("add_frame")
        obs.check(self.spec)
        lacking = [k for k in self.spec.privileged if k not in obs.state]
        if lacking:  # zeros would be recorded as the truth a policy learns to predict
            raise SpecMismatchError(f"observation lacks privileged state {lacking} that {self.spec.name!r} records; "
                                    "record with the simulator that provides it, or a spec without it")
        value = action.value if isinstance(action, Action) else np.asarray(action, np.float32)
        if value.shape != (self.spec.action.dim,):
            raise SpecMismatchError(f"action has shape {value.shape}; {self.spec.name!r} takes "
                                    f"({self.spec.action.dim},) {self.spec.action.mode} actions (one tick, not a chunk)")
        state = fmt.flatten_state(obs.state, self.spec)
        if not (np.isfinite(value).all() and np.isfinite(state).all()):
            raise ValueError(f"frame {len(rec.actions)} has NaN/inf in its action {value} or state; refusing to record it")
        for name, text in (("language_motion", language_motion), ("subtask", subtask)):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        events = [c if isinstance(c, Correction) else Correction.from_dict(c) for c in corrections]
        try:
            corrections_json = json.dumps([c.to_dict() for c in events], allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"correction payloads must be JSON-serialisable (lists, not arrays): {e}") from None
        geometry = self._frame_geometry(obs)
        for cam in self.spec.camera_names:
            image = obs.images[cam]
            rec.videos[cam].write(image)
            rec.thumbnails[cam].append(thumbnail(image))
        rec.states.append(state)
        rec.actions.append(value.astype(np.float32, copy=True))
        rec.language_motion.append(language_motion)
        rec.subtask.append(subtask)
        rec.corrections.append(corrections_json)
        for cam, (depth, k, t) in geometry.items():
            rec.depth.setdefault(cam, []).append(depth)
            rec.intrinsics.setdefault(cam, []).append(k)
            rec.extrinsics.setdefault(cam, []).append(t)

    def _frame_geometry(self, obs: Observation) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """{camera: (depth (H, W) uint16 mm, K (3, 3), T_world_cam (4, 4))} of a frame, for a writer with depth.

        Depth past the uint16 range or not finite is stored as 0, "no reading", as RGB-D cameras report it.
        """
        out = {}
        for cam in self.depth_cameras:
            spec = self.spec.camera(cam)
            depth, info = obs.depth.get(cam), obs.cameras.get(cam)
            if depth is None or info is None:
                lacks = "depth image" if depth is None else "calibration (Observation.cameras)"
                raise SpecMismatchError(f"observation lacks camera {cam!r}'s {lacks}, which this dataset records "
                                        "(DatasetWriter(depth=True)); record from an embodiment that gives it, or "
                                        "without depth")
            depth = np.asarray(depth, np.float64)
            if depth.shape != (spec.height, spec.width):
                raise SpecMismatchError(f"depth {cam!r} is {depth.shape}; expected ({spec.height}, {spec.width}) metres")
            mm = np.where(np.isfinite(depth) & (depth > 0), np.round(depth / fmt.DEPTH_UNIT_M), 0)
            mm = np.where(mm <= np.iinfo(np.uint16).max, mm, 0).astype(np.uint16)
            out[cam] = (mm, info.intrinsics.astype(np.float32), info.extrinsics.astype(np.float32))
        return out

    def end_episode(self, success: bool) -> int:
        """Publish the episode in progress; returns its index. Atomic: see the module docstring."""
        rec = self._require_recording("end_episode")
        length = len(rec.actions)
        if length == 0:
            raise ValueError("the episode has no frames; add_frame() at least once, or discard_episode()")
        index, from_index = rec.episode_index, int(self._info["total_frames"])
        tasks = self._tasks if rec.task in self._tasks else [*self._tasks, rec.task]
        task_index = tasks.index(rec.task)
        chunk, file = self.layout.chunk_file(index)
        staged: list[tuple[Path, Path]] = []
        try:
            for cam, w in rec.videos.items():
                w.close()
                staged.append((w.path, self.layout.video(cam, chunk, file)))
            data_path = self.layout.data(chunk, file)
            data_path.parent.mkdir(parents=True, exist_ok=True)
            table, columns = self._data_table(rec, from_index, task_index)
            pq.write_table(table, temp_path(data_path))
            staged.insert(0, (temp_path(data_path), data_path))

            stats = {fmt.STATE: numeric_stats(columns[fmt.STATE]), fmt.ACTION: numeric_stats(columns[fmt.ACTION])}
            stats |= {fmt.video_key(c): image_stats(np.stack(t)) for c, t in rec.thumbnails.items()}
            stats |= {name: numeric_stats(columns[name]) for name in fmt.SCALAR_FEATURES}
            row = eps.make_row(self.spec, self.layout, episode_index=index, task=rec.task, length=length,
                               from_index=from_index, fps=self.fps, success=success, stats=stats,
                               env=rec.env, seed=rec.seed)

            # Episode files first: nothing refers to them until info.json counts this episode.
            for tmp, final in staged:
                publish(tmp, final)
            # One row appended to one small episodes-table file and one episode's statistics merged: a
            # commit's cost does not grow with the dataset (a scene dataset holds thousands of episodes).
            rows = [*self._rows, row]
            new_row = eps.to_table([row], self.spec)
            if self._table is None:  # this writer's first commit: the file may hold earlier rows
                table = eps.to_table([*(r for r in self._rows if eps.location(r) == eps.location(row)), row],
                                     self.spec)
            elif eps.location(self._rows[-1]) == eps.location(row):
                table = pa.concat_tables([self._table, new_row]).combine_chunks()
            else:  # the first row of a new file
                table = new_row
            merged = aggregate_features([self._stats, stats] if self._stats else [stats])
            write_table_atomic(self.layout.episodes(*eps.location(row)), table)
            if tasks is not self._tasks:
                write_table_atomic(self.layout.tasks, fmt.tasks_table(tasks))
            write_json_atomic(self.layout.stats, to_json(merged))
            info = self._info | {"total_episodes": index + 1, "total_frames": from_index + length,
                                 "total_tasks": len(tasks), "splits": {"train": f"0:{index + 1}"}}
            write_json_atomic(self.layout.info, info)  # the commit point
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            self._discard(rec)
            raise
        self._info, self._rows, self._table, self._stats, self._tasks = info, rows, table, merged, tasks
        self._recording = None
        return index

    def _data_table(self, rec: _Recording, from_index: int, task_index: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
        length = len(rec.actions)
        frame_index = np.arange(length, dtype=np.int64)
        columns = {
            fmt.STATE: np.stack(rec.states),
            fmt.ACTION: np.stack(rec.actions),
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(length, rec.episode_index, np.int64),
            "index": from_index + frame_index,
            "task_index": np.full(length, task_index, np.int64),
        }
        arrays = {
            name: pa.FixedSizeListArray.from_arrays(pa.array(columns[name].reshape(-1)), columns[name].shape[1])
            for name in (fmt.STATE, fmt.ACTION)
        }
        for cam in self.depth_cameras:
            for key, frames in ((fmt.depth_key(cam), rec.depth[cam]), (fmt.intrinsics_key(cam), rec.intrinsics[cam]),
                                (fmt.extrinsics_key(cam), rec.extrinsics[cam])):
                flat = np.stack(frames).reshape(length, -1)
                arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
        arrays |= {name: pa.array(columns[name]) for name in fmt.SCALAR_FEATURES}
        arrays |= {"language_motion": pa.array(rec.language_motion, pa.string()),
                   "subtask": pa.array(rec.subtask, pa.string()),
                   "corrections": pa.array(rec.corrections, pa.string())}
        return pa.table(arrays), columns

    def discard_episode(self) -> None:
        """Drop the episode in progress; nothing of it reaches the dataset."""
        self._discard(self._require_recording("discard_episode"))

    def _discard(self, rec: _Recording) -> None:
        for w in rec.videos.values():
            w.abort()
        self._recording = None

    def _require_recording(self, what: str) -> _Recording:
        self._check_open()
        if self._recording is None:
            raise RuntimeError(f"{what}() needs an episode in progress; call start_episode(task) first")
        return self._recording

    def _check_open(self) -> None:
        if self._lock is None:
            raise RuntimeError(f"this DatasetWriter for {self.root} is closed; open a new one to append")

    # -------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Release the dataset. An episode still in progress is discarded (it has no outcome yet)."""
        if self._lock is None:
            return
        if self._recording is not None:
            log.warning("%s: discarding unfinished episode %d on close", self.root, self._recording.episode_index)
            self._discard(self._recording)
        self._lock.release()
        self._lock = None

    def __enter__(self) -> DatasetWriter:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
