"""The UR driver at the ur_rtde boundary, with a FAKE controller (no UR controller or URSim can run here).

`FakeURController` stands in for the robot behind ur_rtde's three classes
(RTDEControlInterface, RTDEReceiveInterface, DashboardClient): it records
every call, tracks servo set-points at once, and acts like the controller
where it matters: it refuses set-points that are out of reach (a pose in
millimetres would be) or not finite, stops the script on a protective stop,
refuses to unlock one for a while after it, and times its watchdog.
The Robotiq gripper is tested over a real socket against a fake URCap server.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from embodied.geometry import axis_angle_to_quat
from embodied.types import Action
from hardware.arms.ur import URArm, pose_from_ur, ur_pose_from
from hardware.robot import ArmTarget
from hardware.robots import make_robot

DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # (w,x,y,z): tool pointing down, 180 deg about x


class FakeURController:
    """The state of one pretend UR controller, shared by the three fake interfaces."""

    def __init__(self, unlock_delay_s: float = 0.0):
        self.q = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0])
        self.tcp = np.array([0.4, 0.0, 0.3, np.pi, 0.0, 0.0])  # x, y, z m; rotation vector rad
        self.calls: list[tuple[str, tuple]] = []
        self.kick_times: list[float] = []
        self.watchdog_hz: float | None = None
        self.connected = self.program_running = True
        self.protective = self.estop = False
        self.stopped_at = 0.0
        self.unlock_delay_s = unlock_delay_s
        self.lock = threading.Lock()

    def record(self, name: str, *args) -> None:
        with self.lock:
            self.calls.append((name, args))

    def named(self, name: str) -> list[tuple]:
        with self.lock:
            return [a for n, a in self.calls if n == name]

    def protective_stop(self) -> None:
        self.protective, self.program_running, self.stopped_at = True, False, time.monotonic()


class FakeRTDEControl:
    """Stands in for rtde_control.RTDEControlInterface."""

    def __init__(self, host: str, controller: FakeURController):
        self.c = controller
        controller.record("control_init", host)

    def _servo_allowed(self, name: str, target, t, lookahead, gain) -> bool:
        self.c.record(name, list(target), t, lookahead, gain)
        assert np.all(np.isfinite(target)), f"{name} got a non-finite set-point {target}"
        return self.c.connected and self.c.program_running and not self.c.protective

    def servoL(self, pose, speed, acc, t, lookahead, gain):
        if not self._servo_allowed("servoL", pose, t, lookahead, gain):
            return False
        assert np.linalg.norm(pose[:3]) < 1.0, f"servoL pose {pose[:3]} is beyond a UR5e's reach (mm for m?)"
        self.c.tcp = np.asarray(pose, float)
        return True

    def servoJ(self, q, speed, acc, t, lookahead, gain):
        if not self._servo_allowed("servoJ", q, t, lookahead, gain):
            return False
        self.c.q = np.asarray(q, float)
        return True

    def servoStop(self, a=10.0):
        self.c.record("servoStop", a)
        return True

    def setWatchdog(self, min_frequency=10.0):
        self.c.record("setWatchdog", min_frequency)
        self.c.watchdog_hz = min_frequency
        return True

    def kickWatchdog(self):
        self.c.kick_times.append(time.monotonic())
        return True

    def isConnected(self):
        return self.c.connected

    def isProgramRunning(self):
        return self.c.program_running

    def reconnect(self):
        self.c.record("control_reconnect")
        self.c.connected = True
        return True

    def reuploadScript(self):
        self.c.record("reuploadScript")
        self.c.program_running = not self.c.protective
        return True

    def stopScript(self):
        self.c.record("stopScript")
        self.c.program_running = False

    def disconnect(self):
        self.c.record("control_disconnect")


class FakeRTDEReceive:
    """Stands in for rtde_receive.RTDEReceiveInterface."""

    def __init__(self, host: str, controller: FakeURController):
        self.c = controller

    def getActualQ(self):
        return list(self.c.q)

    def getActualQd(self):
        return [0.0] * 6

    def getActualTCPPose(self):
        return list(self.c.tcp)

    def isProtectiveStopped(self):
        return self.c.protective

    def isEmergencyStopped(self):
        return self.c.estop

    def getSafetyStatusBits(self):
        return 1 | (self.c.protective << 2) | (self.c.estop << 7)  # bit 0: normal mode

    def isConnected(self):
        return self.c.connected

    def reconnect(self):
        self.c.record("receive_reconnect")
        self.c.connected = True
        return True

    def disconnect(self):
        pass


class FakeDashboard:
    """Stands in for dashboard_client.DashboardClient."""

    def __init__(self, host: str, controller: FakeURController):
        self.c = controller

    def connect(self, timeout_ms=2000):
        self.c.record("dashboard_connect")

    def unlockProtectiveStop(self):
        self.c.record("unlockProtectiveStop")
        if time.monotonic() - self.c.stopped_at < self.c.unlock_delay_s:
            raise RuntimeError("Cannot unlock protective stop until 5s after occurrence")  # the controller's rule
        self.c.protective = False

    def closeSafetyPopup(self):
        self.c.record("closeSafetyPopup")

    def disconnect(self):
        pass


def fake_classes(controller: FakeURController) -> dict:
    """The three ur_rtde classes, bound to one fake controller (what URArm's class arguments take)."""
    return {"control_class": lambda host: FakeRTDEControl(host, controller),
            "receive_class": lambda host: FakeRTDEReceive(host, controller),
            "dashboard_class": lambda host: FakeDashboard(host, controller)}


@pytest.fixture
def fake():
    return FakeURController(unlock_delay_s=0.3)


@pytest.fixture
def arm(fake):
    arm = URArm("192.168.1.10", servo_hz=200.0, lookahead_time=0.05, gain=500.0, watchdog_hz=10.0, **fake_classes(fake))
    arm.connect()
    yield arm
    arm.disconnect()


def wait_until(predicate, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.005)
    return predicate()


def test_pose_conversion_between_ur_rotation_vectors_and_quaternions():
    pos, quat = pose_from_ur([0.4, -0.1, 0.3, np.pi, 0, 0])
    assert np.allclose(pos, [0.4, -0.1, 0.3]) and abs(abs(np.dot(quat, DOWN)) - 1) < 1e-6
    q = axis_angle_to_quat(np.array([0.1, -0.2, 0.3])).astype(float)
    back = ur_pose_from(np.array([0.5, 0.0, 0.2]), q)
    assert np.allclose(back, [0.5, 0.0, 0.2, 0.1, -0.2, 0.3], atol=1e-6)


def test_ur_driver_with_fake_rtde_glides_servoL_in_metres_and_rotation_vectors(arm, fake):
    start = arm.read()
    assert np.allclose(start.ee_pos, [0.4, 0.0, 0.3]) and start.fault is None and start.gripper == 1.0
    goal = start.ee_pos + [0.02, -0.01, 0.0]
    arm.command(ArmTarget(gripper=1.0, duration=0.1, ee_pos=goal, ee_quat=DOWN))
    assert wait_until(lambda: np.allclose(fake.tcp[:3], goal, atol=1e-9), 1.0)
    poses = np.array([a[0] for a in fake.named("servoL")])
    # a glide, not a jump: many set-points marching from start to goal, each a small step
    assert len(poses) >= 10 and np.abs(np.diff(poses[:, 0])).max() < 0.005
    assert np.all(np.diff(poses[:, 0]) >= -1e-12)
    assert np.allclose(np.abs(poses[-1][3:]), [np.pi, 0, 0], atol=1e-6)  # rotation vector, rad
    t, lookahead, gain = fake.named("servoL")[-1][1:]
    assert (t, lookahead, gain) == (pytest.approx(1 / 200), 0.05, 500.0)
    assert np.allclose(arm.read().ee_pos, goal)


def test_ur_driver_with_fake_rtde_streams_servoJ_in_radians(arm, fake):
    goal = fake.q + np.array([0.05, 0, 0, 0, 0, -0.05])
    arm.command(ArmTarget(gripper=1.0, duration=0.05, joint_pos=goal))
    assert wait_until(lambda: np.allclose(fake.q, goal), 1.0)
    assert len(fake.named("servoJ")[-1][0]) == 6
    assert np.allclose(arm.read().joint_pos, goal)


def test_ur_driver_with_fake_rtde_arms_the_watchdog_and_kicks_it_after_every_servo_command(arm, fake):
    assert fake.named("setWatchdog") == [(10.0,)]
    kicks_before = len(fake.kick_times)
    arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=fake.q + 0.01))
    time.sleep(0.2)
    arm.hold()
    servo_calls = len(fake.named("servoJ"))
    assert servo_calls > 0 and len(fake.kick_times) - kicks_before >= servo_calls
    # between motions the stream keeps the watchdog fed, well inside its 100 ms
    t0 = time.monotonic()
    time.sleep(0.3)
    idle = [t for t in fake.kick_times if t > t0]
    assert len(idle) > 10 and np.diff([t0, *idle]).max() < 1 / fake.watchdog_hz


