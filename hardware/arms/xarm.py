"""UFACTORY xArm (5/6/7, Lite 6) through xarm-python-sdk: servo mode, software e-stop, error codes, gripper.

In servo mode (`set_mode(1)`, `set_state(0)`) the controller executes only
the newest set-point of `set_servo_cartesian` / `set_servo_angle_j`, and
expects them often and close together; `ServoStream` sends them at
`servo_hz` (100-250 Hz), gliding from one policy tick's target to the next.

Units at the boundary (the SDK's, checked in xarm/wrapper/xarm_api.py):
`set_servo_cartesian([x, y, z, roll, pitch, yaw])` takes millimetres and,
with is_radian=True, radians; `get_position` returns the same. roll, pitch,
yaw are fixed-axis X-Y-Z angles: R = Rz(yaw) @ Ry(pitch) @ Rx(roll). Joints
are radians with is_radian=True. We speak metres and (w, x, y, z).

Hold: `emergency_stop()` (the SDK's software stop: state 4, motion
discarded) after the stream stops; the next command re-enters servo mode.
Faults: a controller error or warning code (with the SDK's own title for
it), a lost connection, or a refused set-point becomes `ArmState.fault`;
`recover()` runs clean_error / clean_warn / motion_enable and re-enters
servo mode. The xArm Gripper's position is 0 (closed) .. 850 (open) pulses.

`api_class` defaults to `xarm.wrapper.XArmAPI`; tests pass a stand-in.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hardware.arms.servo_stream import ServoStream
from hardware.config import RobotConfig, RobotConfigError
from hardware.robot import ArmState, ArmTarget

GRIPPER_OPEN_PULSES = 850.0
SERVO_MODE, READY_STATE, STOP_STATE = 1, 0, 4


def import_xarm_api() -> Any:
    """xarm.wrapper.XArmAPI, or an error that says how to install it."""
    try:
        from xarm.wrapper import XArmAPI
    except ImportError as e:
        raise ModuleNotFoundError(f"the xArm driver needs xarm-python-sdk: pip install 'embodied[xarm]' ({e})",
                                  name="xarm") from e
    return XArmAPI


def quat_from_rpy(rpy: np.ndarray) -> np.ndarray:
    """xArm roll, pitch, yaw (rad; R = Rz(yaw) Ry(pitch) Rx(roll)) -> (w, x, y, z)."""
    r, p, y = (float(a) / 2 for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy])


def rpy_from_quat(q: np.ndarray) -> np.ndarray:
    """(w, x, y, z) -> xArm roll, pitch, yaw (rad), pitch in [-pi/2, pi/2]."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])


def describe_code(kind: str, code: int) -> str:
    """The SDK's title for a controller error/warning code, when the SDK is installed."""
    try:
        from xarm.core.config import x_code
    except ImportError:
        return ""
    table = x_code.ControllerErrorCodeMap if kind == "error" else x_code.ControllerWarnCodeMap
    return table.get(code, {}).get("en", {}).get("title", "")


