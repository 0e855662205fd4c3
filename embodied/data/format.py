"""The LeRobotDataset v3.0 layout: paths, info.json, features, tables.

A dataset folder holds::

    meta/info.json                  schema, fps, totals, path templates, our spec
    meta/stats.json                 normalisation statistics per feature
    meta/tasks.parquet              task string <-> task_index
    meta/episodes/chunk-CCC/file-FFF.parquet   one row per episode, 100 rows per file
    data/chunk-CCC/file-FFF.parquet            one file per episode here
    videos/observation.images.<cam>/chunk-CCC/file-FFF.mp4

Episode ``i`` lives in chunk ``i // chunks_size``, file ``i % chunks_size``
(one episode per file is valid v3: where each episode is comes from the
episodes table). Its row of the episodes table lives in metadata file
``m = i // episodes_per_file`` (chunk ``m // chunks_size``, file
``m % chunks_size``), so that recording an episode rewrites one small file
whatever the dataset's size; the row records where it is, as in LeRobot, and
readers take the rows of every file. Our additions are the per-step string columns
``language_motion``, ``subtask``, ``corrections`` (JSON), the ``success``
column of the episodes table and the ``embodied`` key of info.json.

A dataset recorded with depth (``DatasetWriter(depth=True)``) also holds,
per frame and for each camera whose spec has depth, the depth image
``observation.depth.<cam>`` (uint16 millimetres, as RGB-D cameras give it,
0 = no reading) and that instant's pinhole model
``observation.intrinsics.<cam>`` (3x3 K, pixels) and
``observation.extrinsics.<cam>`` (4x4 T_world_cam, OpenCV axes) in the data
parquet files, so that a pixel can be lifted to a point in the world.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embodied.data.errors import DatasetError, damaged, missing
from embodied.types import EmbodimentSpec

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DEFAULT_CHUNKS_SIZE = 1000
# Rows per episodes-table file: a commit rewrites one such file (a few ms), and a
# reader opening 10,000 episodes opens 100 files.
EPISODES_PER_FILE = 100
# LeRobot's defaults; advisory here, since every episode gets its own files.
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200

EXTRA_KEY = "embodied"  # our own info.json key: the EmbodimentSpec and our format version
EXTRA_VERSION = 1

STATE = "observation.state"
ACTION = "action"
IMAGE_PREFIX = "observation.images."
SCALAR_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64",
                   "index": "int64", "task_index": "int64"}
STRING_FEATURES = ("language_motion", "subtask", "corrections")
DEPTH_PREFIX = "observation.depth."
INTRINSICS_PREFIX = "observation.intrinsics."
EXTRINSICS_PREFIX = "observation.extrinsics."
DEPTH_UNIT_M = 0.001  # stored depth is uint16 millimetres: 1 mm steps up to 65.5 m

BROKEN_META_HINT = (
    "The metadata is damaged: restore it from a backup or copy; the episode files under data/ and videos/ "
    "are untouched."
)
BROKEN_EPISODE_HINT = "This episode's file is damaged: restore it from a backup, or re-record the episode."


def video_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def depth_key(camera: str) -> str:
    return DEPTH_PREFIX + camera


def intrinsics_key(camera: str) -> str:
    return INTRINSICS_PREFIX + camera


def extrinsics_key(camera: str) -> str:
    return EXTRINSICS_PREFIX + camera


def depth_cameras(spec: EmbodimentSpec) -> tuple[str, ...]:
    """The cameras whose depth a dataset recorded with depth holds: those whose spec has depth."""
    return tuple(c.name for c in spec.cameras if c.depth)


def recorded_depth(info: Mapping[str, Any]) -> tuple[str, ...]:
    """The cameras whose depth and calibration this dataset's info.json lists (() without depth)."""
    return tuple(k[len(DEPTH_PREFIX):] for k in info.get("features", {}) if k.startswith(DEPTH_PREFIX))


def state_names(spec: EmbodimentSpec) -> list[str]:
    """Names of the flat ``observation.state`` vector: ``<key>.<i>`` in spec order."""
    return [f"{key}.{i}" for key, dim in spec.state.items() for i in range(dim)]


def state_dim(spec: EmbodimentSpec) -> int:
    return sum(spec.state.values())


def state_indices(spec: EmbodimentSpec, keys: Sequence[str]) -> list[int]:
    """Positions in the flat (S,) state of the entries `keys` (spec order kept); () = every position a
    policy may read, i.e. all but the spec's privileged keys (naming one selects it anyway).

    A policy that reads only some of the state (proprioception alone, say)
    selects them with these; a loss that predicts privileged state finds its
    targets with ``state_indices(spec, spec.privileged)``.
    """
    unknown = [k for k in keys if k not in spec.state]
    if unknown:
        raise KeyError(f"state keys {unknown} are not in {spec.name!r}'s state; it has {list(spec.state)}")
    out, i = [], 0
    for key, dim in spec.state.items():
        if key in keys or (not keys and key not in spec.privileged):
            out.extend(range(i, i + dim))
        i += dim
    return out


