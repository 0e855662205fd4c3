"""Universal Robots (e-Series / CB3) through ur_rtde: servoL / servoJ streaming, RTDE watchdog, protective stops.

ur_rtde uploads a control script to the robot and talks to it over RTDE.
`servoL(pose, speed, acceleration, time, lookahead_time, gain)` and
`servoJ(q, ...)` take one set-point per controller cycle; `ServoStream`
sends them at `servo_hz` (500 on e-Series, 125 on CB3), gliding from one
tick's target to the next, with the config's `lookahead_time` (0.03-0.2 s,
smoothing) and `gain` (100-2000, stiffness of the tracking).

Watchdog: `setWatchdog(min_frequency)` makes the controller stop the arm
when RTDE inputs stop arriving; we kick it after every servo command and,
between motions, every stream period. So a hung or killed process stops the
arm within 1/min_frequency s (by default the config's `watchdog_s`).

Units at the boundary: UR poses are [x, y, z, rx, ry, rz] in metres and an
axis-angle rotation vector (rad) in the robot's base frame; we convert
to/from (w, x, y, z) quaternions. Joints are rad, as ours.

Faults: a protective stop, an emergency stop, a safety violation or fault,
a stopped control script or a lost connection becomes `ArmState.fault`.
`recover()` unlocks a protective stop through the dashboard server (the
controller allows it 5 s after the stop; we retry until `unlock_timeout_s`),
reconnects, re-uploads the control script and re-arms the watchdog. An
emergency stop needs a person at the pendant: `recover()` says so.

Gripper: none (the opening reads 1.0) or a Robotiq 2F on the Robotiq URCap's
socket (port 63352, ASCII: "SET POS 0..255", "GET POS"; 255 = closed).

The SDK classes are constructor arguments (defaulting to ur_rtde's own) so
that tests can plug in stand-ins for a controller that cannot run here.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np

from embodied.geometry import axis_angle_to_quat, quat_to_axis_angle
from hardware.arms.servo_stream import ServoStream
from hardware.config import RobotConfig, RobotConfigError
from hardware.robot import ArmState, ArmTarget

N_JOINTS = 6
# getSafetyStatusBits(): bit -> what it means for us (bits 0, 1, 3 are normal/reduced/recovery modes: not faults)
SAFETY_FAULT_BITS = {2: "protective stop", 4: "safeguard stop", 5: "system emergency stop",
                     6: "robot emergency stop", 7: "emergency stop", 8: "safety violation", 9: "safety fault",
                     10: "stopped by safety"}
EMERGENCY_BITS = (5, 6, 7)


def import_ur_rtde() -> tuple[Any, Any, Any]:
    """(RTDEControlInterface, RTDEReceiveInterface, DashboardClient) from ur_rtde, or an install hint."""
    try:
        import dashboard_client
        import rtde_control
        import rtde_receive
    except ImportError as e:
        raise ModuleNotFoundError(f"the UR driver needs ur_rtde: pip install 'embodied[ur]' ({e})",
                                  name="rtde_control") from e
    return rtde_control.RTDEControlInterface, rtde_receive.RTDEReceiveInterface, dashboard_client.DashboardClient


def ur_pose_from(pos: np.ndarray, quat: np.ndarray) -> list[float]:
    """(3,) m + (4,) wxyz -> UR's [x, y, z, rx, ry, rz] (m, rotation vector rad)."""
    return [*map(float, pos), *map(float, quat_to_axis_angle(quat))]


def pose_from_ur(pose: Any) -> tuple[np.ndarray, np.ndarray]:
    """UR's [x, y, z, rx, ry, rz] -> ((3,) m, (4,) wxyz)."""
    p = np.asarray(pose, np.float64)
    if p.shape != (6,):
        raise ValueError(f"a UR pose has 6 numbers [x, y, z, rx, ry, rz], got {p.shape}")
    return p[:3], axis_angle_to_quat(p[3:]).astype(np.float64)


