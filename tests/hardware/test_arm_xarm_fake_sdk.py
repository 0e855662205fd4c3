"""The xArm driver at the xarm-python-sdk boundary, with a FAKE XArmAPI (no xArm controller can run here).

`FakeXArmAPI` has XArmAPI's methods and return conventions ((code, value)
tuples, 0 = fine), records every call, follows servo set-points at once, and
behaves like the controller where it matters: servo set-points are refused
unless the arm is in servo mode and ready, a pose out of the arm's reach (metres
sent as millimetres would be) is refused, and error/warning codes persist
until cleaned.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from embodied.types import Action
from hardware.arms.xarm import XArm, quat_from_rpy, rpy_from_quat
from hardware.robot import ArmTarget
from hardware.robots import make_robot

DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # (w,x,y,z): 180 deg about x, the tool pointing at the table


class FakeXArmAPI:
    """Stands in for xarm.wrapper.XArmAPI (see the module docstring)."""

    def __init__(self, port, is_radian=False, **kwargs):
        assert is_radian, "the driver must ask for radians"
        self.calls: list[tuple[str, tuple]] = []
        self.connected = True
        self.mode, self.state, self.enabled = 0, 4, False
        self.error_code = self.warn_code = 0
        self.angles = [0.0, -0.3, 0.0, 0.9, 0.0, 1.2, 0.0]
        self.pose = [300.0, 0.0, 250.0, np.pi, 0.0, 0.0]  # mm, rad
        self.realtime_joint_speeds = [0.0] * 7
        self.gripper_pulses = 850.0

    def _record(self, name, *args):
        self.calls.append((name, args))

    def named(self, name):
        return [a for n, a in self.calls if n == name]

    def motion_enable(self, enable=True, servo_id=None):
        self._record("motion_enable", enable)
        self.enabled = enable
        return 0

    def set_mode(self, mode=0, detection_param=0):
        self._record("set_mode", mode)
        self.mode = mode
        return 0

    def set_state(self, state=0):
        self._record("set_state", state)
        self.state = state if self.error_code == 0 else 4
        return 0

    def _servo_ready(self) -> int:
        return 0 if (self.mode, self.state, self.enabled, self.error_code) == (1, 0, True, 0) else 9

    def set_servo_cartesian(self, mvpose, speed=None, mvacc=None, mvtime=0, is_radian=None, is_tool_coord=False):
        self._record("set_servo_cartesian", list(mvpose), is_radian)
        assert np.all(np.isfinite(mvpose)), f"non-finite set-point {mvpose}"
        if (code := self._servo_ready()) != 0:
            return code
        if not (is_radian and 100 < np.linalg.norm(mvpose[:3]) < 700):  # the xArm7's reach, mm
            return 1
        self.pose = list(mvpose)
        return 0

    def set_servo_angle_j(self, angles, speed=None, mvacc=None, mvtime=None, is_radian=None):
        self._record("set_servo_angle_j", list(angles), is_radian)
        assert np.all(np.isfinite(angles)), f"non-finite set-point {angles}"
        if (code := self._servo_ready()) != 0:
            return code
        self.angles = list(angles)
        return 0

    def get_servo_angle(self, servo_id=None, is_radian=None, is_real=False):
        return 0, list(self.angles)

    def get_position(self, is_radian=None):
        return 0, list(self.pose)

    def emergency_stop(self):
        self._record("emergency_stop")
        self.state = 4

    def clean_error(self):
        self._record("clean_error")
        self.error_code = 0
        return 0

    def clean_warn(self):
        self._record("clean_warn")
        self.warn_code = 0
        return 0

    def set_gripper_enable(self, enable):
        self._record("set_gripper_enable", enable)
        return 0

    def set_gripper_mode(self, mode):
        self._record("set_gripper_mode", mode)
        return 0

    def set_gripper_position(self, pos, wait=False, speed=None, auto_enable=False, timeout=None):
        self._record("set_gripper_position", pos, wait, speed)
        self.gripper_pulses = pos
        return 0

    def get_gripper_position(self):
        return 0, self.gripper_pulses

    def connect(self):
        self._record("connect")
        self.connected = True

    def disconnect(self):
        self._record("disconnect")
        self.connected = False

    def controller_error(self, code: int) -> None:
        """What the controller does on an error: stop and latch the code."""
        self.error_code, self.state = code, 4


@pytest.fixture
def arm():
    arm = XArm("192.168.1.185", n_joints=7, servo_hz=200.0, settle_s=0.0, api_class=FakeXArmAPI)
    arm.connect()
    yield arm
    arm.disconnect()


def wait_until(predicate, timeout_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.005)
    return predicate()


def rotation(q):
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_rpy_is_xarms_fixed_axis_xyz_convention():
    roll, pitch, yaw = 0.3, -0.5, 1.2
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(roll), -s(roll)], [0, s(roll), c(roll)]])
    ry = np.array([[c(pitch), 0, s(pitch)], [0, 1, 0], [-s(pitch), 0, c(pitch)]])
    rz = np.array([[c(yaw), -s(yaw), 0], [s(yaw), c(yaw), 0], [0, 0, 1]])
    q = quat_from_rpy(np.array([roll, pitch, yaw]))
    assert np.allclose(rotation(q), rz @ ry @ rx)
    assert np.allclose(rpy_from_quat(q), [roll, pitch, yaw])
    assert abs(abs(np.dot(quat_from_rpy(np.array([np.pi, 0, 0])), DOWN)) - 1) < 1e-9


def test_xarm_driver_with_fake_sdk_enters_servo_mode_on_connect(arm):
    names = [n for n, _ in arm.api.calls]
    assert names[:3] == ["motion_enable", "set_mode", "set_state"]
    assert arm.api.named("set_mode") == [(1,)] and arm.api.named("set_state") == [(0,)]
    s = arm.read()
    assert np.allclose(s.ee_pos, [0.3, 0.0, 0.25]) and abs(abs(np.dot(s.ee_quat, DOWN)) - 1) < 1e-9
    assert s.joint_pos.shape == (7,) and s.gripper == 1.0 and s.fault is None


def test_xarm_driver_with_fake_sdk_glides_set_servo_cartesian_in_mm_and_radians(arm):
    start = arm.read()
    goal = start.ee_pos + [0.02, 0.01, -0.01]
    arm.command(ArmTarget(gripper=1.0, duration=0.1, ee_pos=goal, ee_quat=DOWN))
    assert wait_until(lambda: np.allclose(arm.api.pose[:3], goal * 1000, atol=1e-6))
    sent = np.array([a[0] for a in arm.api.named("set_servo_cartesian")])
    assert all(a[1] is True for a in arm.api.named("set_servo_cartesian"))
    assert len(sent) >= 10 and np.abs(np.diff(sent[:, 0])).max() < 5.0  # small steps, in mm
    assert np.allclose(np.abs(sent[-1][3]), np.pi) and np.allclose(sent[-1][4:], 0, atol=1e-9)
    assert np.allclose(arm.read().ee_pos, goal)


def test_xarm_driver_with_fake_sdk_glides_set_servo_angle_j_in_radians(arm):
    goal = np.asarray(arm.api.angles) + [0.05, 0, 0, -0.05, 0, 0, 0.1]
    arm.command(ArmTarget(gripper=1.0, duration=0.05, joint_pos=goal))
    assert wait_until(lambda: np.allclose(arm.api.angles, goal))
    assert all(len(a[0]) == 7 and a[1] is True for a in arm.api.named("set_servo_angle_j"))


def test_xarm_driver_with_fake_sdk_hold_stops_and_the_next_command_resumes_servo_mode(arm):
    goal = np.asarray(arm.api.angles) + 0.3
    arm.command(ArmTarget(gripper=1.0, duration=1.0, joint_pos=goal))
    time.sleep(0.05)
    arm.hold()
    assert arm.api.named("emergency_stop") and arm.api.state == 4
    n = len(arm.api.named("set_servo_angle_j"))
    time.sleep(0.05)
    assert len(arm.api.named("set_servo_angle_j")) == n, "a set-point followed the stop"
    assert np.abs(np.asarray(arm.api.angles) - goal).max() > 0.1
    assert arm.read().fault is None  # our own stop is not a fault
    arm.command(ArmTarget(gripper=1.0, duration=0.05, joint_pos=goal))
    assert arm.api.named("set_mode")[-1] == (1,) and arm.api.named("set_state")[-1] == (0,)
    assert wait_until(lambda: np.allclose(arm.api.angles, goal))


def test_xarm_driver_with_fake_sdk_error_code_is_a_fault_until_recovered(arm):
    arm.api.controller_error(22)
    fault = arm.read().fault
    assert "error 22" in fault and "Collision" in fault  # the SDK's own title for code 22
    with pytest.raises(RuntimeError, match="recover"):
        arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=np.asarray(arm.api.angles)))
    arm.recover()
    names = [n for n, _ in arm.api.calls]
    assert {"clean_error", "clean_warn"} <= set(names) and names[-3:] == ["motion_enable", "set_mode", "set_state"]
    assert arm.read().fault is None
    goal = np.asarray(arm.api.angles) + 0.02
    arm.command(ArmTarget(gripper=1.0, duration=0.05, joint_pos=goal))
    assert wait_until(lambda: np.allclose(arm.api.angles, goal))


def test_xarm_driver_with_fake_sdk_warning_code_is_a_fault(arm):
    arm.api.warn_code = 11
    assert "warning 11" in arm.read().fault
    arm.recover()
    assert arm.read().fault is None


def test_xarm_driver_with_fake_sdk_refused_set_point_stops_servoing_as_a_fault(arm):
    arm.command(ArmTarget(gripper=1.0, duration=0.5, joint_pos=np.asarray(arm.api.angles) + 0.1))
    arm.api.state = 4  # the controller left servo mode on its own
    assert wait_until(lambda: arm.read().fault is not None)
    assert "servoing stopped" in arm.read().fault and arm.stream.setpoint is None


def test_xarm_driver_with_fake_sdk_never_sends_non_finite_or_malformed_targets(arm):
    target = ArmTarget(gripper=1.0, duration=0.1, ee_pos=np.array([0.3, 0.0, 0.25]), ee_quat=DOWN.copy())
    target.ee_quat[0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        arm.command(target)
    with pytest.raises(ValueError, match="7 joints"):
        arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=np.zeros(6)))
    time.sleep(0.05)
    assert arm.api.named("set_servo_cartesian") == [] and arm.api.named("set_servo_angle_j") == []


def test_xarm_driver_with_fake_sdk_gripper_opening_maps_to_pulses(arm):
    arm.command(ArmTarget(gripper=0.0, duration=0.1, joint_pos=np.asarray(arm.api.angles)))
    assert arm.api.named("set_gripper_position")[-1][:2] == (0.0, False)  # never blocks the loop
    assert arm.read().gripper == 0.0
    arm.command(ArmTarget(gripper=0.5, duration=0.1, joint_pos=np.asarray(arm.api.angles)))
    assert arm.api.named("set_gripper_position")[-1][0] == pytest.approx(425.0)


def test_xarm_driver_without_the_sdk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "xarm.wrapper", None)  # as if xarm-python-sdk were not installed
    with pytest.raises(ModuleNotFoundError, match=r"embodied\[xarm\]"):
        XArm("192.168.1.185").connect()


def test_make_robot_xarm7_with_fake_sdk_turns_ee_delta_actions_into_servo_poses():
    robot = make_robot("xarm7", connection={"host": "127.0.0.1", "settle_s": 0.0, "api_class": FakeXArmAPI})
    try:
        robot.reset("push")
        for _ in range(3):
            assert not robot.step(Action(np.array([0, 0.01, 0, 0, 0, 0, 1.0]), robot.spec.action)).done
        assert wait_until(lambda: np.allclose(robot.arm.api.pose[:3], [300.0, 30.0, 250.0], atol=1e-3))
    finally:
        api = robot.arm.api
        robot.close()
    assert api.named("emergency_stop") and api.named("disconnect")