def flatten_state(state: Mapping[str, np.ndarray], spec: EmbodimentSpec) -> np.ndarray:
    """{key: (d,)} -> (S,) float32, the keys concatenated in spec order.

    A privileged key the state lacks (a real robot driven by a policy trained
    in simulation) becomes zeros: no policy input comes from it.
    """
    return np.concatenate([np.asarray(state[k], np.float32).reshape(-1) if k in state or k not in spec.privileged
                           else np.zeros(d, np.float32) for k, d in spec.state.items()])


def split_state(flat: np.ndarray, spec: EmbodimentSpec) -> dict[str, np.ndarray]:
    """(T, S) -> {key: (T, d)}, the inverse of `flatten_state` applied per row."""
    out, i = {}, 0
    for key, dim in spec.state.items():
        out[key] = flat[:, i : i + dim]
        i += dim
    return out


def fps_value(fps: float) -> int | float:
    """LeRobot stores fps as an int; keep an int whenever the rate is whole."""
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return int(fps) if fps.is_integer() else fps


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each file of a dataset lives."""

    root: Path
    chunks_size: int = DEFAULT_CHUNKS_SIZE
    episodes_per_file: int = EPISODES_PER_FILE

    def chunk_file(self, episode_index: int) -> tuple[int, int]:
        """(chunk, file) of the episode's data and video files."""
        return divmod(episode_index, self.chunks_size)

    def episodes_chunk_file(self, episode_index: int) -> tuple[int, int]:
        """(chunk, file) of the episodes-table file that a new row for this episode goes to."""
        return divmod(episode_index // self.episodes_per_file, self.chunks_size)

    @property
    def info(self) -> Path:
        return self.root / INFO_PATH

    @property
    def stats(self) -> Path:
        return self.root / STATS_PATH

    @property
    def tasks(self) -> Path:
        return self.root / TASKS_PATH

    @property
    def episodes_dir(self) -> Path:
        return self.root / "meta/episodes"

    def episodes(self, chunk_index: int, file_index: int) -> Path:
        return self.root / EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)

    def episodes_files(self) -> list[Path]:
        """The episodes-table files present, in (chunk, file) order."""
        return sorted(self.episodes_dir.glob("chunk-*/file-*.parquet"))

    def data(self, chunk_index: int, file_index: int) -> Path:
        return self.root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)

    def video(self, camera: str, chunk_index: int, file_index: int) -> Path:
        return self.root / VIDEO_PATH.format(
            video_key=video_key(camera), chunk_index=chunk_index, file_index=file_index
        )


def build_features(spec: EmbodimentSpec, fps: float, video_info: Mapping[str, dict[str, Any]],
                   depth: bool = False) -> dict[str, Any]:
    """info.json ``features``: {name: {dtype, shape, names[, info]}}; video_info is per camera; `depth`:
    also each depth camera's depth image and calibration (see the module docstring)."""
    action_names = list(spec.action.names) or [f"a{i}" for i in range(spec.action.dim)]
    features: dict[str, Any] = {
        STATE: {"dtype": "float32", "shape": [state_dim(spec)], "names": state_names(spec)},
        ACTION: {"dtype": "float32", "shape": [spec.action.dim], "names": action_names},
    }
    for cam in spec.cameras:
        features[video_key(cam.name)] = {
            "dtype": "video",
            "shape": [cam.height, cam.width, 3],
            "names": ["height", "width", "channels"],
            "info": dict(video_info[cam.name]),
        }
    for cam in (c for c in spec.cameras if depth and c.depth):
        features[depth_key(cam.name)] = {"dtype": "uint16", "shape": [cam.height, cam.width],
                                         "names": ["height", "width"], "info": {"unit": "mm", "missing": 0}}
        features[intrinsics_key(cam.name)] = {"dtype": "float32", "shape": [3, 3], "names": None}
        features[extrinsics_key(cam.name)] = {"dtype": "float32", "shape": [4, 4], "names": None}
    for name, dtype in SCALAR_FEATURES.items():
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    for name in STRING_FEATURES:
        features[name] = {"dtype": "string", "shape": [1], "names": None}
    return features