def test_ur_driver_with_fake_rtde_hold_calls_servoStop_and_nothing_follows(arm, fake):
    goal = fake.q + 0.3
    arm.command(ArmTarget(gripper=1.0, duration=1.0, joint_pos=goal))
    time.sleep(0.1)
    arm.hold()
    assert fake.named("servoStop") == [(10.0,)]
    n = len(fake.named("servoJ"))
    time.sleep(0.1)
    assert len(fake.named("servoJ")) == n, "a set-point followed servoStop"
    assert np.abs(fake.q - goal).max() > 0.1  # the glide was cut short
    assert arm.stream.setpoint is None


def test_ur_driver_with_fake_rtde_never_sends_non_finite_or_malformed_targets(arm, fake):
    target = ArmTarget(gripper=1.0, duration=0.1, joint_pos=fake.q.copy())
    target.joint_pos[1] = np.inf  # corrupted after ArmTarget checked it
    with pytest.raises(ValueError, match="not finite"):
        arm.command(target)
    with pytest.raises(ValueError, match="6 joints"):
        arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=np.zeros(7)))
    time.sleep(0.05)
    assert fake.named("servoJ") == [] and fake.named("servoL") == []


def test_ur_driver_with_fake_rtde_protective_stop_is_a_fault_until_recovered(arm, fake):
    arm.command(ArmTarget(gripper=1.0, duration=0.5, joint_pos=fake.q + 0.2))
    time.sleep(0.05)
    fake.protective_stop()
    assert wait_until(lambda: arm.read().fault is not None, 1.0)
    assert "protective stop" in arm.read().fault
    with pytest.raises(RuntimeError, match="recover"):
        arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=fake.q))
    arm.recover()  # the controller refuses the unlock for 0.3 s: the driver retries
    assert len(fake.named("unlockProtectiveStop")) >= 2 and fake.named("closeSafetyPopup")
    assert fake.named("reuploadScript") and fake.named("setWatchdog")[-1] == (10.0,)
    assert arm.read().fault is None
    goal = fake.q + 0.02
    arm.command(ArmTarget(gripper=1.0, duration=0.05, joint_pos=goal))
    assert wait_until(lambda: np.allclose(fake.q, goal), 1.0)