class RobotiqSocketGripper:
    """A Robotiq 2F gripper through the Robotiq URCap's ASCII socket on the robot (port 63352)."""

    def __init__(self, host: str, port: int = 63352, speed: int = 255, force: int = 100, timeout_s: float = 2.0,
                 deadband: float = 0.02):
        self.address, self.speed, self.force, self.timeout_s, self.deadband = (host, port), speed, force, timeout_s, deadband
        self.sock: socket.socket | None = None
        self._sent: float | None = None

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout_s)
        self._set("ACT", 1)
        deadline = time.monotonic() + 5.0
        while self._get("STA") != 3:  # 3 = activation done
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Robotiq gripper at {self.address} did not finish activating in 5 s")
            time.sleep(0.05)
        self._set("SPE", self.speed)
        self._set("FOR", self.force)
        self._set("GTO", 1)

    def command(self, opening: float) -> None:
        opening = float(np.clip(opening, 0.0, 1.0))
        if self._sent is None or abs(opening - self._sent) > self.deadband:
            self._set("POS", round((1.0 - opening) * 255))
            self._sent = opening

    def opening(self) -> float:
        return 1.0 - self._get("POS") / 255.0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _ask(self, line: str) -> str:
        assert self.sock is not None, "connect() the gripper first"
        self.sock.sendall(line.encode() + b"\n")
        reply = self.sock.recv(1024).decode().strip()
        if not reply:
            raise ConnectionError(f"the Robotiq URCap at {self.address} closed the connection")
        return reply

    def _set(self, var: str, value: int) -> None:
        reply = self._ask(f"SET {var} {int(value)}")
        if reply != "ack":
            raise RuntimeError(f"Robotiq gripper refused 'SET {var} {value}': {reply!r}")

    def _get(self, var: str) -> int:
        reply = self._ask(f"GET {var}").split()
        if len(reply) != 2 or reply[0] != var:
            raise RuntimeError(f"Robotiq gripper answered 'GET {var}' with {' '.join(reply)!r}")
        return int(reply[1])


