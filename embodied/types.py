"""The shared observation/action interface every part of the stack speaks.

Conventions (all units SI):

- Positions in metres, rotations as axis-angle in radians, both expressed in
  the robot's base (world) frame: +x forward (away from the robot base),
  +y to the robot's left, +z up.
- Quaternions are (w, x, y, z), MuJoCo's order.
- Images are HxWx3 uint8 RGB, depth is HxW float32 metres.
- The gripper command and the gripper state are normalised openings in
  [0, 1]: 1 = fully open, 0 = fully closed (the Bridge/OpenVLA convention).

Everything here is numpy only and unbatched: one time step of one robot.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

ControlMode = Literal["ee_delta", "joint_pos", "ee_abs"]
CONTROL_MODES: tuple[str, ...] = ("ee_delta", "joint_pos", "ee_abs")

# Names of the 7 dimensions of the default `ee_delta` control mode.
EE_DELTA_NAMES: tuple[str, ...] = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")

# State keys every embodiment must publish.
REQUIRED_STATE_KEYS: tuple[str, ...] = ("joint_pos", "ee_pos", "ee_quat", "gripper")


class SpecMismatchError(ValueError):
    """Raised when data, a checkpoint or an action does not fit an EmbodimentSpec."""


@dataclasses.dataclass(frozen=True)
class CameraInfo:
    """Pinhole camera model of one camera at one instant.

    intrinsics: 3x3 K (pixels). extrinsics: 4x4 T_world_cam, the camera pose in
    the world frame, OpenCV axes (x right, y down, z forward into the scene).
    """

    intrinsics: np.ndarray
    extrinsics: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "intrinsics", np.asarray(self.intrinsics, np.float32).reshape(3, 3))
        object.__setattr__(self, "extrinsics", np.asarray(self.extrinsics, np.float32).reshape(4, 4))


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    """A camera an embodiment publishes: name and image size in pixels."""

    name: str
    height: int
    width: int
    depth: bool = True


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What an action vector means.

    mode: `ee_delta` (dim 7: Δpos m, Δrot axis-angle rad, gripper opening
    0..1), `joint_pos` (absolute joint targets rad + gripper) or `ee_abs`
    (pos m, axis-angle rad, gripper). low/high: per-dimension bounds in the
    same units; an `ee_delta` bound is the largest motion in one control tick.
    rate_hz: the control rate at which actions are applied.
    """

    mode: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    rate_hz: float
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in CONTROL_MODES:
            raise ValueError(f"unknown control mode {self.mode!r}; choose one of {CONTROL_MODES}")
        object.__setattr__(self, "low", tuple(float(x) for x in self.low))
        object.__setattr__(self, "high", tuple(float(x) for x in self.high))
        if len(self.low) != len(self.high):
            raise ValueError(f"ActionSpec low has {len(self.low)} dims but high has {len(self.high)}")
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"ActionSpec has low > high: {self.low} vs {self.high}")
        if self.names and len(self.names) != self.dim:
            raise ValueError(f"ActionSpec names {self.names} do not match dim {self.dim}")
        if not self.rate_hz > 0:
            raise ValueError(f"ActionSpec rate_hz must be positive, got {self.rate_hz}")

    @property
    def dim(self) -> int:
        return len(self.low)

    @property
    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, np.float32)

    @property
    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, np.float32)

    @classmethod
    def ee_delta(cls, max_translation: float, max_rotation: float, rate_hz: float) -> ActionSpec:
        """The default 7-D mode: per-tick limits in metres and radians."""
        t, r = float(max_translation), float(max_rotation)
        return cls(
            mode="ee_delta",
            low=(-t, -t, -t, -r, -r, -r, 0.0),
            high=(t, t, t, r, r, r, 1.0),
            rate_hz=rate_hz,
            names=EE_DELTA_NAMES,
            units=("m", "m", "m", "rad", "rad", "rad", "open"),
        )


