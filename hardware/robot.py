"""`Robot`: one real (or twin) arm plus its cameras, seen as an `Embodiment`.

Every arm driver in `hardware/arms/` implements the small `ArmDriver`
protocol over its vendor SDK; every camera in `hardware/cameras/` implements
`Camera`. `Robot` composes one arm, its cameras and the per-robot limits
file (`hardware/config.py`) into the `Embodiment` the runner drives, exactly
as it drives a simulated env:

    reset(instruction)  -> Observation        (arm recovered, target at the current pose)
    step(Action)        -> StepResult         (one control tick, held to the control rate)

`step` turns the action into an absolute target and hands it to the driver:
`ee_delta` actions are integrated into an end-effector target (metres,
axis-angle radians, base frame) with the same leash as the simulator
(`embodied.geometry.integrate_ee_target`), `joint_pos` actions are joint
targets (rad). The driver streams that target to the arm at its own rate
(servo mode, with the vendor's or our ruckig-limited interpolation) and
must stop the arm on `hold()`.

Safety: the runner's `SafetyFilter` has already filtered the action; the
robot re-checks what only it knows (joint limits from the limits file, the
workspace box) before anything reaches the driver, and never passes a
non-finite number. A fault reported by the driver stops the episode
(`StepResult.done`, `info["fault"]`); `reset` calls the driver's `recover`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embodied.geometry import integrate_ee_target
from embodied.types import Action, CameraInfo, CameraSpec, EmbodimentSpec, Observation, StepResult


@dataclasses.dataclass
class ArmState:
    """What an arm reports in one read. Units: rad, rad/s, m, (w,x,y,z), gripper opening in [0, 1].

    fault: None when the arm is fine, else the controller's words (e.g.
    "protective stop", "reflex: cartesian velocity violation").
    """

    joint_pos: np.ndarray
    joint_vel: np.ndarray
    ee_pos: np.ndarray
    ee_quat: np.ndarray
    gripper: float
    timestamp: float = dataclasses.field(default_factory=time.monotonic)
    fault: str | None = None

    def as_state(self) -> dict[str, np.ndarray]:
        """The `Observation.state` dict (float32 vectors)."""
        quat = np.asarray(self.ee_quat, np.float32)
        if quat[0] < 0:
            quat = -quat  # one sign per rotation, as in sim
        return {
            "joint_pos": np.asarray(self.joint_pos, np.float32),
            "joint_vel": np.asarray(self.joint_vel, np.float32),
            "ee_pos": np.asarray(self.ee_pos, np.float32),
            "ee_quat": quat,
            "gripper": np.array([self.gripper], np.float32),
        }


@dataclasses.dataclass
class ArmTarget:
    """One command: an end-effector pose (m, (w,x,y,z), base frame) or joint positions (rad), plus gripper.

    Exactly one of `ee_pos`/`joint_pos` is set. `duration` is the time (s)
    the arm has to get there: one control tick.
    """

    gripper: float
    duration: float
    ee_pos: np.ndarray | None = None
    ee_quat: np.ndarray | None = None
    joint_pos: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.ee_pos is None) == (self.joint_pos is None):
            raise ValueError("an ArmTarget has either an end-effector pose or joint positions")
        for name in ("ee_pos", "ee_quat", "joint_pos"):
            v = getattr(self, name)
            if v is not None and not np.all(np.isfinite(v)):
                raise ValueError(f"ArmTarget.{name} is not finite: {v}")
        if not np.isfinite(self.gripper):
            raise ValueError(f"ArmTarget.gripper is not finite: {self.gripper}")


@runtime_checkable
class ArmDriver(Protocol):
    """A vendor SDK behind four verbs. Implementations import their SDK inside `connect`.

    n_joints: arm joints (gripper excluded). control_modes: the ArmTarget kinds it takes
    ("ee" and/or "joint").
    """

    n_joints: int
    control_modes: tuple[str, ...]

    def connect(self) -> None: ...

    def read(self) -> ArmState: ...

    def command(self, target: ArmTarget) -> None:
        """Start moving to `target`; returns at once (the arm streams it)."""
        ...

    def hold(self) -> None:
        """Stop now: zero velocity, keep the current pose. The watchdog and e-stop call this from
        another thread than `command`, so it must be thread-safe."""
        ...

    def recover(self) -> None:
        """Clear a fault or protective stop so that motion can resume."""
        ...

    def disconnect(self) -> None: ...


@dataclasses.dataclass
class CameraFrame:
    """rgb (H, W, 3) uint8; depth (H, W) float32 metres or None; info: intrinsics/extrinsics."""

    rgb: np.ndarray
    depth: np.ndarray | None
    info: CameraInfo
    timestamp: float = dataclasses.field(default_factory=time.monotonic)


@runtime_checkable
class Camera(Protocol):
    """A camera that gives its latest frame without blocking for long."""

    spec: CameraSpec

    def connect(self) -> None: ...

    def read(self) -> CameraFrame: ...

    def disconnect(self) -> None: ...


class Robot:
    """An `Embodiment` over one `ArmDriver` and its `Camera`s.

    spec: the embodiment spec this robot publishes (from its limits file).
    workspace: (low (3,), high (3,)) metres in the base frame, for the safety filter.
    realtime: hold each step to the control period (a real arm always does).
    """

    def __init__(self, name: str, arm: ArmDriver, cameras: Sequence[Camera], spec: EmbodimentSpec,
                 workspace: tuple[Sequence[float], Sequence[float]], joint_limits: np.ndarray | None = None,
                 leash: tuple[float, float] | None = None, realtime: bool = True,
                 default_instruction: str = ""):
        if spec.action.mode == "ee_delta" and "ee" not in arm.control_modes:
            raise ValueError(f"{name}: the arm driver takes {arm.control_modes} targets, not end-effector poses")
        if spec.action.mode == "joint_pos" and "joint" not in arm.control_modes:
            raise ValueError(f"{name}: the arm driver takes {arm.control_modes} targets, not joint positions")
        self.name, self.arm, self.cameras = name, arm, list(cameras)
        self._spec = spec
        self.workspace = (np.asarray(workspace[0], np.float64), np.asarray(workspace[1], np.float64))
        self.joint_limits = None if joint_limits is None else np.asarray(joint_limits, np.float64)
        hi = spec.action.high_array
        self.leash = leash or (2.0 * float(np.linalg.norm(hi[:3])), 2.0 * float(np.linalg.norm(hi[3:6])))
        self.realtime = realtime
        self.default_instruction = default_instruction
        self._instruction = default_instruction
        self._target_pos: np.ndarray | None = None
        self._target_quat: np.ndarray | None = None
        self._next_tick = 0.0
        self._t0 = time.monotonic()
        self._connected = False

    # ---------------------------------------------------------------- Embodiment
    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    def connect(self) -> None:
        if not self._connected:
            self.arm.connect()
            for c in self.cameras:
                c.connect()
            self._connected = True

    def reset(self, instruction: str | None = None, seed: int | None = None) -> Observation:
        """Recover the arm, set the target at the current pose and return the first observation.

        A real robot cannot be re-seeded: `seed` is accepted for the protocol and ignored.
        """
        self.connect()
        self.arm.recover()
        self.arm.hold()
        self._instruction = instruction or self.default_instruction
        if hasattr(self.arm, "start_episode"):  # a twin lays out a new scene and names its task
            self._instruction = self.arm.start_episode(seed, instruction)
        state = self.arm.read()
        self._target_pos = np.asarray(state.ee_pos, np.float64).copy()
        self._target_quat = np.asarray(state.ee_quat, np.float64).copy()
        self._t0 = time.monotonic()
        self._next_tick = self._t0 + 1.0 / self._spec.control_hz
        return self._observe(state)

    def step(self, action: Action) -> StepResult:
        """Command one tick, wait for the tick to end (realtime), observe. action: (D,) of `spec.action`."""
        if self._target_pos is None:
            raise RuntimeError(f"{self.name}: call reset() before step()")
        if action.is_chunk or action.value.shape != (self._spec.action.dim,):
            raise ValueError(f"{self.name}: step takes one ({self._spec.action.dim},) action, "
                             f"got shape {action.value.shape}")
        v = np.asarray(action.value, np.float64)
        if not np.all(np.isfinite(v)):
            self.arm.hold()  # the filter should have caught it; never pass it on
            raise ValueError(f"{self.name}: non-finite action {v} refused; the arm is holding")
        state = self.arm.read()
        if state.fault is not None:
            self.arm.hold()
            return StepResult(self._observe(state), False, True, {"fault": state.fault})
        self.arm.command(self._target(v, state))
        if self.realtime:
            delay = self._next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_tick = max(self._next_tick + 1.0 / self._spec.control_hz, time.monotonic())
        state = self.arm.read()
        info: dict[str, Any] = {"time": time.monotonic() - self._t0}
        success = done = False
        if hasattr(self.arm, "episode_status"):  # a twin knows success from privileged state; a real arm does not
            success, done, extra = self.arm.episode_status()
            info.update(extra)
        if state.fault is not None:
            self.arm.hold()
            info["fault"] = state.fault
            done = True
        return StepResult(self._observe(state), success, done, info)

    def observe(self) -> Observation:
        """The current observation, without commanding anything."""
        return self._observe(self.arm.read())

    def hold(self) -> None:
        """Stop the arm now (watchdog, e-stop, lost link). May be called from another thread."""
        self.arm.hold()
        if self._target_pos is not None:
            state = self.arm.read()
            self._target_pos = np.asarray(state.ee_pos, np.float64).copy()
            self._target_quat = np.asarray(state.ee_quat, np.float64).copy()

    def close(self) -> None:
        if self._connected:
            try:
                self.arm.hold()
            finally:
                self.arm.disconnect()
                for c in self.cameras:
                    c.disconnect()
                self._connected = False

    # ---------------------------------------------------------------- internals
    def _target(self, v: np.ndarray, state: ArmState) -> ArmTarget:
        dt = 1.0 / self._spec.control_hz
        if self._spec.action.mode == "ee_delta":
            pos, quat = integrate_ee_target(self._target_pos, self._target_quat, v[:3], v[3:6],
                                            np.asarray(state.ee_pos, np.float64),
                                            np.asarray(state.ee_quat, np.float64), *self.leash)
            pos = np.clip(pos, self.workspace[0], self.workspace[1])
            self._target_pos, self._target_quat = pos, quat
            return ArmTarget(gripper=float(np.clip(v[-1], 0, 1)), duration=dt, ee_pos=pos, ee_quat=quat)
        q = v[:-1]
        if self.joint_limits is not None:
            q = np.clip(q, self.joint_limits[:, 0], self.joint_limits[:, 1])
        return ArmTarget(gripper=float(np.clip(v[-1], 0, 1)), duration=dt, joint_pos=q)

    def _observe(self, state: ArmState) -> Observation:
        images, depth, cams = {}, {}, {}
        for c in self.cameras:
            f = c.read()
            images[c.spec.name] = f.rgb
            if c.spec.depth and f.depth is not None:
                depth[c.spec.name] = f.depth
            cams[c.spec.name] = f.info
        return Observation(images=images, depth=depth, state=state.as_state(), instruction=self._instruction,
                           timestamp=state.timestamp, cameras=cams)


def state_keys(n_joints: int) -> Mapping[str, int]:
    """The state dict sizes every arm publishes."""
    return {"joint_pos": n_joints, "joint_vel": n_joints, "ee_pos": 3, "ee_quat": 4, "gripper": 1}