class URArm:
    """`ArmDriver` over ur_rtde.

    host: the controller's address. servo_hz: set-points per second (500 e-Series, 125 CB3).
    lookahead_time (s) and gain: servoL/servoJ's smoothing and tracking gain.
    watchdog_hz: RTDE watchdog minimum frequency. stop_deceleration: servoStop's deceleration (m/s^2).
    unlock_timeout_s: how long recover() keeps trying to unlock a protective stop.
    gripper: "none" or "robotiq" (the URCap socket, robotiq_port).
    control_class / receive_class / dashboard_class: ur_rtde's classes, or stand-ins with the same methods.
    """

    n_joints = N_JOINTS
    control_modes = ("ee", "joint")

    def __init__(self, host: str, servo_hz: float = 500.0, lookahead_time: float = 0.1, gain: float = 300.0,
                 watchdog_hz: float = 10.0, stop_deceleration: float = 10.0, unlock_timeout_s: float = 7.0,
                 gripper: str = "none", robotiq_port: int = 63352,
                 control_class: Any = None, receive_class: Any = None, dashboard_class: Any = None):
        if not 0.03 <= lookahead_time <= 0.2:
            raise ValueError(f"lookahead_time = {lookahead_time} s: UR accepts 0.03 .. 0.2")
        if not 100 <= gain <= 2000:
            raise ValueError(f"gain = {gain}: UR accepts 100 .. 2000")
        if watchdog_hz <= 0 or servo_hz < 2 * watchdog_hz:
            raise ValueError(f"watchdog_hz = {watchdog_hz} must be > 0 and at most half of servo_hz = {servo_hz}")
        if gripper not in ("none", "robotiq"):
            raise ValueError(f"gripper = {gripper!r}: 'none' or 'robotiq'")
        self.host, self.lookahead_time, self.gain = host, lookahead_time, gain
        self.servo_hz, self.watchdog_hz = servo_hz, watchdog_hz
        self.stop_deceleration, self.unlock_timeout_s = stop_deceleration, unlock_timeout_s
        self.gripper_kind, self.robotiq_port = gripper, robotiq_port
        self.classes = (control_class, receive_class, dashboard_class)
        self.control: Any = None
        self.receive: Any = None
        self.dashboard: Any = None
        self.gripper: RobotiqSocketGripper | None = None
        self.stream = ServoStream(self._send, servo_hz, self._stream_failed, idle=self._kick, name="ur-servo")
        # One lock for every SDK call, the stream thread's included: ur_rtde's interfaces are not thread-safe.
        self._lock = self.stream.lock
        self._fault: str | None = None

    # ---------------------------------------------------------------- ArmDriver
    def connect(self) -> None:
        with self._lock:
            if self.control is not None:
                return
            control_cls, receive_cls, dashboard_cls = self.classes
            if None in self.classes:
                control_cls, receive_cls, dashboard_cls = import_ur_rtde()
            try:
                self.receive = receive_cls(self.host)
                self.control = control_cls(self.host)
                self.dashboard = dashboard_cls(self.host)
                self.dashboard.connect()
            except RuntimeError as e:
                raise ConnectionError(f"cannot reach a UR controller at {self.host} ({e}): check the address, that "
                                      "the robot is powered on, and (e-Series) that it is in Remote Control") from e
            self.control.setWatchdog(self.watchdog_hz)
            if self.gripper_kind == "robotiq":
                self.gripper = RobotiqSocketGripper(self.host, self.robotiq_port)
                self.gripper.connect()
            self.stream.start()

    def read(self) -> ArmState:
        with self._lock:
            self._require_connected()
            pos, quat = pose_from_ur(self.receive.getActualTCPPose())
            return ArmState(joint_pos=np.asarray(self.receive.getActualQ(), np.float64),
                            joint_vel=np.asarray(self.receive.getActualQd(), np.float64),
                            ee_pos=pos, ee_quat=quat,
                            gripper=self.gripper.opening() if self.gripper is not None else 1.0,
                            fault=self._fault or self._controller_fault())

    def command(self, target: ArmTarget) -> None:
        """Glide to `target` over its duration; returns at once (the stream thread does the servoing)."""
        with self._lock:
            self._require_connected()
            kind, goal = _goal(target)  # validates before anything reaches the controller
            fault = self._fault or self._controller_fault()
            if fault is not None:
                raise RuntimeError(f"the UR arm is in fault ({fault}); call recover() first")
            current = self.stream.setpoint
            start = current[1] if current is not None and current[0] == kind else self._measured(kind)
            self.stream.glide(kind, start, goal, target.duration)
            if self.gripper is not None:
                self.gripper.command(target.gripper)

    def hold(self) -> None:
        """Stop streaming and decelerate with servoStop; no set-point can follow the stop."""
        with self._lock:
            self.stream.stop()
            if self.control is not None and self.control.isConnected():
                self.control.servoStop(self.stop_deceleration)

    def recover(self) -> None:
        with self._lock:
            self._require_connected()
            self.hold()
            if not (self.control.isConnected() and self.receive.isConnected()):
                self.control.reconnect()
                self.receive.reconnect()
            if self.receive.isEmergencyStopped():
                raise RuntimeError("the UR arm is emergency-stopped: release the e-stop button, confirm on the "
                                   "teach pendant, power on and release the brakes, then recover again")
            if self.receive.isProtectiveStopped():
                self._unlock_protective_stop()
            if not self.control.isProgramRunning():
                self.control.reuploadScript()
                self.control.setWatchdog(self.watchdog_hz)
            self._fault = None
            fault = self._controller_fault()
            if fault is not None:
                raise RuntimeError(f"the UR arm still reports: {fault}; see the teach pendant")

    def disconnect(self) -> None:
        with self._lock:
            if self.control is None:
                return
            try:
                self.hold()
            finally:
                self.stream.close()
                self.control.stopScript()  # ends the watchdog too: nothing left to kick it
                self.control.disconnect()
                self.receive.disconnect()
                self.dashboard.disconnect()
                if self.gripper is not None:
                    self.gripper.close()
                self.control = self.receive = self.dashboard = self.gripper = None

    # ---------------------------------------------------------------- internals
    def _require_connected(self) -> None:
        if self.control is None:
            raise RuntimeError("the UR driver is not connected: call connect() first")

    def _send(self, kind: str, point: np.ndarray) -> None:
        """One servo set-point in UR units, then a watchdog kick (runs on the stream thread)."""
        period = self.stream.period
        if kind == "ee":
            ok = self.control.servoL(ur_pose_from(point[:3], point[3:]), 0.0, 0.0, period, self.lookahead_time,
                                     self.gain)
        else:
            ok = self.control.servoJ([float(v) for v in point], 0.0, 0.0, period, self.lookahead_time, self.gain)
        self.control.kickWatchdog()
        if ok is False:
            raise RuntimeError(f"the controller refused servo{'L' if kind == 'ee' else 'J'}")

    def _kick(self) -> None:
        if self.control is not None and self._fault is None:
            self.control.kickWatchdog()

    def _stream_failed(self, error: Exception) -> None:
        self._fault = f"servoing stopped: {error}"

    def _measured(self, kind: str) -> np.ndarray:
        if kind == "ee":
            return np.concatenate(pose_from_ur(self.receive.getActualTCPPose()))
        return np.asarray(self.receive.getActualQ(), np.float64)

    def _controller_fault(self) -> str | None:
        if not (self.control.isConnected() and self.receive.isConnected()):
            return f"connection to the UR controller at {self.host} lost"
        bits = int(self.receive.getSafetyStatusBits())
        words = [w for b, w in SAFETY_FAULT_BITS.items() if bits >> b & 1]
        if self.receive.isProtectiveStopped() and "protective stop" not in words:
            words.insert(0, "protective stop")
        if self.receive.isEmergencyStopped() and not any(bits >> b & 1 for b in EMERGENCY_BITS):
            words.insert(0, "emergency stop")
        if words:
            return ", ".join(words)
        if not self.control.isProgramRunning():
            return "the ur_rtde control script is not running on the controller"
        return None

    def _unlock_protective_stop(self) -> None:
        # The controller refuses the unlock for 5 s after the stop; the dashboard says so with an error.
        deadline = time.monotonic() + self.unlock_timeout_s
        while True:
            try:
                self.dashboard.unlockProtectiveStop()
                break
            except RuntimeError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not unlock the protective stop in {self.unlock_timeout_s:.0f} s: "
                                       f"{e}") from e
                time.sleep(0.5)
        self.dashboard.closeSafetyPopup()


