"""Normalisation statistics, per episode and aggregated over a dataset.

Each feature gets min, max, mean, std, count, q01 and q99. Numeric features
(N, D) give (D,) arrays; images give per-channel (3, 1, 1) arrays of pixel
values scaled to [0, 1] (LeRobot's layout). Per-episode statistics are kept
in the episodes table, so the dataset statistics can always be rebuilt from
the committed episodes alone; quantiles are aggregated as count-weighted
means of the per-episode quantiles (an approximation, as LeRobot does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q99")
Stats = dict[str, np.ndarray]

# Image statistics use thumbnails: a per-channel summary does not need every pixel.
THUMBNAIL_SIDE = 64


def numeric_stats(x: np.ndarray) -> Stats:
    """x: (N, D) or (N,) numbers -> each statistic as a (D,) float64 array; count is (1,) int64."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"statistics need a non-empty (N, D) array, got shape {x.shape}")
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return {
        "min": x.min(0),
        "max": x.max(0),
        "mean": x.mean(0),
        "std": x.std(0),
        "count": np.array([len(x)], np.int64),
        "q01": q01,
        "q99": q99,
    }


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> a strided copy at most THUMBNAIL_SIDE pixels on its longest side."""
    step = max(1, -(-max(image.shape[:2]) // THUMBNAIL_SIDE))
    return np.ascontiguousarray(image[::step, ::step])


def image_stats(frames: np.ndarray) -> Stats:
    """frames: (N, h, w, 3) uint8 -> per-channel statistics of value/255, each (3, 1, 1); count = N frames."""
    frames = np.asarray(frames)
    pixels = frames.reshape(-1, frames.shape[-1]).astype(np.float64) / 255.0
    stats = {k: v.reshape(-1, 1, 1) for k, v in numeric_stats(pixels).items() if k != "count"}
    stats["count"] = np.array([len(frames)], np.int64)
    return stats


def aggregate(parts: Sequence[Mapping[str, np.ndarray]]) -> Stats:
    """Combine statistics of disjoint sets of frames into those of their union."""
    if not parts:
        raise ValueError("no statistics to aggregate")
    n = np.array([float(p["count"][0]) for p in parts])
    w = (n / n.sum()).reshape(-1, *([1] * np.ndim(parts[0]["mean"])))
    means = np.stack([p["mean"] for p in parts])
    mean = (w * means).sum(0)
    # Pooled variance: within-part variance plus the spread of the part means.
    var = (w * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(0)
    return {
        "min": np.min(np.stack([p["min"] for p in parts]), 0),
        "max": np.max(np.stack([p["max"] for p in parts]), 0),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(n.sum())], np.int64),
        "q01": (w * np.stack([p["q01"] for p in parts])).sum(0),
        "q99": (w * np.stack([p["q99"] for p in parts])).sum(0),
    }


def aggregate_features(episodes: Sequence[Mapping[str, Stats]]) -> dict[str, Stats]:
    """[{feature: stats}] per episode -> {feature: stats} over all of them."""
    if not episodes:
        return {}
    return {name: aggregate([ep[name] for ep in episodes]) for name in episodes[0]}


def to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {name: {k: np.asarray(v).tolist() for k, v in s.items()} for name, s in stats.items()}
