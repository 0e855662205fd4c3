"""`ArmDriver` for low-cost serial-bus arms: SO-100 (Feetech STS3215 x6) and Koch v1.1 (Dynamixel X x6).

Five joints and a gripper, joint control only (`ArmTarget.joint_pos`, rad;
gripper opening in [0, 1]). The robot config's `[connection]`:

    port = "/dev/ttyUSB0"         # serial adapter (or the emulator's pty)
    baudrate = 1000000
    protocol = "feetech"          # or "dynamixel"
    ids = [1, 2, 3, 4, 5, 6]      # bus order: shoulder pan .. wrist roll, gripper last
    models = ["sts3215", ...]     # checked against each motor's model number on connect
    calibration = "~/.config/embodied/calibration/so100.json"   # default: calibration.default_path(name)
    arm = "so100"                 # kinematics (default: so100 for feetech, koch for dynamixel)
    stream_hz = 50                # goal streaming / state reading rate

How a target reaches the motors: `command()` clips the joints to the
calibrated range and the gripper to [0, 1], turns them into ticks (clipped
again into each motor's range) and hands them to a streaming thread, which
every 1/stream_hz s writes the goal interpolated linearly from the previous
goal to this target over `target.duration` (one SYNC WRITE) and reads the
state back (one SYNC READ). Nothing outside the calibrated range is ever
written, and the motors' own limit registers hold the same range. The steady
traffic also keeps a Dynamixel bus watchdog fed; when this process dies or
hangs the motors stop within `watchdog_s` (see `hardware.motors.dynamixel`).
Feetech motors have no such watchdog (see `hardware.motors.feetech`).

`hold()` sets the goal to the measured position at once; `recover()` clears a
tripped watchdog and re-enables torque. `disconnect()` holds and closes the
port; torque stays on so that the arm does not drop.

The end-effector pose comes from `forward_kinematics` over a chain of
per-joint origins and axes: nominal link lengths, approximate (about 1 cm),
good for logging, workspace checks and visualisation, not for precise
Cartesian control.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embodied.geometry import axis_angle_to_quat, quat_mul
from hardware.config import RobotConfig, RobotConfigError
from hardware.motors.bus import MotorBus, MotorBusError, series
from hardware.motors.calibration import Calibration, default_path, load_calibration
from hardware.robot import ArmState, ArmTarget

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ArmModel:
    """Kinematics and motor layout of one arm design.

    Base frame: x forward, y left, z up, origin on the mounting surface under the first joint.
    Zero pose (all joints 0): upper arm vertical, forearm and wrist pointing forward (+x), jaws closed.
    origins: (n_joints, 3) m, each joint's position in the previous joint's frame at the zero pose.
    axes: (n_joints, 3) unit axes in the joint's own frame (right hand: +y pitches the links after it down).
    tool: (3,) m, the point between the fingertips in the last joint's frame.
    directions: per motor (gripper last), how its ticks grow relative to the joint axis, as assembled.
    """

    name: str
    joint_names: tuple[str, ...]
    origins: tuple[tuple[float, float, float], ...]
    axes: tuple[tuple[float, float, float], ...]
    tool: tuple[float, float, float]
    directions: tuple[int, ...]
    models: tuple[str, ...]
    protocol: str

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def motor_names(self) -> tuple[str, ...]:
        return (*self.joint_names, "gripper")


_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
_AXES = ((0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1, 0, 0))

# Link offsets after the SO-ARM100 model's body positions (MuJoCo Menagerie trs_so_arm100), to the mm.
SO100 = ArmModel("so100", _JOINTS,
                 origins=((0, 0, 0.0165), (0.0306, 0, 0.1025), (0.028, 0, 0.1126), (0.1349, 0, 0.0052),
                          (0.0601, 0, 0)),
                 axes=_AXES, tool=(0.08, 0, 0), directions=(1, 1, 1, 1, 1, 1),
                 models=("sts3215",) * 6, protocol="feetech")
# Koch v1.1 follower: nominal link lengths of the published design (approximate).
KOCH = ArmModel("koch", _JOINTS,
                origins=((0, 0, 0.02), (0, 0, 0.035), (0.02, 0, 0.108), (0.10, 0, 0), (0.045, 0, 0)),
                axes=_AXES, tool=(0.06, 0, 0), directions=(1, 1, 1, 1, 1, 1),
                models=("xl430-w250", "xl430-w250", "xl330-m288", "xl330-m288", "xl330-m288", "xl330-m288"),
                protocol="dynamixel")
ARMS = {"so100": SO100, "koch": KOCH}
DEFAULT_ARM = {"feetech": "so100", "dynamixel": "koch"}


def arm_model(name: str) -> ArmModel:
    try:
        return ARMS[name]
    except KeyError:
        raise ValueError(f"unknown bus arm {name!r}; known: {sorted(ARMS)}") from None


def forward_kinematics(arm: ArmModel, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint angles (n_joints,) rad -> gripper point (3,) m and orientation (4,) wxyz, in the base frame."""
    q = np.asarray(q, np.float64)
    if q.shape != (arm.n_joints,):
        raise ValueError(f"{arm.name}: forward kinematics takes {arm.n_joints} joint angles, got shape {q.shape}")
    pos, quat = np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0])
    for origin, axis, angle in zip(arm.origins, arm.axes, q):
        pos = pos + _rotate(quat, np.asarray(origin, np.float64))
        quat = quat_mul(quat, axis_angle_to_quat(np.asarray(axis, np.float64) * angle))
    pos = pos + _rotate(quat, np.asarray(arm.tool, np.float64))
    return pos, quat / np.linalg.norm(quat)


