"""Per-robot limits and connection settings, read from a TOML file a person can read and edit.

Every robot has one file in `hardware/configs/<name>.toml` (a user passes
their own with `--robot-config path.toml`). It says where the arm is
(address or serial port), which cameras it has, and every limit the safety
layer enforces for it, in SI units:

    name = "ur5e"
    driver = "ur"                      # hardware/arms/<driver>.py
    control_hz = 10.0                  # policy actions per second
    action_mode = "ee_delta"           # or "joint_pos"
    max_translation = 0.02             # m per tick   (-> action bounds)
    max_rotation = 0.1                 # rad per tick
    workspace_low = [0.2, -0.4, 0.02]  # m, base frame: the gripper point stays in this box
    workspace_high = [0.7, 0.4, 0.5]
    joint_low = [...]                  # rad (n_joints)
    joint_high = [...]
    max_joint_velocity = [...]         # rad/s, for the trajectory limiter
    max_joint_acceleration = [...]     # rad/s^2
    max_joint_jerk = [...]             # rad/s^3
    max_translation_change = 0.01      # m per tick per tick: how fast one tick's motion may change (acceleration)
    max_rotation_change = 0.05         # rad per tick per tick
    watchdog_s = 0.05                  # stop the arm when no command or heartbeat came for this long
    max_action_age_s = 0.2             # drop actions answering observations older than this

    [connection]                       # driver-specific: host, port, serial device, baud rate, ...
    host = "192.168.1.10"

    [[cameras]]
    name = "front"
    kind = "realsense"                 # or "opencv"
    serial = "123456789"               # realsense serial / opencv device index or video path
    width = 640
    height = 480
    depth = true
    intrinsics = [615.0, 615.0, 320.0, 240.0]   # optional: fx, fy, cx, cy (RealSense reports its own)
    extrinsics = [...]                          # optional: 16 numbers, row-major T_world_cam from hand-eye calibration

A malformed file is a `RobotConfigError` that names the file and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from embodied.safety import SafetyConfig
from embodied.types import ActionSpec, CameraSpec, EmbodimentSpec
from hardware.robot import state_keys

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class RobotConfigError(ValueError):
    """A robot config file is missing, malformed or inconsistent."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    name: str
    kind: str                 # "realsense" | "opencv" | "sim"
    source: str = ""          # realsense serial, opencv device index / video file path; "" = first found
    width: int = 640
    height: int = 480
    depth: bool = False
    fps: int = 30
    intrinsics: tuple[float, ...] = ()   # fx, fy, cx, cy (pixels of width x height); () = the camera's own or a guess
    extrinsics: tuple[float, ...] = ()   # 16 numbers, row-major T_world_cam (m); () = identity (not calibrated)

    def __post_init__(self) -> None:
        object.__setattr__(self, "intrinsics", tuple(float(v) for v in self.intrinsics))
        object.__setattr__(self, "extrinsics", tuple(float(v) for v in self.extrinsics))
        if self.intrinsics and len(self.intrinsics) != 4:
            raise ValueError(f"camera {self.name!r}: intrinsics are 4 numbers (fx, fy, cx, cy), got {len(self.intrinsics)}")
        if self.extrinsics and len(self.extrinsics) != 16:
            raise ValueError(f"camera {self.name!r}: extrinsics are 16 numbers (row-major 4x4 T_world_cam), "
                             f"got {len(self.extrinsics)}")

    def spec(self) -> CameraSpec:
        return CameraSpec(self.name, self.height, self.width, depth=self.depth)


