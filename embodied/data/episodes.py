"""The episodes table (meta/episodes/chunk-CCC/file-FFF.parquet, in several files): one row per episode.

Columns follow LeRobot v3.0 (``episode_index``, ``tasks``, ``length``,
``data/chunk_index``, ``data/file_index``, ``dataset_from_index``,
``dataset_to_index``, ``videos/<key>/{chunk_index,file_index,from_timestamp,
to_timestamp}``, ``meta/episodes/{chunk_index,file_index}``,
``stats/<feature>/<stat>``) plus our ``success`` and the episode's provenance,
``env`` and ``seed`` (the registered env and the reset seed that made it;
null when unknown, as for teleoperated episodes and datasets written before
these columns existed). Rows are plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from embodied.data import format as fmt
from embodied.data.errors import DatasetError, missing
from embodied.data.stats import STAT_NAMES, Stats
from embodied.types import EmbodimentSpec

Row = dict[str, Any]
PROVENANCE = ("env", "seed")  # optional columns: tables written before them read as null


def stats_features(spec: EmbodimentSpec) -> list[str]:
    """Features that get normalisation statistics (every numeric and image feature)."""
    return [fmt.STATE, fmt.ACTION, *(fmt.video_key(c) for c in spec.camera_names), *fmt.SCALAR_FEATURES]


def schema(spec: EmbodimentSpec) -> pa.Schema:
    fields = [
        ("episode_index", pa.int64()),
        ("tasks", pa.list_(pa.string())),
        ("length", pa.int64()),
        ("data/chunk_index", pa.int64()),
        ("data/file_index", pa.int64()),
        ("dataset_from_index", pa.int64()),
        ("dataset_to_index", pa.int64()),
    ]
    for cam in spec.camera_names:
        key = fmt.video_key(cam)
        fields += [(f"videos/{key}/chunk_index", pa.int64()), (f"videos/{key}/file_index", pa.int64()),
                   (f"videos/{key}/from_timestamp", pa.float64()), (f"videos/{key}/to_timestamp", pa.float64())]
    fields += [("meta/episodes/chunk_index", pa.int64()), ("meta/episodes/file_index", pa.int64()),
               ("success", pa.bool_())]
    fields += [(name, pa.string() if name == "env" else pa.int64()) for name in PROVENANCE]
    for feature in stats_features(spec):
        for stat in STAT_NAMES:
            fields.append((f"stats/{feature}/{stat}", pa.list_(pa.int64() if stat == "count" else pa.float64())))
    return pa.schema(fields)


def make_row(spec: EmbodimentSpec, layout: fmt.Layout, *, episode_index: int, task: str, length: int,
             from_index: int, fps: float, success: bool, stats: Mapping[str, Stats], env: str | None = None,
             seed: int | None = None) -> Row:
    chunk, file = layout.chunk_file(episode_index)
    row: Row = {
        "episode_index": episode_index,
        "tasks": [task],
        "length": length,
        "data/chunk_index": chunk,
        "data/file_index": file,
        "dataset_from_index": from_index,
        "dataset_to_index": from_index + length,
    }
    for cam in spec.camera_names:
        key = fmt.video_key(cam)
        row |= {f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": length / fps}
    meta_chunk, meta_file = layout.episodes_chunk_file(episode_index)
    row |= {"meta/episodes/chunk_index": meta_chunk, "meta/episodes/file_index": meta_file,
            "success": bool(success), "env": env, "seed": None if seed is None else int(seed)}
    for feature, s in stats.items():
        for stat in STAT_NAMES:
            row[f"stats/{feature}/{stat}"] = np.asarray(s[stat]).reshape(-1).tolist()
    return row


def to_table(rows: Sequence[Row], spec: EmbodimentSpec) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema(spec))


def row_stats(row: Row, spec: EmbodimentSpec) -> dict[str, Stats]:
    """The per-episode statistics stored in a row, in their natural shapes."""
    images = {fmt.video_key(c) for c in spec.camera_names}
    out = {}
    for feature in stats_features(spec):
        s = {stat: np.asarray(row[f"stats/{feature}/{stat}"]) for stat in STAT_NAMES}
        if feature in images:
            s = {k: (v if k == "count" else v.reshape(-1, 1, 1)) for k, v in s.items()}
        out[feature] = s
    return out


def location(row: Row) -> tuple[int, int]:
    """(chunk, file) of the episodes-table file that holds the row."""
    return int(row["meta/episodes/chunk_index"]), int(row["meta/episodes/file_index"])


def read_rows(layout: fmt.Layout, total_episodes: int, spec: EmbodimentSpec) -> list[Row]:
    """The committed rows (episode_index < total_episodes) of every episodes-table file, in order; extra rows
    from a crash are dropped."""
    if total_episodes == 0:
        return []
    paths = layout.episodes_files()
    if not paths:
        raise missing(layout.episodes(0, 0), fmt.BROKEN_META_HINT)
    needed = [f.name for f in schema(spec) if f.name not in PROVENANCE]
    rows = []
    for path in paths:
        table = fmt.read_table(path, "an episodes table", fmt.BROKEN_META_HINT)
        fmt.require_columns(table, needed, path, fmt.BROKEN_META_HINT)
        present = [name for name in PROVENANCE if name in table.column_names]
        rows += [dict.fromkeys(PROVENANCE) | r for r in table.select(needed + present).to_pylist()
                 if r["episode_index"] < total_episodes]
    rows.sort(key=lambda r: r["episode_index"])
    if [r["episode_index"] for r in rows] != list(range(total_episodes)):
        found = [r["episode_index"] for r in rows]
        raise DatasetError(
            f"{layout.episodes_dir}: info.json says {total_episodes} episodes but the episodes tables hold "
            f"{len(found)} rows with episode indices {found[:20]}{'...' if len(found) > 20 else ''}. "
            f"{fmt.BROKEN_META_HINT}",
            layout.episodes_dir,
        )
    return rows
