"""Normalisation that is part of the checkpoint and fails loudly.

A `Normalizer` holds per-feature statistics (from a dataset's
meta/stats.json) and a mode per feature. A feature or statistic that is
missing is a `MissingStatisticError`, never a silent pass-through (LeRobot's
normaliser returned the tensor unchanged, and published checkpoints ran
unnormalised for months).

Modes, for x of shape (..., D) with per-dimension statistics:

- ``mean_std``:   x' = (x - mean) / (std + eps)
- ``min_max``:    x' = 2 (x - min) / (max - min + eps) - 1, in [-1, 1]
- ``bounds_q99``: x' = clip(2 (x - q01) / (q99 - q01 + eps) - 1, -1, 1)
  (OpenVLA's BOUNDS_Q99; unnormalising maps [-1, 1] back to [q01, q99])
- ``identity``:   x' = x (an explicit choice, e.g. for images already in [0, 1])

Dimensions listed in ``mask`` (per feature) are left as they are in every
mode (e.g. a binary gripper).

Works on numpy arrays and torch tensors alike (statistics are converted to
the input's type and device on first use).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

MODES = ("mean_std", "min_max", "bounds_q99", "identity")
_NEEDS = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "bounds_q99": ("q01", "q99"), "identity": ()}
EPS = 1e-8


class MissingStatisticError(KeyError):
    """A feature or statistic needed for normalisation is absent."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclasses.dataclass
class Normalizer:
    """stats: {feature: {stat: (D,) array}}; modes: {feature: mode}; mask: {feature: dims kept raw}."""

    stats: Mapping[str, Mapping[str, Any]]
    modes: Mapping[str, str]
    mask: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        clean: dict[str, dict[str, np.ndarray]] = {}
        for feature, mode in self.modes.items():
            if mode not in MODES:
                raise ValueError(f"normalisation mode {mode!r} for {feature!r} is not one of {MODES}")
            have = self.stats.get(feature)
            if have is None and mode != "identity":
                raise MissingStatisticError(
                    f"no statistics for feature {feature!r} (needed for {mode}); the dataset's stats.json or the "
                    f"checkpoint's normalization file lacks it. Recompute stats or choose another mode."
                )
            need = _NEEDS[mode]
            missing = [s for s in need if have is None or s not in have]
            if missing:
                raise MissingStatisticError(
                    f"feature {feature!r} lacks statistics {missing} needed for {mode} normalisation"
                )
            clean[feature] = {s: np.asarray(have[s], np.float32) for s in need}
        self._stats = clean
        self._cache: dict[tuple, dict[str, Any]] = {}

    def _get(self, feature: str, like: Any) -> tuple[str, dict[str, Any]]:
        if feature not in self.modes:
            raise MissingStatisticError(
                f"feature {feature!r} has no normalisation mode; known features: {sorted(self.modes)}"
            )
        mode = self.modes[feature]
        if _is_torch(like):
            key = (feature, str(like.device), str(like.dtype))
            if key not in self._cache:
                import torch

                self._cache[key] = {s: torch.as_tensor(v, device=like.device, dtype=like.dtype)
                                    for s, v in self._stats[feature].items()}
            return mode, self._cache[key]
        return mode, self._stats[feature]

    def normalize(self, feature: str, x: Any) -> Any:
        mode, s = self._get(feature, x)
        if mode == "identity":
            return x
        if mode == "mean_std":
            y = (x - s["mean"]) / (s["std"] + EPS)
        elif mode == "min_max":
            y = 2 * (x - s["min"]) / (s["max"] - s["min"] + EPS) - 1
        else:
            y = 2 * (x - s["q01"]) / (s["q99"] - s["q01"] + EPS) - 1
            y = y.clip(-1, 1)
        return self._keep_masked(feature, x, y)

    def unnormalize(self, feature: str, y: Any) -> Any:
        mode, s = self._get(feature, y)
        if mode == "identity":
            return y
        if mode == "mean_std":
            x = y * (s["std"] + EPS) + s["mean"]
        elif mode == "min_max":
            x = (y + 1) / 2 * (s["max"] - s["min"] + EPS) + s["min"]
        else:
            x = (y.clip(-1, 1) + 1) / 2 * (s["q99"] - s["q01"] + EPS) + s["q01"]
        return self._keep_masked(feature, y, x)

    def _keep_masked(self, feature: str, src: Any, out: Any) -> Any:
        dims = self.mask.get(feature, ())
        if not dims:
            return out
        out = out.clone() if _is_torch(out) else np.array(out, copy=True)
        out[..., list(dims)] = src[..., list(dims)]
        return out

    # --- checkpoint form -------------------------------------------------------
    def to_tensors(self) -> dict[str, np.ndarray]:
        """Flat {"feature/stat": array} for a safetensors file."""
        return {f"{f}/{s}": v for f, d in self._stats.items() for s, v in d.items()}

    def config(self) -> dict[str, Any]:
        return {"modes": dict(self.modes), "mask": {k: list(v) for k, v in self.mask.items()}}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any], config: Mapping[str, Any]) -> Normalizer:
        stats: dict[str, dict[str, np.ndarray]] = {}
        for key, v in tensors.items():
            feature, _, stat = key.rpartition("/")
            stats.setdefault(feature, {})[stat] = np.asarray(v)
        return cls(stats, dict(config["modes"]), {k: tuple(v) for k, v in config.get("mask", {}).items()})


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")
