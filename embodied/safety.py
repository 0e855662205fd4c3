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
  ``max_joint_step`` rad away from the current joints; with joint velocity,
  acceleration and jerk limits configured, the tick's target is where a
  jerk-limited, time-optimal trajectory (ruckig) from the current joint
  state toward the policy's target is after one control period.
- velocity and acceleration (``ee_delta``): the per-tick caps are the
  velocity limit; ``max_translation_change`` / ``max_rotation_change`` cap
  how much one tick's motion may differ from the last executed one (an
  acceleration limit, m or rad per tick per tick), so a policy cannot
  reverse the arm at full speed in one tick.

The filter keeps per-slot memory (the last executed motion, the joint
acceleration) for these limits; `reset(slot)` forgets it at an episode start.

Each limit that changed the action is reported as an `Intervention`; the
runner puts them into the step info under ``"safety"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from embodied.types import Action, ActionSpec, Observation

RESYNC_RAD = 0.05  # the joint limiter restarts from the measured joints when they are this far from its own state


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
    max_translation_change: float | None = None   # m per tick, between consecutive ticks (acceleration)
    max_rotation_change: float | None = None      # rad per tick, between consecutive ticks
    max_joint_velocity: tuple[float, ...] | None = None       # rad/s per joint (ruckig, joint_pos mode)
    max_joint_acceleration: tuple[float, ...] | None = None   # rad/s^2
    max_joint_jerk: tuple[float, ...] | None = None           # rad/s^3

    def __post_init__(self) -> None:
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise ValueError("give both workspace_low and workspace_high, or neither")
        if self.workspace_low is not None and np.any(np.asarray(self.workspace_low) > np.asarray(self.workspace_high)):
            raise ValueError(f"workspace_low {self.workspace_low} exceeds workspace_high {self.workspace_high}")
        dyn = (self.max_joint_velocity, self.max_joint_acceleration, self.max_joint_jerk)
        if any(d is not None for d in dyn) and any(d is None for d in dyn):
            raise ValueError("give max_joint_velocity, max_joint_acceleration and max_joint_jerk together, or none")
        if dyn[0] is not None and not (len(dyn[0]) == len(dyn[1]) == len(dyn[2])):
            raise ValueError("max_joint_velocity/acceleration/jerk need one value per joint each")


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
        self._last_motion: dict[int, np.ndarray] = {}   # slot -> last executed (dpos, drot) (6,)
        self._joint_state: dict[int, tuple] = {}        # slot -> the limiter's (q, qd, qdd) after the last tick
        self._otg = None

    def reset(self, slot: int | None = None) -> None:
        """Forget the motion memory of `slot` (every slot when None): a new episode starts at rest."""
        if slot is None:
            self._last_motion.clear()
            self._joint_state.clear()
        else:
            self._last_motion.pop(slot, None)
            self._joint_state.pop(slot, None)

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

    def filter(self, action: Action, obs: Observation, slot: int = 0) -> tuple[Action, list[Intervention]]:
        """Return the action that may reach the embodiment, and what was changed.

        action: one tick, shape (D,). obs: the observation the action responds
        to (its state gives the current pose for the workspace and step limits).
        slot: which embodiment (of B driven in lockstep) the action is for.
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
            v = self._ee_delta(v, obs, out, slot)
        elif self.spec.mode == "ee_abs":
            v = self._ee_abs(v, obs, out)
        else:
            v = self._joint_pos(v, obs, out, slot)
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

    def _ee_delta(self, v: np.ndarray, obs: Observation, out: list[Intervention], slot: int) -> np.ndarray:
        high = self.spec.high_array
        dpos, s = _limit_vector(v[:3], high[:3], self.config.max_translation)
        if s < 1.0:
            out.append(Intervention("translation_limit", f"translation scaled by {s:.3f}"))
        drot, s = _limit_vector(v[3:6], high[3:6], self.config.max_rotation)
        if s < 1.0:
            out.append(Intervention("rotation_limit", f"rotation scaled by {s:.3f}"))
        last = self._last_motion.get(slot, np.zeros(6, np.float32))
        for part, cap, name in ((slice(0, 3), self.config.max_translation_change, "translation"),
                                (slice(3, 6), self.config.max_rotation_change, "rotation")):
            if cap is None:
                continue
            cur = dpos if part.start == 0 else drot
            change, s = _limit_vector(cur - last[part], np.full(3, np.inf, np.float32), cap)
            if s < 1.0:
                out.append(Intervention("acceleration_limit", f"{name} change from the last tick scaled by {s:.3f}"))
                if part.start == 0:
                    dpos = last[part] + change
                else:
                    drot = last[part] + change
        if "ee_pos" in obs.state:
            ee = obs.state["ee_pos"].astype(np.float32)
            target = ee + dpos
            clipped = self._workspace_clip(target, out)
            if not np.array_equal(clipped, target):
                # An arm already outside the box is brought back no faster than one tick allows.
                dpos, _ = _limit_vector(clipped - ee, high[:3], self.config.max_translation)
        v[:3], v[3:6] = dpos, drot
        self._last_motion[slot] = v[:6].copy()
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

    def _joint_pos(self, v: np.ndarray, obs: Observation, out: list[Intervention], slot: int) -> np.ndarray:
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
            if self.config.max_joint_velocity is not None:
                q = self._jerk_limited(q, obs, out, slot)
        v[:n] = q
        return v

    def _jerk_limited(self, q: np.ndarray, obs: Observation, out: list[Intervention], slot: int) -> np.ndarray:
        """Where ruckig's jerk-limited trajectory toward `q` is after one tick.

        The trajectory continues from the state the limiter itself produced
        last tick (position, velocity, acceleration), as a streaming
        trajectory generator must; it restarts from the measured joints when
        the arm is more than `RESYNC_RAD` away from that state (a new
        episode, a hold, a collision).
        """
        from ruckig import InputParameter, OutputParameter, Ruckig

        n = q.size
        if self._otg is None:
            self._otg = (Ruckig(n, 1.0 / self.spec.rate_hz), InputParameter(n), OutputParameter(n))
        otg, inp, res = self._otg
        measured = obs.state["joint_pos"][:n].astype(np.float64)
        vmax = np.asarray(self.config.max_joint_velocity, np.float64)
        state = self._joint_state.get(slot)
        if state is None or np.abs(state[0] - measured).max() > RESYNC_RAD:
            vel = obs.state.get("joint_vel", np.zeros(n))[:n].astype(np.float64)
            state = (measured, np.clip(vel, -vmax, vmax), np.zeros(n))
        inp.current_position, inp.current_velocity, inp.current_acceleration = (x.tolist() for x in state)
        inp.target_position = q.astype(np.float64).tolist()
        inp.target_velocity = [0.0] * n
        inp.max_velocity = vmax.tolist()
        inp.max_acceleration = list(self.config.max_joint_acceleration)
        inp.max_jerk = list(self.config.max_joint_jerk)
        otg.update(inp, res)
        nxt = np.asarray(res.new_position, np.float64)
        self._joint_state[slot] = (nxt, np.asarray(res.new_velocity), np.asarray(res.new_acceleration))
        if not np.allclose(nxt, q, atol=1e-5):
            out.append(Intervention("joint_dynamics_limit", "target moved along a jerk-limited trajectory "
                                    f"(at most {np.abs(nxt - q).max():.3f} rad short of the policy's target)"))
        return nxt.astype(np.float32)