def _rotate(quat: np.ndarray, v: np.ndarray) -> np.ndarray:
    return quat_mul(quat_mul(quat, np.concatenate([[0.0], v])), quat * np.array([1, -1, -1, -1]))[1:]


class BusArm:
    """The `ArmDriver` (see the module docstring). watchdog_s: the motors' bus watchdog where they have one.

    max_velocity: per motor rad/s (gripper last) for the motors' speed caps, or None for their maximum.
    """

    control_modes = ("joint",)

    def __init__(self, arm: ArmModel, port: str, baudrate: int, ids: tuple[int, ...], models: tuple[str, ...],
                 calibration: str | Path, protocol: str, watchdog_s: float,
                 max_velocity: tuple[float, ...] | None = None, stream_hz: float = 50.0):
        self.arm, self.protocol = arm, protocol
        self.n_joints = arm.n_joints
        self.series = series(protocol)
        self.bus = MotorBus(port, baudrate, self.series.TABLE, ids)
        self.models = dict(zip(ids, models))
        self.calibration_path = Path(calibration).expanduser()
        self.watchdog_s = watchdog_s
        self.max_velocity = max_velocity
        self.period = 1.0 / stream_hz
        self.safety_notes: list[str] = []    # what was configured in the motors, in words
        self.cal: Calibration | None = None
        self._lock = threading.RLock()
        self._segment: tuple[np.ndarray, np.ndarray, float, float] | None = None  # start, end ticks, t0, T
        self._state: ArmState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- ArmDriver
    def connect(self) -> None:
        if self._thread is not None:
            return
        self.cal = load_calibration(self.calibration_path, self.arm.motor_names, self.bus.ids)
        self.bus.connect()
        try:
            self._configure()
        except BaseException:
            self.bus.disconnect()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._stream, name=f"{self.arm.name}-bus", daemon=True)
        self._thread.start()

    def _configure(self) -> None:
        """Check the motors, write their limits and watchdog, set the goal where they are, torque on."""
        with self._lock:
            self.bus.check_models(self.models)
            speeds = None if self.max_velocity is None else dict(zip(self.bus.ids, self.max_velocity))
            self.safety_notes = self.series.configure(self.bus, self.cal.tick_ranges, self.watchdog_s, speeds)
            for note in self.safety_notes:
                log.info("%s: %s", self.arm.name, note)
            present = self._read_ticks()
            outside = [f"{n} at {int(t)} ticks, range [{m.range_min}, {m.range_max}]"
                       for (n, m), t in zip(self.cal.motors.items(), present)
                       if not m.range_min <= t <= m.range_max]
            if outside:
                raise MotorBusError(f"{self.arm.name}: joints outside their calibrated range: {outside}. Move them "
                                    f"inside by hand (torque is off), or recalibrate ({self.calibration_path}).")
            self._set_goal_here(present)
            self.bus.set_torque(True)
            self._state = self._state_from(self.bus.sync_read(self.series.STATE_REGISTERS))

    def read(self) -> ArmState:
        if self._state is None:
            raise RuntimeError(f"{self.arm.name}: connect() before read()")
        return self._state

    def command(self, target: ArmTarget) -> None:
        if target.joint_pos is None:
            raise ValueError(f"{self.arm.name} takes joint targets only (action_mode = 'joint_pos')")
        q = np.asarray(target.joint_pos, np.float64)
        if q.shape != (self.n_joints,):
            raise ValueError(f"{self.arm.name}: a joint target has {self.n_joints} angles (rad), got shape {q.shape}")
        ranges = self.cal.joint_ranges()
        end = self.cal.to_ticks(np.clip(q, ranges[:, 0], ranges[:, 1]), float(np.clip(target.gripper, 0.0, 1.0)))
        with self._lock:
            start = self._goal_now(time.monotonic())
            self._segment = (start, end.astype(np.float64), time.monotonic(), max(float(target.duration), 1e-3))

    def hold(self) -> None:
        """Goal = the measured position. Never raises: when the bus cannot be read, the goal freezes where
        the stream has it (at most one tick ahead of the arm) and the fault shows in `read()`."""
        with self._lock:
            if not self.bus.is_connected:
                return
            try:
                self._set_goal_here(self._read_ticks())
            except MotorBusError as e:
                log.warning("%s: hold could not read the motors (%s); freezing the goal where it is", self.arm.name, e)
                here = self._goal_now(time.monotonic())
                self._segment = (here, here, time.monotonic(), 1.0)
                try:
                    self.bus.sync_write("Goal_Position", np.rint(here).astype(np.int64).tolist())
                except MotorBusError:
                    pass  # the stream keeps writing the frozen goal as soon as the bus answers

    def recover(self) -> None:
        with self._lock:
            self.series.clear_fault(self.bus, self.bus.ids, self.watchdog_s)
            self.bus.set_torque(True)
            self._set_goal_here(self._read_ticks())

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self.bus.is_connected:
            try:
                self.hold()
            finally:
                self.bus.disconnect()

    # ---------------------------------------------------------------- streaming
    def _stream(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                try:
                    goal = self._goal_now(time.monotonic())
                    self.bus.sync_write("Goal_Position", np.rint(goal).astype(np.int64).tolist())
                    self._state = self._state_from(self.bus.sync_read(self.series.STATE_REGISTERS))
                except MotorBusError as e:  # keep trying: a glitch passes; the Robot stops on the fault meanwhile
                    old = self._state
                    self._state = dataclasses.replace(old, timestamp=time.monotonic(), fault=str(e))
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_t = time.monotonic()  # fell behind: do not burst to catch up

    def _goal_now(self, now: float) -> np.ndarray:
        start, end, t0, duration = self._segment
        return start + (end - start) * min(1.0, (now - t0) / duration)

    def _set_goal_here(self, ticks: np.ndarray) -> None:
        here = np.asarray(ticks, np.float64)
        self._segment = (here, here, time.monotonic(), 1.0)
        self.bus.sync_write("Goal_Position", np.rint(here).astype(np.int64).tolist())

    def _read_ticks(self) -> np.ndarray:
        return self.bus.sync_read(["Present_Position"])["Present_Position"]

    def _state_from(self, regs: Mapping[str, np.ndarray]) -> ArmState:
        q, opening = self.cal.to_joint_space(regs["Present_Position"])
        directions = np.array([m.direction for m in self.cal.motors.values()][:-1], np.float64)
        qd = regs["Present_Velocity"][:-1] * self.series.TABLE.velocity_unit * directions
        pos, quat = forward_kinematics(self.arm, q)
        return ArmState(q, qd, pos, quat, opening,
                        fault=self.series.fault(regs, self.bus.ids, self.bus.status_errors))


def bus_settings(config: RobotConfig, protocol: str | None = None) -> dict[str, Any]:
    """The validated `[connection]` of a bus arm's config (see the module docstring)."""
    c = dict(config.connection)
    where = config.source or config.name
    proto = c.get("protocol", protocol)
    if proto not in ("dynamixel", "feetech") or (protocol is not None and proto != protocol):
        raise RobotConfigError(where, f"connection.protocol = {proto!r}: driver {config.driver!r} speaks "
                                      f"{protocol or 'dynamixel or feetech'}")
    arm = arm_model(c.get("arm", DEFAULT_ARM[proto]))
    missing = [k for k in ("port", "ids") if k not in c]
    if missing:
        raise RobotConfigError(where, f"connection lacks {missing} (e.g. port = \"/dev/ttyUSB0\", ids = [1, ..., 6])")
    ids = tuple(int(i) for i in c["ids"])
    models = tuple(c.get("models", arm.models))
    n = arm.n_joints + 1
    if config.n_joints != arm.n_joints or len(ids) != n or len(models) != n:
        raise RobotConfigError(where, f"the {arm.name} has {arm.n_joints} joints + a gripper: n_joints = "
                                      f"{arm.n_joints} and {n} ids and models (gripper last); got n_joints = "
                                      f"{config.n_joints}, {len(ids)} ids, {len(models)} models")
    if config.action_mode != "joint_pos":
        raise RobotConfigError(where, f"{arm.name} runs in joint control only: set action_mode = 'joint_pos'")
    return {"arm": arm.name, "protocol": proto, "port": str(c["port"]), "baudrate": int(c.get("baudrate", 1_000_000)),
            "ids": ids, "models": models, "stream_hz": float(c.get("stream_hz", 50.0)),
            "calibration": Path(c.get("calibration") or default_path(config.name)).expanduser()}


def make_driver(config: RobotConfig, protocol: str | None = None) -> BusArm:
    """A `BusArm` from a robot config (`hardware/arms/feetech.py` and `dynamixel.py` pass their protocol)."""
    s = bus_settings(config, protocol)
    speeds = None
    if config.max_joint_velocity:
        speeds = (*config.max_joint_velocity, max(config.max_joint_velocity))  # the gripper as its fastest joint
    return BusArm(arm_model(s["arm"]), s["port"], s["baudrate"], s["ids"], s["models"], s["calibration"],
                  s["protocol"], config.watchdog_s, speeds, s["stream_hz"])