@dataclasses.dataclass(frozen=True)
class RobotConfig:
    """One robot's limits and connection, as read from its TOML file (see the module docstring)."""

    name: str
    driver: str
    n_joints: int
    control_hz: float = 10.0
    action_mode: str = "ee_delta"
    max_translation: float = 0.02
    max_rotation: float = 0.1
    workspace_low: tuple[float, float, float] = (0.2, -0.4, 0.02)
    workspace_high: tuple[float, float, float] = (0.7, 0.4, 0.5)
    joint_low: tuple[float, ...] = ()
    joint_high: tuple[float, ...] = ()
    max_joint_velocity: tuple[float, ...] = ()
    max_joint_acceleration: tuple[float, ...] = ()
    max_joint_jerk: tuple[float, ...] = ()
    max_translation_change: float | None = None   # m per tick per tick: the end effector's acceleration limit
    max_rotation_change: float | None = None      # rad per tick per tick
    watchdog_s: float = 0.05
    max_action_age_s: float = 0.2
    connection: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cameras: tuple[CameraConfig, ...] = ()
    source: str = ""  # the file it was read from

    def __post_init__(self) -> None:
        where = self.source or self.name
        problems = []
        if self.action_mode not in ("ee_delta", "joint_pos"):
            problems.append(f"action_mode = {self.action_mode!r}: use 'ee_delta' or 'joint_pos'")
        if self.control_hz <= 0:
            problems.append(f"control_hz = {self.control_hz}: must be > 0")
        if np.any(np.asarray(self.workspace_low) >= np.asarray(self.workspace_high)):
            problems.append(f"workspace_low {self.workspace_low} must be below workspace_high {self.workspace_high}")
        for field in ("joint_low", "joint_high", "max_joint_velocity", "max_joint_acceleration", "max_joint_jerk"):
            v = getattr(self, field)
            if v and len(v) != self.n_joints:
                problems.append(f"{field} has {len(v)} values; the arm has n_joints = {self.n_joints}")
        if self.joint_low and self.joint_high and np.any(np.asarray(self.joint_low) >= np.asarray(self.joint_high)):
            problems.append("joint_low must be below joint_high for every joint")
        if self.watchdog_s <= 0 or self.max_action_age_s <= 0:
            problems.append("watchdog_s and max_action_age_s must be > 0")
        if self.max_translation <= 0 or self.max_rotation < 0:
            problems.append("max_translation must be > 0 and max_rotation >= 0")
        if problems:
            raise RobotConfigError(where, "; ".join(problems))

    @property
    def joint_limits(self) -> np.ndarray | None:
        """(n_joints, 2) rad, or None when the file gives none."""
        if not self.joint_low:
            return None
        return np.stack([np.asarray(self.joint_low), np.asarray(self.joint_high)], axis=1)

    def action_spec(self) -> ActionSpec:
        if self.action_mode == "ee_delta":
            return ActionSpec.ee_delta(self.max_translation, self.max_rotation, self.control_hz)
        if self.joint_limits is None:
            raise RobotConfigError(self.source or self.name, "action_mode = 'joint_pos' needs joint_low/joint_high")
        lo = (*self.joint_low, 0.0)
        hi = (*self.joint_high, 1.0)
        names = tuple(f"joint_{i}" for i in range(self.n_joints)) + ("gripper",)
        units = ("rad",) * self.n_joints + ("opening",)
        return ActionSpec("joint_pos", lo, hi, self.control_hz, names, units)

    def embodiment_spec(self) -> EmbodimentSpec:
        return EmbodimentSpec(self.name, tuple(c.spec() for c in self.cameras), state_keys(self.n_joints),
                              self.action_spec())

    @property
    def workspace(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.workspace_low, np.float32), np.asarray(self.workspace_high, np.float32)

    def safety_config(self) -> SafetyConfig:
        """The limits of this file as the one safety filter takes them."""
        dyn = self.max_joint_velocity and self.max_joint_acceleration and self.max_joint_jerk
        return SafetyConfig(
            workspace_low=tuple(self.workspace_low), workspace_high=tuple(self.workspace_high),
            max_translation=self.max_translation, max_rotation=self.max_rotation,
            max_translation_change=self.max_translation_change, max_rotation_change=self.max_rotation_change,
            max_joint_velocity=tuple(self.max_joint_velocity) if dyn else None,
            max_joint_acceleration=tuple(self.max_joint_acceleration) if dyn else None,
            max_joint_jerk=tuple(self.max_joint_jerk) if dyn else None)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def load_robot_config(name_or_path: str | Path) -> RobotConfig:
    """Read `hardware/configs/<name>.toml`, or the TOML file at a path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
        raise RobotConfigError(path, f"no such robot config; shipped ones: {known}, or pass a .toml path")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RobotConfigError(path, f"not valid TOML ({e})") from e
    return robot_config_from_dict(raw, source=str(path))


def robot_config_from_dict(raw: Mapping[str, Any], source: str = "") -> RobotConfig:
    fields = {f.name for f in dataclasses.fields(RobotConfig)} - {"source"}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise RobotConfigError(source or "config", f"unknown fields {unknown}; known: {sorted(fields)}")
    missing = [k for k in ("name", "driver", "n_joints") if k not in raw]
    if missing:
        raise RobotConfigError(source or "config", f"missing required fields {missing}")
    kw = {k: _tuple(v) for k, v in raw.items() if k != "cameras"}
    cams = []
    for i, c in enumerate(raw.get("cameras", [])):
        try:
            cams.append(CameraConfig(**{k: str(v) if k == "source" else v for k, v in c.items()}))
        except (TypeError, ValueError) as e:
            raise RobotConfigError(source or "config", f"cameras[{i}]: {e}") from e
    try:
        return RobotConfig(**kw, cameras=tuple(cams), source=source)
    except TypeError as e:
        raise RobotConfigError(source or "config", str(e)) from e