class XArm:
    """`ArmDriver` over xarm-python-sdk's XArmAPI.

    host: the control box's address. n_joints: 7 (xArm7), 6 (xArm6, Lite 6) or 5.
    servo_hz: set-points per second in servo mode. gripper: an xArm Gripper is mounted;
    gripper_speed in the SDK's r/min; gripper_deadband: fraction of the full opening.
    settle_s: pause after switching mode/state, as UFACTORY's examples do.
    recover_timeout_s: how long recover() waits for the cleared codes to read back as clear.
    """

    control_modes = ("ee", "joint")

    def __init__(self, host: str, n_joints: int = 7, servo_hz: float = 100.0, gripper: bool = True,
                 gripper_speed: float = 3000.0, gripper_deadband: float = 0.02, settle_s: float = 0.1,
                 recover_timeout_s: float = 1.0, api_class: Any = None):
        if n_joints not in (5, 6, 7):
            raise ValueError(f"n_joints = {n_joints}: an xArm has 5, 6 or 7 joints")
        self.host, self.n_joints, self.has_gripper = host, n_joints, gripper
        self.gripper_speed, self.gripper_deadband, self.settle_s = gripper_speed, gripper_deadband, settle_s
        self.recover_timeout_s = recover_timeout_s
        self.api_class = api_class
        self.api: Any = None
        self.stream = ServoStream(self._send, servo_hz, self._stream_failed, name="xarm-servo")
        self._lock = self.stream.lock  # one lock for every SDK call, the stream thread's included
        self._fault: str | None = None
        self._in_servo_mode = False
        self._gripper_sent: float | None = None

    # ---------------------------------------------------------------- ArmDriver
    def connect(self) -> None:
        with self._lock:
            if self.api is not None:
                return
            api_class = self.api_class or import_xarm_api()
            self.api = api_class(self.host, is_radian=True)
            if not self.api.connected:
                self.api = None
                raise ConnectionError(f"cannot reach an xArm control box at {self.host}: check the address and "
                                      "that the box is powered on")
            self._enable()
            if self.has_gripper:
                self._check("set_gripper_enable", self.api.set_gripper_enable(True))
                self._check("set_gripper_mode", self.api.set_gripper_mode(0))
            self.stream.start()

    def read(self) -> ArmState:
        with self._lock:
            self._require_connected()
            code, angles = self.api.get_servo_angle(is_radian=True)
            self._check("get_servo_angle", code)
            code, pose = self.api.get_position(is_radian=True)
            self._check("get_position", code)
            pose = np.asarray(pose, np.float64)
            speeds = np.asarray(self.api.realtime_joint_speeds, np.float64)
            return ArmState(joint_pos=np.asarray(angles, np.float64)[: self.n_joints],
                            joint_vel=speeds[: self.n_joints] if speeds.size >= self.n_joints
                            else np.zeros(self.n_joints),
                            ee_pos=pose[:3] / 1000.0, ee_quat=quat_from_rpy(pose[3:6]),
                            gripper=self._gripper_opening(), fault=self._fault or self._controller_fault())

    def command(self, target: ArmTarget) -> None:
        """Glide to `target` over its duration; returns at once (the stream thread does the servoing)."""
        with self._lock:
            self._require_connected()
            kind, goal = self._goal(target)  # validates before anything reaches the controller
            fault = self._fault or self._controller_fault()
            if fault is not None:
                raise RuntimeError(f"the xArm is in fault ({fault}); call recover() first")
            if not self._in_servo_mode:
                self._enable()
            current = self.stream.setpoint
            start = current[1] if current is not None and current[0] == kind else self._measured(kind)
            self.stream.glide(kind, start, goal, target.duration)
            self._command_gripper(target.gripper)

    def hold(self) -> None:
        """Stop streaming, then the SDK's software stop; no set-point can follow it."""
        with self._lock:
            self.stream.stop()
            if self.api is not None and self.api.connected:
                self.api.emergency_stop()
            self._in_servo_mode = False

    def recover(self) -> None:
        with self._lock:
            self._require_connected()
            self.stream.stop()
            if not self.api.connected:
                self.api.connect()
            self.api.clean_warn()
            self.api.clean_error()
            self._fault = None
            # the codes read back come with the controller's next state report, a moment later
            deadline = time.monotonic() + self.recover_timeout_s
            while (fault := self._controller_fault()) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if fault is not None:
                raise RuntimeError(f"the xArm still reports {fault}: see UFACTORY Studio, release the e-stop "
                                   "button if pressed, then recover again")
            self._enable()

    def disconnect(self) -> None:
        with self._lock:
            if self.api is None:
                return
            try:
                self.hold()
            finally:
                self.stream.close()
                self.api.disconnect()
                self.api = None

    # ---------------------------------------------------------------- internals
    def _require_connected(self) -> None:
        if self.api is None:
            raise RuntimeError("the xArm driver is not connected: call connect() first")

    def _enable(self) -> None:
        for name, call in (("motion_enable", lambda: self.api.motion_enable(enable=True)),
                           ("set_mode", lambda: self.api.set_mode(SERVO_MODE)),
                           ("set_state", lambda: self.api.set_state(READY_STATE))):
            self._check(name, call())
        time.sleep(self.settle_s)
        self._in_servo_mode = True

    @staticmethod
    def _check(what: str, code: int) -> None:
        if code != 0:
            raise RuntimeError(f"xArm {what} returned code {code} (see xarm_api_code.md in xarm-python-sdk)")

    def _send(self, kind: str, point: np.ndarray) -> None:
        """One servo set-point in xArm units (runs on the stream thread)."""
        if kind == "ee":
            pose = [*(point[:3] * 1000.0), *rpy_from_quat(point[3:])]
            self._check("set_servo_cartesian", self.api.set_servo_cartesian(pose, is_radian=True))
        else:
            self._check("set_servo_angle_j", self.api.set_servo_angle_j([float(v) for v in point], is_radian=True))

    def _stream_failed(self, error: Exception) -> None:
        self._fault = f"servoing stopped: {error}"

    def _measured(self, kind: str) -> np.ndarray:
        state = self.read()
        return np.concatenate([state.ee_pos, state.ee_quat]) if kind == "ee" else state.joint_pos

    def _controller_fault(self) -> str | None:
        if not self.api.connected:
            return f"connection to the xArm at {self.host} lost"
        words = []
        for kind, code in (("error", self.api.error_code), ("warning", self.api.warn_code)):
            if code:
                title = describe_code(kind, code)
                words.append(f"{kind} {code}" + (f" ({title})" if title else ""))
        return ", ".join(words) or None

    def _goal(self, target: ArmTarget) -> tuple[str, np.ndarray]:
        if target.ee_pos is not None:
            quat = np.asarray(target.ee_quat if target.ee_quat is not None else [1, 0, 0, 0], np.float64)
            goal, kind = np.concatenate([np.asarray(target.ee_pos, np.float64).reshape(-1), quat]), "ee"
            if goal.shape != (7,):
                raise ValueError(f"an ee target needs ee_pos (3,) and ee_quat (4,); got {goal.shape[0]} numbers")
        else:
            goal, kind = np.asarray(target.joint_pos, np.float64), "joint"
            if goal.shape != (self.n_joints,):
                raise ValueError(f"this xArm has {self.n_joints} joints; the joint target has shape {goal.shape}")
        if not np.all(np.isfinite(goal)):
            raise ValueError(f"{kind} target {goal} is not finite; refused before it reached the controller")
        if kind == "ee":
            norm = float(np.linalg.norm(goal[3:]))
            if not 0.9 < norm < 1.1:
                raise ValueError(f"ee_quat {goal[3:]} is not a unit quaternion")
            goal[3:] /= norm
        return kind, goal

    def _gripper_opening(self) -> float:
        if not self.has_gripper:
            return 1.0
        code, pulses = self.api.get_gripper_position()
        self._check("get_gripper_position", code)
        return float(np.clip(pulses / GRIPPER_OPEN_PULSES, 0.0, 1.0))

    def _command_gripper(self, opening: float) -> None:
        if not self.has_gripper:
            return
        opening = float(np.clip(opening, 0.0, 1.0))
        if self._gripper_sent is None or abs(opening - self._gripper_sent) > self.gripper_deadband:
            self._check("set_gripper_position", self.api.set_gripper_position(
                opening * GRIPPER_OPEN_PULSES, wait=False, speed=self.gripper_speed))
            self._gripper_sent = opening


def make_driver(config: RobotConfig) -> XArm:
    """[connection]: host, servo_hz, gripper, gripper_speed, gripper_deadband, settle_s, recover_timeout_s
    (see `XArm`)."""
    where = config.source or config.name
    options = dict(config.connection)
    if "host" not in options:
        raise RobotConfigError(where, "[connection] needs host = the xArm control box's address")
    try:
        return XArm(n_joints=config.n_joints, **options)
    except (TypeError, ValueError) as e:
        raise RobotConfigError(where, f"[connection]: {e}") from e
