"""Franka Panda / FR3 through franky (libfranka underneath): end-effector and joint targets, gripper, recovery.

franky runs libfranka's 1 kHz loop in its own thread and plans every motion
with ruckig inside the robot's velocity/acceleration/jerk limits, scaled by a
relative dynamics factor (0 < f <= 1). So `command()` hands franky a whole
motion and returns at once (`move(..., asynchronous=True)`); the next
command *replaces* the running motion seamlessly, starting from the arm's
current velocity, which is franky's motion-replacement feature. A tick's
`ArmTarget.duration` is therefore only a hint: franky reaches the target as
fast as the dynamics factor allows.

Units at the boundary: franky gives poses as `Affine` (metres, quaternion
in (x, y, z, w) order); we speak (w, x, y, z). `O_T_EE` is the end-effector
frame configured in Franka Desk (for the Franka Hand: between the fingertips).

Faults: libfranka aborts a motion on a reflex (collision, limit violation)
and franky rethrows the error from `poll_motion()`; a lost connection shows
as a `NetworkException` from any state read. Both become `ArmState.fault`;
`recover()` runs libfranka's automatic error recovery (or reconnects).

The gripper (Franka Hand) is commanded only when the wanted opening changed
by more than `gripper_deadband`, and one command at a time: closing uses a
grasp (it holds an object with `gripper_force` instead of failing on it),
opening a plain move.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from hardware.config import RobotConfig, RobotConfigError
from hardware.robot import ArmState, ArmTarget

N_JOINTS = 7
_KEEP_ALIVE: list[Any] = []  # gripper commands that outlived their driver (see FrankaArm._close)
PREEMPTED = "Move command preempted"  # franky's words when our own stop/replacement ends a motion: not a fault


def import_franky() -> Any:
    """The franky module, or an error that says how to install it."""
    try:
        import franky
    except ImportError as e:
        raise ModuleNotFoundError(
            f"the Franka driver needs franky (franky-control): pip install 'embodied[franka]' ({e})",
            name="franky") from e
    return franky


def wxyz_from_xyzw(q: np.ndarray) -> np.ndarray:
    return np.asarray([q[3], q[0], q[1], q[2]], np.float64)


def xyzw_from_wxyz(q: np.ndarray) -> np.ndarray:
    return np.asarray([q[1], q[2], q[3], q[0]], np.float64)


class FrankaArm:
    """`ArmDriver` over franky.

    host: the robot's FCI address (or franky-sim's loopback address).
    realtime: demand a realtime kernel as libfranka wants on a real arm; False for franky-sim or a test bench.
    relative_dynamics: 0 < f <= 1, scales the arm's velocity, acceleration and jerk limits for every motion.
    hold_dynamics: the same factor for the braking motion of `hold()`; 1.0 brakes as hard as the arm's limits
    allow, whatever the motion's own factor (a hold must not coast).
    gripper: a Franka Hand is attached. gripper_speed m/s, gripper_force N (grasp), gripper_deadband
    (fraction of the full opening a new gripper command must differ by).
    hold_timeout_s: how long `hold()` waits for the stop motion to end.
    connect_timeout_s: how long to wait for the arm's (and the hand's) handshake.
    """

    n_joints = N_JOINTS
    control_modes = ("ee", "joint")

    def __init__(self, host: str, realtime: bool = True, relative_dynamics: float = 0.1, gripper: bool = True,
                 gripper_speed: float = 0.05, gripper_force: float = 20.0, gripper_deadband: float = 0.05,
                 hold_dynamics: float = 1.0, hold_timeout_s: float = 1.0, connect_timeout_s: float = 10.0):
        for name, factor in (("relative_dynamics", relative_dynamics), ("hold_dynamics", hold_dynamics)):
            if not 0.0 < factor <= 1.0:
                raise ValueError(f"{name} = {factor}: must be in (0, 1]; relative_dynamics = 0.1 is a careful start")
        if gripper_speed <= 0 or gripper_force <= 0:
            raise ValueError("gripper_speed (m/s) and gripper_force (N) must be > 0")
        self.host, self.realtime, self.relative_dynamics = host, realtime, relative_dynamics
        self.has_gripper = gripper
        self.gripper_speed, self.gripper_force, self.gripper_deadband = gripper_speed, gripper_force, gripper_deadband
        self.hold_dynamics, self.hold_timeout_s, self.connect_timeout_s = hold_dynamics, hold_timeout_s, connect_timeout_s
        self.gripper_close_timeout_s = 2 * 0.08 / gripper_speed + 5.0  # two full strokes, on a slow machine too
        self.franky: Any = None
        self.robot: Any = None
        self.gripper: Any = None
        self._lock = threading.RLock()   # the watchdog may call hold() while the loop calls command()
        self._fault: str | None = None
        self._last = None                # the last good ArmState, reported again (with the fault) when reads fail
        self._gripper_sent: float | None = None    # opening of the last gripper command
        self._gripper_wanted: float | None = None  # opening asked for while a command was still running
        self._gripper_future: Any = None

    # ---------------------------------------------------------------- ArmDriver
    def connect(self) -> None:
        with self._lock:
            if self.robot is not None:
                return
            self.franky = import_franky()
            self._open()

    def read(self) -> ArmState:
        with self._lock:
            self._require_connected()
            f = self.franky
            try:
                self._poll_motion()
                state = self.robot.state
                if self.robot.has_errors and self._fault is None:
                    self._fault = f"robot errors: {state.current_errors}"
                pose = state.O_T_EE
                opening = self._gripper_opening()
                self._last = ArmState(
                    joint_pos=np.asarray(state.q, np.float64), joint_vel=np.asarray(state.dq, np.float64),
                    ee_pos=np.asarray(pose.translation, np.float64).reshape(3),
                    ee_quat=wxyz_from_xyzw(np.asarray(pose.quaternion).reshape(4)), gripper=opening)
            except (f.Exception, RuntimeError) as e:  # libfranka's errors; RuntimeError: "Net Exception"
                self._fault = f"connection to the arm at {self.host} lost: {e}"
                if self._last is None:
                    raise ConnectionError(f"{self._fault}; is the arm (or franky-sim) running?") from e
            self._dispatch_gripper()
            return dataclasses.replace(self._last, fault=self._fault)

    def command(self, target: ArmTarget) -> None:
        """Start (or redirect) a motion to `target` and return at once."""
        with self._lock:
            self._require_connected()
            motion = self._motion(target)  # validates before anything reaches franky
            if self._fault is not None:
                raise RuntimeError(f"the arm is in fault ({self._fault}); call recover() first")
            f = self.franky
            wanted = f.ControlSignalType.CartesianPose if target.ee_pos is not None else \
                f.ControlSignalType.JointPositions
            running = self.robot.current_control_signal_type if self.robot.is_in_control else None
            if running is not None and running != wanted:
                # libfranka cannot switch control signals mid-motion: brake, then start the new kind.
                self._stop_motion()
            self.robot.move(motion, asynchronous=True)
            self._want_gripper(target.gripper)

    def hold(self) -> None:
        """Brake the running motion at the arm's full (scaled) deceleration and wait until it has stopped."""
        with self._lock:
            if self.robot is not None:
                self._stop_motion()

    def recover(self) -> None:
        with self._lock:
            self._require_connected()
            f = self.franky
            if self._fault is not None and self._fault.startswith("connection"):
                self._close()
                self._open()
            try:
                self._poll_motion()
                ok = self.robot.recover_from_errors()
            except (f.Exception, RuntimeError) as e:
                raise RuntimeError(f"error recovery on the arm at {self.host} failed: {e}") from e
            if not ok or self.robot.has_errors:
                raise RuntimeError(f"the arm at {self.host} still reports errors ({self.robot.state.current_errors}):"
                                   " release the user stop / check Franka Desk, then recover again")
            self._fault = None

    def disconnect(self) -> None:
        with self._lock:
            if self.robot is not None:
                try:
                    self._stop_motion()
                finally:
                    self._close()

    # ---------------------------------------------------------------- internals
    def _open(self) -> None:
        f = self.franky
        rt = f.RealtimeConfig.Enforce if self.realtime else f.RealtimeConfig.Ignore
        try:
            # The global factor stays 1: each motion carries its own, so that a hold can brake harder than we move.
            self.robot = self._connect_within(lambda: f.Robot(self.host, relative_dynamics_factor=1.0,
                                                              realtime_config=rt), "arm")
            self.gripper = self._connect_within(lambda: f.Gripper(self.host), "hand") if self.has_gripper else None
        except f.RealtimeException as e:
            raise RuntimeError(f"{e}: libfranka wants a realtime kernel on a real arm; for franky-sim or a test "
                               "bench set realtime = false in [connection]") from e
        except f.Exception as e:
            raise ConnectionError(f"cannot reach a Franka at {self.host} ({e}): check the FCI address, that FCI is "
                                  "activated in Desk, and the network cable") from e
        self._fault = None
        self._gripper_sent = self._gripper_wanted = None
        self._gripper_future = None

    def _connect_within(self, connect: Any, what: str) -> Any:
        """Run a franky constructor, giving up after connect_timeout_s.

        The arm (and franky-sim) serves one client at a time and leaves a second one waiting for the
        handshake without a timeout of its own; that wait runs on a daemon thread we abandon.
        """
        result: list[Any] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(connect())
            except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
                error.append(e)

        thread = threading.Thread(target=run, name=f"franky-connect-{what}", daemon=True)
        thread.start()
        thread.join(self.connect_timeout_s)
        if error:
            raise error[0]
        if not result:
            raise ConnectionError(f"the Franka {what} at {self.host} did not answer within {self.connect_timeout_s:.0f}"
                                  " s: another program (or another driver in this one) is probably connected to it;"
                                  " an arm serves one client at a time")
        return result[0]

    def _close(self) -> None:
        # franky closes the sockets when its objects go. A gripper freed while its asynchronous command
        # still runs crashes the process (the command's thread uses it), so let the command finish first;
        # one that never ends is kept (its connection too: the hand then serves no new client until we exit).
        future = self._gripper_future
        if future is not None and not future.wait(self.gripper_close_timeout_s):
            _KEEP_ALIVE.append((self.gripper, future))
        self.robot = self.gripper = self._gripper_future = None

    def _require_connected(self) -> None:
        if self.robot is None:
            raise RuntimeError("the Franka driver is not connected: call connect() first")

    def _motion(self, target: ArmTarget) -> Any:
        f = self.franky
        if target.ee_pos is not None:
            pos = _finite(target.ee_pos, (3,), "ee_pos")
            quat = _finite(target.ee_quat if target.ee_quat is not None else [1, 0, 0, 0], (4,), "ee_quat")
            norm = float(np.linalg.norm(quat))
            if not 0.9 < norm < 1.1:
                raise ValueError(f"ee_quat {quat} is not a unit quaternion (norm {norm:.3f})")
            pose = f.Affine(pos, xyzw_from_wxyz(quat / norm))
            return f.CartesianMotion(pose, relative_dynamics_factor=self.relative_dynamics)
        q = _finite(target.joint_pos, (N_JOINTS,), "joint_pos")
        return f.JointMotion(q, relative_dynamics_factor=self.relative_dynamics)

    def _poll_motion(self) -> None:
        """Collect an error that ended the last asynchronous motion (franky rethrows it here)."""
        try:
            self.robot.poll_motion()
        except self.franky.ControlException as e:
            if PREEMPTED not in str(e):
                self._fault = f"motion aborted: {e}"

    def _stop_motion(self) -> None:
        f = self.franky
        if not self.robot.is_in_control:
            return
        kind = self.robot.current_control_signal_type
        stop_motion = f.CartesianStopMotion if kind == f.ControlSignalType.CartesianPose else f.JointStopMotion
        stop = stop_motion(self.hold_dynamics)
        try:
            self.robot.move(stop, asynchronous=True)
            self.robot.join_motion(self.hold_timeout_s)
        except f.ControlException as e:
            if PREEMPTED not in str(e):
                self._fault = f"motion aborted: {e}"
        except f.InvalidMotionTypeException:
            # The motion ended between the check and the stop and another kind is queued: preempt outright.
            self.robot.stop()

    # The gripper: one command in flight; a newer wish waits for it and is sent by the next read or command.
    def _gripper_opening(self) -> float:
        if self.gripper is None:
            return 1.0
        return float(np.clip(self.gripper.width / max(self.gripper.max_width, 1e-6), 0.0, 1.0))

    def _want_gripper(self, opening: float) -> None:
        if self.gripper is None:
            return
        opening = float(np.clip(opening, 0.0, 1.0))
        if self._gripper_sent is None or abs(opening - self._gripper_sent) > self.gripper_deadband:
            self._gripper_wanted = opening
        self._dispatch_gripper()

    def _dispatch_gripper(self) -> None:
        if self.gripper is None or self._gripper_wanted is None:
            return
        if self._gripper_future is not None and not self._gripper_future.wait(0):
            return
        opening, self._gripper_wanted = self._gripper_wanted, None
        width = opening * self.gripper.max_width
        if self._gripper_sent is not None and opening < self._gripper_sent:
            # Wide tolerances: "closed on an object" and "closed on nothing" are both a successful close.
            self._gripper_future = self.gripper.grasp_async(width, self.gripper_speed, self.gripper_force,
                                                            self.gripper.max_width, self.gripper.max_width)
        else:
            self._gripper_future = self.gripper.move_async(width, self.gripper_speed)
        self._gripper_sent = opening


def _finite(v: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.shape != shape:
        raise ValueError(f"ArmTarget.{name} has shape {a.shape}; the Franka driver wants {shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"ArmTarget.{name} is not finite ({a}); refused before it reached the arm")
    return a


def make_driver(config: RobotConfig) -> FrankaArm:
    """[connection]: host, realtime, relative_dynamics, gripper, gripper_speed, gripper_force, gripper_deadband,
    hold_dynamics, hold_timeout_s, connect_timeout_s (see `FrankaArm`)."""
    if config.n_joints != N_JOINTS:
        raise RobotConfigError(config.source or config.name, f"a Franka has {N_JOINTS} joints, not {config.n_joints}")
    options = dict(config.connection)
    if "host" not in options:
        raise RobotConfigError(config.source or config.name, "[connection] needs host = the arm's FCI address")
    try:
        return FrankaArm(**options)
    except (TypeError, ValueError) as e:
        raise RobotConfigError(config.source or config.name, f"[connection]: {e}") from e