def test_ur_driver_with_fake_rtde_emergency_stop_needs_a_person(arm, fake):
    fake.estop, fake.program_running = True, False
    assert "emergency stop" in arm.read().fault
    with pytest.raises(RuntimeError, match="e-stop"):
        arm.recover()


def test_ur_driver_with_fake_rtde_lost_connection_is_a_fault_and_recover_reconnects(arm, fake):
    fake.connected = False
    assert "connection" in arm.read().fault
    arm.recover()
    assert fake.named("control_reconnect") and fake.named("receive_reconnect")
    assert arm.read().fault is None


def test_ur_driver_without_ur_rtde_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "rtde_control", None)  # as if ur_rtde were not installed
    with pytest.raises(ModuleNotFoundError, match=r"embodied\[ur\]"):
        URArm("192.168.1.10").connect()


def test_make_robot_ur5e_with_fake_rtde_turns_ee_delta_actions_into_servoL_targets(fake):
    robot = make_robot("ur5e", connection={"host": "127.0.0.1", "servo_hz": 200.0, **fake_classes(fake)})
    try:
        obs = robot.reset("push")
        assert obs.state["joint_pos"].shape == (6,)
        for _ in range(3):
            result = robot.step(Action(np.array([0.01, 0, 0, 0, 0, 0, 1.0]), robot.spec.action))
            assert not result.done
        assert wait_until(lambda: np.allclose(fake.tcp[:3], [0.43, 0.0, 0.3], atol=1e-6), 1.0)
    finally:
        robot.close()
    assert fake.named("stopScript")


class FakeRobotiqURCap:
    """A FAKE Robotiq URCap socket server on 127.0.0.1: the ASCII protocol, a finger position that jumps to goal."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.vars = {"ACT": 0, "STA": 0, "POS": 0, "GTO": 0, "SPE": 0, "FOR": 0}
        self.lines: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.server.accept()
        with conn:
            for line in conn.makefile("r"):
                self.lines.append(line.strip())
                cmd, var, *val = line.split()
                if cmd == "SET":
                    self.vars[var] = int(val[0])
                    if var == "ACT":
                        self.vars["STA"] = 3
                    conn.sendall(b"ack\n")
                else:
                    conn.sendall(f"{var} {self.vars[var]}\n".encode())


def test_ur_driver_with_fake_rtde_drives_a_robotiq_over_the_urcap_socket(fake):
    urcap = FakeRobotiqURCap()
    arm = URArm("127.0.0.1", servo_hz=200.0, gripper="robotiq", robotiq_port=urcap.port, **fake_classes(fake))
    arm.connect()
    try:
        assert urcap.lines[:2] == ["SET ACT 1", "GET STA"] and "SET GTO 1" in urcap.lines
        assert arm.read().gripper == 1.0  # POS 0 = open
        arm.command(ArmTarget(gripper=0.0, duration=0.1, joint_pos=fake.q))
        assert "SET POS 255" in urcap.lines and arm.read().gripper == 0.0
    finally:
        arm.disconnect()
