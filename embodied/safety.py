"""The one safety filter between every policy and every embodiment, sim included.

Every action passes through `SafetyFilter.filter` before it reaches an
embodiment. The filter never raises on bad numbers: it replaces or limits the
action and reports what it did, so the loop keeps control of the arm.

What it enforces, per control mode:

- all modes: a NaN/inf anywhere rejects the whole action and holds the arm
  where it is (gripper unchanged); the gripper opening is clipped to [0, 1].
- ``ee_delta``: the translation (m) and rotation (rad) of one tick are scaled
  down, direction kept, until every axis is inside the action spec's bounds
  and the norms are under the configured caps; the commanded target
  ``ee_pos + Δpos`` is clipped into the workspace box.
- ``ee_abs``: the target is clipped into the workspace box and moved at most
  the per-tick caps away from the current pose.
- ``joint_pos``: targets are clipped to the spec's joint bounds and at most
  ``max_joint_step`` rad away from the current joints.

Each limit that changed the action is reported as an `Intervention`; the
runner puts them into the step info under ``"safety"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from embodied.types import Action, ActionSpec, Observation


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    """Limits on top of the action spec's own bounds (units: m, rad, per tick).

    workspace_low/high: box for the end-effector position in the base frame;
    None means "the embodiment's own workspace" (see `for_embodiment`).
    max_translation/max_rotation: caps on the norm of one tick's motion; None
    means the action spec's per-axis bounds alone.
    """

    workspace_low: tuple[float, float, float] | None = None
    workspace_high: tuple[float, float, float] | None = None
    max_translation: float | None = None
    max_rotation: float | None = None
    max_joint_step: float = 0.1
    gripper_low: float = 0.0
    gripper_high: float = 1.0

    def __post_init__(self) -> None:
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise ValueError("give both workspace_low and workspace_high, or neither")
        if self.workspace_low is not None and np.any(np.asarray(self.workspace_low) > np.asarray(self.workspace_high)):
            raise ValueError(f"workspace_low {self.workspace_low} exceeds workspace_high {self.workspace_high}")


@dataclasses.dataclass(frozen=True)
class Intervention:
    """One limit the filter applied: `kind` names it, `detail` says by how much."""

    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail}


def _limit_vector(v: np.ndarray, axis_bound: np.ndarray, norm_cap: float | None) -> tuple[np.ndarray, float]:
    """Scale `v` down (keeping its direction) to fit per-axis bounds and a norm cap.

    Returns the limited vector and the scale applied (1.0 = unchanged).
    """
    scale = 1.0
    mag = np.abs(v)
    over = mag > axis_bound
    if np.any(over):
        scale = min(scale, float(np.min(axis_bound[over] / mag[over])))
    if norm_cap is not None:
        n = float(np.linalg.norm(v))
        if n > norm_cap:
            scale = min(scale, norm_cap / n)
    return (v * scale).astype(np.float32), scale


class SafetyFilter:
    """Limits actions for one embodiment spec. Stateless apart from counters."""

    def __init__(self, action_spec: ActionSpec, config: SafetyConfig | None = None):
        self.spec = action_spec
        self.config = config or SafetyConfig()
        self.total_interventions = 0

    @classmethod
    def for_embodiment(cls, embodiment: Any, config: SafetyConfig | None = None) -> SafetyFilter:
        """Build a filter, taking the workspace box from the embodiment when the config has none.

        An embodiment may publish ``workspace`` as ``(low (3,), high (3,))`` in metres.
        """
        config = config or SafetyConfig()
        ws = getattr(embodiment, "workspace", None)
        if config.workspace_low is None and ws is not None:
            low, high = ws
            config = dataclasses.replace(
                config, workspace_low=tuple(map(float, low)), workspace_high=tuple(map(float, high))
            )
        return cls(embodiment.spec.action, config)

    def filter(self, action: Action, obs: Observation) -> tuple[Action, list[Intervention]]:
        """Return the action that may reach the embodiment, and what was changed.

        action: one tick, shape (D,). obs: the observation the action responds
        to (its state gives the current pose for the workspace and step limits).
        """
        if action.is_chunk:
            raise ValueError("filter one tick at a time: split the chunk with action.steps()")
        if action.spec.mode != self.spec.mode or action.spec.dim != self.spec.dim:
            raise ValueError(
                f"action is {action.spec.mode}/{action.spec.dim}-D but this filter guards "
                f"{self.spec.mode}/{self.spec.dim}-D actions"
            )
        v = action.value.astype(np.float32).copy()
        out: list[Intervention] = []
        if not np.all(np.isfinite(v)):
            bad = [i for i in range(v.size) if not np.isfinite(v[i])]
            v = self._hold(obs)
            out.append(Intervention("non_finite", f"dims {bad} were NaN/inf; holding position"))
        elif self.spec.mode == "ee_delta":
            v = self._ee_delta(v, obs, out)
        elif self.spec.mode == "ee_abs":
            v = self._ee_abs(v, obs, out)
        else:
            v = self._joint_pos(v, obs, out)
        g = float(v[-1])
        gc = float(np.clip(g, self.config.gripper_low, self.config.gripper_high))
        if gc != g:
            v[-1] = gc
            out.append(Intervention("gripper_limit", f"gripper {g:.3f} clipped to {gc:.3f}"))
        self.total_interventions += len(out)
        return Action(v, self.spec), out

    def _hold(self, obs: Observation) -> np.ndarray:
        grip = float(obs.state["gripper"][0]) if "gripper" in obs.state else 1.0
        if self.spec.mode == "ee_delta":
            v = np.zeros(self.spec.dim, np.float32)
        elif self.spec.mode == "ee_abs":
            from embodied.geometry import quat_to_axis_angle

            v = np.concatenate([obs.state["ee_pos"], quat_to_axis_angle(obs.state["ee_quat"]), [0.0]])
        else:
            v = np.concatenate([obs.state["joint_pos"][: self.spec.dim - 1], [0.0]])
        v = v.astype(np.float32)
        v[-1] = grip
        return v

    def _workspace_clip(self, target: np.ndarray, out: list[Intervention]) -> np.ndarray:
        if self.config.workspace_low is None:
            return target
        low = np.asarray(self.config.workspace_low, np.float32)
        high = np.asarray(self.config.workspace_high, np.float32)
        clipped = np.clip(target, low, high)
        if not np.array_equal(clipped, target):
            out.append(
                Intervention(
                    "workspace",
                    f"target {np.round(target, 3).tolist()} clipped to box "
                    f"{np.round(low, 3).tolist()}..{np.round(high, 3).tolist()} m",
                )
            )
        return clipped

    def _ee_delta(self, v: np.ndarray, obs: Observation, out: list[Intervention]) -> np.ndarray:
        high = self.spec.high_array
        dpos, s = _limit_vector(v[:3], high[:3], self.config.max_translation)
        if s < 1.0:
            out.append(Intervention("translation_limit", f"translation scaled by {s:.3f}"))
        drot, s = _limit_vector(v[3:6], high[3:6], self.config.max_rotation)
        if s < 1.0:
            out.append(Intervention("rotation_limit", f"rotation scaled by {s:.3f}"))
        if "ee_pos" in obs.state:
            ee = obs.state["ee_pos"].astype(np.float32)
            target = ee + dpos
            clipped = self._workspace_clip(target, out)
            if not np.array_equal(clipped, target):
                # An arm already outside the box is brought back no faster than one tick allows.
                dpos, _ = _limit_vector(clipped - ee, high[:3], self.config.max_translation)
        v[:3], v[3:6] = dpos, drot
        return v

    def _ee_abs(self, v: np.ndarray, obs: Observation, out: list[Intervention]) -> np.ndarray:
        from embodied.geometry import quat_to_axis_angle, rotation_between_axis_angles

        v[:6] = np.clip(v[:6], self.spec.low_array[:6], self.spec.high_array[:6])
        target = self._workspace_clip(v[:3], out)
        ee = obs.state["ee_pos"].astype(np.float32)
        step_cap = self.config.max_translation
        if step_cap is not None:
            d, s = _limit_vector(target - ee, np.full(3, np.inf, np.float32), step_cap)
            if s < 1.0:
                out.append(Intervention("translation_limit", f"step toward target scaled by {s:.3f}"))
            target = ee + d
        v[:3] = target
        if self.config.max_rotation is not None:
            current = quat_to_axis_angle(obs.state["ee_quat"])
            v[3:6] = rotation_between_axis_angles(current, v[3:6], self.config.max_rotation, out)
        return v

    def _joint_pos(self, v: np.ndarray, obs: Observation, out: list[Intervention]) -> np.ndarray:
        n = self.spec.dim - 1
        lo, hi = self.spec.low_array[:n], self.spec.high_array[:n]
        q = np.clip(v[:n], lo, hi)
        if not np.array_equal(q, v[:n]):
            out.append(Intervention("joint_limit", "joint targets clipped to the spec's joint bounds"))
        if "joint_pos" in obs.state:
            cur = obs.state["joint_pos"][:n].astype(np.float32)
            step = np.clip(q - cur, -self.config.max_joint_step, self.config.max_joint_step)
            if not np.allclose(step, q - cur):
                out.append(Intervention("joint_step_limit", f"joint step capped at {self.config.max_joint_step} rad"))
            q = cur + step
        v[:n] = q
        return v