@dataclasses.dataclass
class Action:
    """A command for one tick, `(D,)`, or a chunk of ticks, `(T, D)`, float32."""

    value: np.ndarray
    spec: ActionSpec

    def __post_init__(self) -> None:
        self.value = np.asarray(self.value, dtype=np.float32)
        if self.value.ndim not in (1, 2) or self.value.shape[-1] != self.spec.dim:
            raise SpecMismatchError(
                f"action of shape {self.value.shape} does not fit a {self.spec.mode} spec of dim "
                f"{self.spec.dim}; expected ({self.spec.dim},) or (T, {self.spec.dim})"
            )

    @property
    def is_chunk(self) -> bool:
        return self.value.ndim == 2

    def steps(self) -> list[Action]:
        """Split a chunk into single-tick actions (a single action yields itself)."""
        if not self.is_chunk:
            return [self]
        return [Action(v, self.spec) for v in self.value]


# Privileged state key: where the goal's points (the thing acted on, then where it must go) fall in
# each camera's image, (4·cameras,) in the spec's camera order: subject (u, v), destination (u, v),
# normalised as `geometry.image_coordinates` (the image spans [-1, 1]; outside it = not in view).
# Dense supervision for a policy that learns to point at what the instruction names.
GOAL_UV = "goal_uv"


@dataclasses.dataclass(frozen=True)
class EmbodimentSpec:
    """Everything a policy may know about the body it drives.

    Stored in every dataset and checkpoint; `check_compatible` is how a
    checkpoint refuses an embodiment it was not trained for.

    privileged: state keys only a simulator knows (where the goal's objects
    are, say). They are recorded like any state, so that a policy can learn
    to predict them, but no policy reads them as input unless it names them,
    and a real robot, which lacks them, still matches a spec that has them.
    One privileged key has a meaning every policy can rely on: `GOAL_UV`.
    """

    name: str
    cameras: tuple[CameraSpec, ...]
    state: Mapping[str, int]
    action: ActionSpec
    privileged: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "state", dict(self.state))
        object.__setattr__(self, "privileged", tuple(self.privileged))
        missing = [k for k in REQUIRED_STATE_KEYS if k not in self.state]
        if missing:
            raise ValueError(f"EmbodimentSpec {self.name!r} lacks required state keys {missing}")
        bad = [k for k in self.privileged if k not in self.state or k in REQUIRED_STATE_KEYS]
        if bad:
            raise ValueError(f"EmbodimentSpec {self.name!r}: privileged keys {bad} must be state keys other than "
                             f"the required {list(REQUIRED_STATE_KEYS)}")

    @property
    def control_hz(self) -> float:
        return self.action.rate_hz

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraSpec:
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(f"embodiment {self.name!r} has no camera {name!r}; it has {self.camera_names}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"state": dict(self.state)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmbodimentSpec:
        return cls(
            name=d["name"],
            cameras=tuple(CameraSpec(**c) for c in d["cameras"]),
            state={k: int(v) for k, v in d["state"].items()},
            action=ActionSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["action"].items()}),
            privileged=tuple(d.get("privileged", ())),  # specs saved before privileged state existed have none
        )

    def check_compatible(self, other: EmbodimentSpec, *, what: str = "checkpoint") -> None:
        """Raise SpecMismatchError naming every difference that would change the data.

        Cameras must exist with the same size, state keys with the same dims,
        and the action mode, dim and rate must match. Extra cameras or state
        keys on `other` are fine: a policy simply does not read them. So is a
        missing privileged key: no policy input comes from it.
        """
        problems = []
        for cam in self.cameras:
            try:
                theirs = other.camera(cam.name)
            except KeyError:
                problems.append(f"camera {cam.name!r} is missing")
                continue
            if (theirs.height, theirs.width) != (cam.height, cam.width):
                problems.append(
                    f"camera {cam.name!r} is {theirs.height}x{theirs.width}, {what} expects {cam.height}x{cam.width}"
                )
        for key, dim in self.state.items():
            if key not in other.state:
                if key not in self.privileged:
                    problems.append(f"state key {key!r} is missing")
            elif other.state[key] != dim:
                problems.append(f"state {key!r} has dim {other.state[key]}, {what} expects {dim}")
        a, b = self.action, other.action
        if (a.mode, a.dim) != (b.mode, b.dim):
            problems.append(f"action is {b.mode}/{b.dim}-D, {what} expects {a.mode}/{a.dim}-D")
        if not math.isclose(a.rate_hz, b.rate_hz, rel_tol=1e-6):
            problems.append(f"control rate is {b.rate_hz} Hz, {what} expects {a.rate_hz} Hz")
        if problems:
            raise SpecMismatchError(
                f"{what} was made for embodiment {self.name!r} but got {other.name!r}: "
                + "; ".join(problems)
                + ". Retrain on data from this embodiment, or pick a matching one."
            )


