"""The Franka driver end to end: our franky client against franky-sim, a libfranka server on 127.x.y.z.

franky-sim runs from its own virtual environment (built on first use, see
`hardware.franky_sim`) in its own process, as a robot on the network would.
Nothing is faked: real libfranka TCP/UDP packets, real MuJoCo physics.
Like a real arm, franky-sim serves one client at a time: every test
disconnects its driver before the next one connects.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from embodied.types import Action
from hardware.arms.franka import FrankaArm
from hardware.franky_sim import FrankySim
from hardware.robot import ArmTarget
from hardware.robots import make_robot

# A hung libfranka call must fail the test, not the suite. The first run also builds franky-sim's venv.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sim():
    with FrankySim() as server:
        yield server


@pytest.fixture
def arm(sim):
    arm = FrankaArm(sim.hostname, realtime=False, relative_dynamics=0.2)
    arm.connect()
    arm.recover()
    yield arm
    arm.disconnect()


def wait_until(predicate, timeout_s: float, period_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()


# franky-sim's idle controller lets the last (wrist-flange) joint wobble at about 0.08 rad/s once a motion
# has ended; a real arm brakes it. Rest and stillness are judged on the six joints that carry the hand.
ARM = slice(0, 6)


def settle(arm, timeout_s: float = 3.0):
    """Read until the joints stop moving; return that state."""
    assert wait_until(lambda: np.abs(arm.read().joint_vel[ARM]).max() < 0.01, timeout_s), \
        "the arm did not come to rest"
    return arm.read()


def test_state_reads_what_franky_sim_reports(arm):
    s = arm.read()
    assert s.fault is None
    assert s.joint_pos.shape == (7,) and s.joint_vel.shape == (7,)
    # franky-sim starts at its home posture, fingertips pointing down in front of the base
    assert abs(s.joint_pos[3] - (-1.57)) < 0.3 and abs(s.joint_pos[5] - 1.57) < 0.3
    assert 0.3 < s.ee_pos[0] < 0.8 and abs(s.ee_pos[1]) < 0.2 and 0.2 < s.ee_pos[2] < 0.8
    assert abs(np.linalg.norm(s.ee_quat) - 1) < 1e-6
    down = np.array([0.0, 1.0, 0.0, 0.0])  # (w,x,y,z): 180 deg about x, the hand pointing at the table
    assert abs(float(np.dot(s.ee_quat, down))) > 0.95
    assert 0.0 <= s.gripper <= 1.0


def test_robot_ee_delta_steps_move_the_fingertips_a_few_cm(sim):
    robot = make_robot("franka", connection={"host": sim.hostname, "realtime": False, "relative_dynamics": 0.2})
    try:
        obs = robot.reset("move right")
        start = obs.state["ee_pos"].astype(np.float64)
        spec = robot.spec.action
        for _ in range(4):  # 4 ticks of +1 cm in y at 10 Hz, gripper open
            result = robot.step(Action(np.array([0, 0.01, 0, 0, 0, 0, 1.0]), spec))
            assert not result.done, result.info
        goal = start + [0, 0.04, 0]
        assert wait_until(lambda: np.linalg.norm(robot.arm.read().ee_pos - goal) < 0.003, 3.0), \
            f"fingertips at {robot.arm.read().ee_pos}, wanted {goal}"
        assert abs(float(np.dot(robot.arm.read().ee_quat, obs.state["ee_quat"]))) > 0.999  # orientation kept
    finally:
        robot.close()


def test_joint_move_reaches_its_target_and_can_replace_an_ee_motion(arm):
    s = settle(arm)
    arm.command(ArmTarget(gripper=1.0, duration=0.1, ee_pos=s.ee_pos + [0.05, 0, 0], ee_quat=s.ee_quat))
    time.sleep(0.1)  # mid-motion: the joint target must take over a running Cartesian motion
    goal = s.joint_pos + np.array([0.15, -0.1, 0, 0.1, 0, 0, 0.2])
    arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=goal))
    assert wait_until(lambda: np.abs(arm.read().joint_pos - goal).max() < 0.01, 5.0), \
        f"joints at {arm.read().joint_pos}, wanted {goal}"
    assert arm.read().fault is None


def test_hold_mid_motion_stops_the_arm_short_of_its_target(arm):
    s = settle(arm)
    goal = s.joint_pos + np.array([0.6, 0, 0, 0, 0, 0, 0])
    arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=goal))
    assert wait_until(lambda: abs(arm.read().joint_vel[0]) > 0.2, 2.0), "the arm never got going"
    t0 = time.monotonic()
    arm.hold()
    hold_s = time.monotonic() - t0
    stopped = settle(arm, timeout_s=1.5)
    stop_s = time.monotonic() - t0
    later = (time.sleep(0.5), arm.read())[1]
    assert hold_s < 0.5, f"the braking motion took {hold_s:.2f} s"
    # franky-sim's arm trails the commanded trajectory by ~0.2 s, so it rests a little after the brake ends
    assert stop_s < 1.5, f"the arm came to rest {stop_s:.2f} s after hold()"
    assert np.abs(later.joint_pos[ARM] - stopped.joint_pos[ARM]).max() < 0.005, "the arm kept moving after hold()"
    assert goal[0] - later.joint_pos[0] > 0.3, "hold() let the arm run on toward its target"
    assert later.fault is None  # our own stop is not a fault


def test_recover_then_move_again(arm):
    arm.hold()
    arm.recover()
    s = settle(arm)
    goal = s.joint_pos + np.array([0, 0, 0, 0, 0, 0, -0.3])
    arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=goal))
    assert wait_until(lambda: abs(arm.read().joint_pos[6] - goal[6]) < 0.01, 4.0)


def test_gripper_closes_and_opens(arm):
    arm.read()
    s = settle(arm)
    arm.command(ArmTarget(gripper=0.0, duration=0.1, joint_pos=s.joint_pos))
    # a stroke at 5 cm/s takes 1.6 s; the simulated hand must also settle before it takes the next command
    assert wait_until(lambda: arm.read().gripper < 0.1, 10.0), f"gripper at {arm.read().gripper}"
    arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=s.joint_pos))
    assert wait_until(lambda: arm.read().gripper > 0.85, 10.0), f"gripper at {arm.read().gripper}"


def test_non_finite_target_never_reaches_franky(arm):
    s = settle(arm)
    target = ArmTarget(gripper=1.0, duration=0.1, joint_pos=s.joint_pos + 0.3)
    target.joint_pos[2] = np.nan  # corrupted after ArmTarget checked it
    with pytest.raises(ValueError, match="not finite"):
        arm.command(target)
    time.sleep(0.3)
    assert np.abs(arm.read().joint_pos[ARM] - s.joint_pos[ARM]).max() < 0.005


def test_a_second_client_gets_a_clear_error_instead_of_waiting_forever(arm, sim):
    second = FrankaArm(sim.hostname, realtime=False, gripper=False, connect_timeout_s=1.0)
    with pytest.raises(ConnectionError, match="one client at a time"):
        second.connect()
    assert arm.read().fault is None  # the first client is undisturbed


def test_lost_connection_is_a_fault_and_recover_reconnects():
    with FrankySim() as first:
        host = first.hostname
        arm = FrankaArm(host, realtime=False, gripper=False)
        arm.connect()
        assert arm.read().fault is None
    # the "robot" went away (power cut, cable): reads report it instead of raising
    fault = arm.read().fault
    assert fault is not None and "connection" in fault
    with pytest.raises(RuntimeError, match="fault"):
        arm.command(ArmTarget(gripper=1.0, duration=0.1, joint_pos=np.zeros(7)))
    with FrankySim(hostname=host):  # back at the same address
        arm.recover()
        assert arm.read().fault is None
        arm.disconnect()