def new_info(spec: EmbodimentSpec, fps: float, robot_type: str, video_info: Mapping[str, dict[str, Any]],
             chunks_size: int = DEFAULT_CHUNKS_SIZE, demonstrations: bool = True, depth: bool = False
             ) -> dict[str, Any]:
    """info.json of an empty dataset (`demonstrations`: see `holds_demonstrations`; `depth`: see
    `build_features`)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps_value(fps),
        "splits": {"train": "0:0"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if spec.cameras else None,
        "features": build_features(spec, fps, video_info, depth),
        EXTRA_KEY: {"version": EXTRA_VERSION, "embodiment_spec": spec.to_dict(), "demonstrations": demonstrations},
    }


def holds_demonstrations(info: Mapping[str, Any]) -> bool:
    """Whether the recorded actions are demonstrations to imitate (True for LeRobot datasets and ours by
    default), or only what moved the robot while scenes were recorded for perception (a scene dataset)."""
    return bool(info.get(EXTRA_KEY, {}).get("demonstrations", True))


_REQUIRED_INFO = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
                  "chunks_size")


def read_info(root: Path) -> dict[str, Any]:
    """Load and check meta/info.json; any problem is a DatasetError naming the file."""
    path = Path(root) / INFO_PATH
    if not path.is_file():
        if not Path(root).exists():
            raise DatasetError(f"{root}: no dataset here (the folder does not exist).", root)
        raise missing(path, f"{root} is not a dataset (or its metadata was deleted); "
                            "point at a folder written by DatasetWriter.")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged(path, "is not valid JSON", e, BROKEN_META_HINT) from None
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}. {BROKEN_META_HINT}", path)
    absent = [k for k in _REQUIRED_INFO if k not in info]
    if absent:
        raise DatasetError(f"{path}: lacks the keys {absent}. {BROKEN_META_HINT}", path)
    if info["codebase_version"] != CODEBASE_VERSION:
        raise DatasetError(
            f"{path}: codebase_version is {info['codebase_version']!r}; this reader handles {CODEBASE_VERSION!r}. "
            "Convert the dataset with LeRobot's convert_dataset_v21_to_v30 script first.",
            path,
        )
    if EXTRA_KEY not in info or "embodiment_spec" not in info[EXTRA_KEY]:
        raise DatasetError(
            f"{path}: has no {EXTRA_KEY!r} key with the embodiment spec, so it was not written by "
            "embodied.data.DatasetWriter (or LeRobot rewrote info.json and dropped it). "
            f"Add {{\"{EXTRA_KEY}\": {{\"embodiment_spec\": ...}}}} from the robot's EmbodimentSpec.to_dict().",
            path,
        )
    return info


def spec_from_info(info: Mapping[str, Any], path: Path) -> EmbodimentSpec:
    try:
        return EmbodimentSpec.from_dict(info[EXTRA_KEY]["embodiment_spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise damaged(path, "holds an unreadable embodiment spec", e, BROKEN_META_HINT) from None


def read_table(path: Path, what: str, hint: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a parquet file, turning any failure into a DatasetError naming it."""
    if not path.is_file():
        raise missing(path, hint)
    try:
        # ParquetFile, not pq.read_table: the dataset machinery costs ~5x the read of a one-episode file.
        with pq.ParquetFile(path) as f:
            table = f.read(columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise damaged(path, f"cannot be read as {what}", e, hint) from None
    return table


def require_columns(table: pa.Table, columns: Sequence[str], path: Path, hint: str) -> None:
    absent = [c for c in columns if c not in table.column_names]
    if absent:
        raise DatasetError(f"{path}: lacks the columns {absent}. {hint}", path)


def list_column(table: pa.Table, name: str, width: int, dtype: Any, path: Path) -> np.ndarray:
    """A fixed- or variable-size list column as a (rows, width) array."""
    col = table.column(name).combine_chunks()
    try:
        values = col.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        return values.reshape(len(col), width)
    except (pa.ArrowException, ValueError) as e:
        raise damaged(path, f"has a malformed {name!r} column (expected {width} values per row)", e,
                      BROKEN_EPISODE_HINT) from None


def tasks_table(tasks: Sequence[str]) -> pa.Table:
    """meta/tasks.parquet; pandas metadata makes `task` the index, as LeRobot's reader expects."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def read_tasks(layout: Layout, total_tasks: int) -> list[str]:
    """Task strings by task_index (only the first `total_tasks`, the committed ones)."""
    if total_tasks == 0:
        return []
    table = read_table(layout.tasks, "a tasks table", BROKEN_META_HINT)
    require_columns(table, ["task_index", "task"], layout.tasks, BROKEN_META_HINT)
    pairs = sorted(zip(table.column("task_index").to_pylist(), table.column("task").to_pylist()))
    tasks = [t for i, t in pairs if i < total_tasks]
    if [i for i, _ in pairs[:total_tasks]] != list(range(total_tasks)):
        raise DatasetError(
            f"{layout.tasks}: task_index should run 0..{total_tasks - 1} but holds "
            f"{[i for i, _ in pairs][:10]}... {BROKEN_META_HINT}",
            layout.tasks,
        )
    return tasks