def _goal(target: ArmTarget) -> tuple[str, np.ndarray]:
    """("ee", (7,) pos + wxyz) or ("joint", (6,) rad), checked finite and well-shaped."""
    if target.ee_pos is not None:
        pos = np.asarray(target.ee_pos, np.float64)
        quat = np.asarray(target.ee_quat if target.ee_quat is not None else [1, 0, 0, 0], np.float64)
        if pos.shape != (3,) or quat.shape != (4,):
            raise ValueError(f"ee target needs ee_pos (3,) and ee_quat (4,), got {pos.shape} and {quat.shape}")
        goal = np.concatenate([pos, quat])
        if np.all(np.isfinite(goal)) and not 0.9 < np.linalg.norm(quat) < 1.1:
            raise ValueError(f"ee_quat {quat} is not a unit quaternion")
        kind = "ee"
    else:
        goal = np.asarray(target.joint_pos, np.float64)
        if goal.shape != (N_JOINTS,):
            raise ValueError(f"a UR arm has {N_JOINTS} joints; joint target has shape {goal.shape}")
        kind = "joint"
    if not np.all(np.isfinite(goal)):
        raise ValueError(f"{kind} target {goal} is not finite; refused before it reached the controller")
    if kind == "ee":
        goal[3:] /= np.linalg.norm(goal[3:])
    return kind, goal


def make_driver(config: RobotConfig) -> URArm:
    """[connection]: host, servo_hz, lookahead_time, gain, stop_deceleration, unlock_timeout_s, gripper,
    robotiq_port; watchdog_hz defaults to 1 / watchdog_s of the config."""
    where = config.source or config.name
    if config.n_joints != N_JOINTS:
        raise RobotConfigError(where, f"a UR arm has {N_JOINTS} joints, not {config.n_joints}")
    options = {"watchdog_hz": 1.0 / config.watchdog_s, **config.connection}
    if "host" not in options:
        raise RobotConfigError(where, "[connection] needs host = the UR controller's address")
    try:
        return URArm(**options)
    except (TypeError, ValueError) as e:
        raise RobotConfigError(where, f"[connection]: {e}") from e