@dataclasses.dataclass
class Observation:
    """One time step as the robot sees it (unbatched, numpy only).

    images: {camera: HxWx3 uint8}; depth: {camera: HxW float32 metres};
    state: {name: float32 vector} with at least joint_pos (rad), ee_pos (m),
    ee_quat (w,x,y,z), gripper (opening 0..1); cameras: {camera: CameraInfo}.
    """

    images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    depth: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    instruction: str | None = None
    timestamp: float = dataclasses.field(default_factory=time.monotonic)
    cameras: dict[str, CameraInfo] = dataclasses.field(default_factory=dict)

    def check(self, spec: EmbodimentSpec) -> None:
        """Raise SpecMismatchError if this observation does not match `spec`."""
        for cam in spec.cameras:
            img = self.images.get(cam.name)
            if img is None:
                raise SpecMismatchError(f"observation lacks image {cam.name!r} required by {spec.name!r}")
            if img.shape != (cam.height, cam.width, 3) or img.dtype != np.uint8:
                raise SpecMismatchError(
                    f"image {cam.name!r} is {img.shape} {img.dtype}; expected ({cam.height}, {cam.width}, 3) uint8"
                )
        for key, dim in spec.state.items():
            v = self.state.get(key)
            if v is None and key in spec.privileged:
                continue  # a real robot does not know it; see EmbodimentSpec
            if v is None or v.shape != (dim,):
                got = None if v is None else v.shape
                raise SpecMismatchError(f"state {key!r} has shape {got}; expected ({dim},)")


@dataclasses.dataclass
class StepResult:
    """What an embodiment returns after one action."""

    obs: Observation
    success: bool
    done: bool
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


CorrectionSource = Literal["human", "simulated"]
CorrectionLevel = Literal["motion", "skill", "plan", "preference"]
CORRECTION_SOURCES = ("human", "simulated")
CORRECTION_LEVELS = ("motion", "skill", "plan", "preference")


@dataclasses.dataclass(frozen=True)
class Correction:
    """A typed correction event, e.g. "a bit more to the left".

    time: seconds on the episode clock when it was given. payload: structured
    extras, e.g. {"language_motion": "move arm left"} or an offset in metres.
    """

    text: str
    time: float
    source: str = "human"
    level: str = "motion"
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("a correction needs non-empty text, e.g. 'a bit more to the left'")
        if self.source not in CORRECTION_SOURCES:
            raise ValueError(f"correction source {self.source!r} is not one of {CORRECTION_SOURCES}")
        if self.level not in CORRECTION_LEVELS:
            raise ValueError(f"correction level {self.level!r} is not one of {CORRECTION_LEVELS}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "time": float(self.time),
            "source": self.source,
            "level": self.level,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Correction:
        return cls(
            text=d["text"],
            time=float(d["time"]),
            source=d.get("source", "human"),
            level=d.get("level", "motion"),
            payload=dict(d.get("payload") or {}),
        )
