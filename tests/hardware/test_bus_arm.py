"""SO-100 and Koch arms through `make_robot`, on the emulated bus: the real SDKs, the real bytes, the motors' own
limits and (Dynamixel) bus watchdog."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from embodied.types import Action
from hardware.arms.bus_arm import KOCH, SO100, forward_kinematics
from hardware.config import RobotConfigError, load_robot_config
from hardware.motors.calibration import Calibration, CalibrationError, MotorCalibration, save_calibration
from hardware.motors.emulator import SYNC_WRITE, BusEmulator
from hardware.robot import ArmTarget
from hardware.robots import make_robot

ROOT = Path(__file__).resolve().parents[2]
JOINT_RANGE = (1024, 3072)     # a quarter turn either side of the middle: +-pi/2 rad
GRIPPER_RANGE = (2048, 3000)   # closed at 2048


def _calibrate(robot: str, path: Path) -> Calibration:
    """The file a person would have recorded for this arm: zero pose at the middle tick."""
    cfg = load_robot_config(robot)
    arm = SO100 if robot == "so100" else KOCH
    motors = {n: MotorCalibration(i, 2048, 1, *(GRIPPER_RANGE if n == "gripper" else JOINT_RANGE))
              for n, i in zip(arm.motor_names, cfg.connection["ids"])}
    cal = Calibration(robot, cfg.connection["protocol"], 4096, motors)
    save_calibration(cal, path)
    return cal


# The shipped 100 ms watchdog assumes a host that is not starved; the test machine is shared (load well
# above its core count), so tests that are not about the watchdog give it a second.
RELAXED_WATCHDOG_S = 1.0


def _robot(robot: str, emu: BusEmulator, cal_path: Path, **overrides):
    cfg = load_robot_config(robot)
    overrides.setdefault("watchdog_s", RELAXED_WATCHDOG_S)
    return make_robot(robot, connection={**cfg.connection, "port": emu.port, "calibration": str(cal_path)},
                      **overrides)


def _emulator(robot: str) -> BusEmulator:
    c = load_robot_config(robot).connection
    return BusEmulator.for_arm(c["protocol"], c["ids"], c["models"])


def _goals_written(emu: BusEmulator, since: float) -> dict[int, list[int]]:
    """Every Goal_Position value the emulator received in SYNC WRITEs since `since`, decoded from the bytes."""
    w = emu.framing.field_bytes
    out: dict[int, list[int]] = {}
    for p in emu.packets(SYNC_WRITE, since):
        address = int.from_bytes(p.params[:w], "little")
        size = int.from_bytes(p.params[w:2 * w], "little")
        assert address == (116 if emu.protocol == "dynamixel" else 42)  # Goal_Position in each control table
        body = p.params[2 * w:]
        for k in range(0, len(body), size + 1):
            out.setdefault(body[k], []).append(int.from_bytes(body[k + 1:k + 1 + size], "little", signed=True))
    return out


def _step_until(robot, action: Action, close_to: np.ndarray, steps: int = 60):
    """Repeat one action until the joints are within 0.01 rad of `close_to` and the gripper of its command."""
    for _ in range(steps):
        result = robot.step(action)
        assert not result.done, result.info
        if (np.allclose(result.obs.state["joint_pos"], close_to, atol=0.01)
                and abs(result.obs.state["gripper"][0] - min(action.value[-1], 1.0)) < 0.01):
            break
    return result


def test_forward_kinematics_zero_pose_and_turned_base():
    pos, quat = forward_kinematics(SO100, np.zeros(5))
    np.testing.assert_allclose(pos, np.sum(SO100.origins, axis=0) + SO100.tool, atol=1e-12)
    np.testing.assert_allclose(quat, [1, 0, 0, 0], atol=1e-12)
    turned, _ = forward_kinematics(SO100, np.array([math.pi / 2, 0, 0, 0, 0]))
    np.testing.assert_allclose(turned, [-pos[1], pos[0], pos[2]], atol=1e-12)  # +x forward becomes +y (left)
    down, _ = forward_kinematics(KOCH, np.array([0, 0, 0, math.pi / 2, 0]))
    wrist = np.sum(KOCH.origins[:4], axis=0)
    reach = KOCH.origins[4][0] + KOCH.tool[0]
    np.testing.assert_allclose(down, wrist + [0, 0, -reach], atol=1e-12)  # +y pitch tips the gripper down


@pytest.mark.parametrize("robot_name", ["so100", "koch"])
def test_robot_step_moves_the_motors_and_hold_stops_them(robot_name, tmp_path):
    cal = _calibrate(robot_name, tmp_path / "cal.json")
    with _emulator(robot_name) as emu:
        robot = _robot(robot_name, emu, tmp_path / "cal.json")
        try:
            obs = robot.reset("wave")
            np.testing.assert_allclose(obs.state["joint_pos"], 0, atol=1e-6)
            assert obs.state["gripper"][0] == 0.0 and robot.spec.action.mode == "joint_pos"
            notes = " ".join(robot.arm.safety_notes)
            assert ("bus watchdog 1000 ms (register 98 = 50)" in notes) if robot_name == "koch" else \
                ("no bus watchdog" in notes)

            q = np.array([0.3, -0.2, 0.25, 0.1, -0.15])
            result = _step_until(robot, Action(np.r_[q, 0.6], robot.spec.action), q)
            np.testing.assert_allclose(result.obs.state["joint_pos"], q, atol=0.01)
            assert result.obs.state["gripper"][0] == pytest.approx(0.6, abs=0.01)
            expected = cal.to_ticks(q, 0.6)
            present = [emu.motor(i).get("Present_Position") for i in cal.ids]
            np.testing.assert_allclose(present, expected, atol=1)
            np.testing.assert_allclose(result.obs.state["ee_pos"], forward_kinematics(robot.arm.arm, q)[0], atol=0.01)
            assert not result.done and "fault" not in result.info

            # a far target, then hold: the motors stop where they are and stay there
            robot.step(Action(np.r_[-q, 0.0], robot.spec.action))
            time.sleep(0.05)
            robot.hold()
            time.sleep(0.1)
            held = [emu.motor(i).position for i in cal.ids]
            time.sleep(0.2)
            assert [emu.motor(i).position for i in cal.ids] == held
            assert [emu.motor(i).get("Goal_Position") for i in cal.ids] == [round(p) for p in held]
            assert not np.allclose(held, cal.to_ticks(-q, 0.0), atol=5)  # it did not get there
        finally:
            robot.close()


@pytest.mark.parametrize("robot_name", ["so100", "koch"])
def test_out_of_range_joint_target_is_clipped_before_any_byte_is_written(robot_name, tmp_path):
    _calibrate(robot_name, tmp_path / "cal.json")
    with _emulator(robot_name) as emu:
        robot = _robot(robot_name, emu, tmp_path / "cal.json")
        try:
            robot.reset()
            since = time.monotonic()
            # 2.0 rad is inside the config's joint limits (the action spec) but beyond this arm's calibrated
            # quarter turn; the gripper asks for more than fully open
            result = _step_until(robot, Action(np.array([2.0, -1.7, 0, 0, 0, 1.0]), robot.spec.action),
                                 np.array([math.pi / 2, -math.pi / 2, 0, 0, 0]))
            np.testing.assert_allclose(result.obs.state["joint_pos"][:2], [math.pi / 2, -math.pi / 2], atol=0.01)
            # the driver's own clip, for a target that never went through the Robot's limits
            robot.arm.command(ArmTarget(gripper=5.0, duration=0.05, joint_pos=np.array([40.0, -40, 40, -40, 40])))
            time.sleep(0.3)
            goals = _goals_written(emu, since)
            ids = load_robot_config(robot_name).connection["ids"]
            assert set(goals) == set(ids) and all(len(v) > 5 for v in goals.values())
            for motor_id in ids[:-1]:
                assert JOINT_RANGE[0] <= min(goals[motor_id]) and max(goals[motor_id]) <= JOINT_RANGE[1], motor_id
            assert GRIPPER_RANGE[0] <= min(goals[ids[-1]]) and max(goals[ids[-1]]) == GRIPPER_RANGE[1]
            assert max(goals[ids[0]]) == JOINT_RANGE[1] and min(goals[ids[1]]) == JOINT_RANGE[0]
            assert [emu.motor(i).refused for i in ids] == [[]] * len(ids)  # the motors never had to refuse anything
            # and the motors themselves hold the same range in their limit registers
            assert [emu.motor(i).get("Max_Position_Limit") for i in ids] == [JOINT_RANGE[1]] * 5 + [GRIPPER_RANGE[1]]
        finally:
            robot.close()


_DYING_DRIVER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from hardware.config import load_robot_config
    from hardware.robot import ArmTarget
    from hardware.robots import make_robot

    port, cal = sys.argv[1], sys.argv[2]
    c = load_robot_config("koch").connection
    robot = make_robot("koch", connection={**c, "port": port, "calibration": cal},
                       max_joint_velocity=(0.5,) * 5, watchdog_s=float(sys.argv[3]))
    robot.reset()
    robot.arm.command(ArmTarget(gripper=0.0, duration=0.05, joint_pos=np.array([1.5, 0, 0, 0, 0])))
    print("moving", flush=True)
    time.sleep(60)
""")


def test_dynamixel_bus_watchdog_stops_the_arm_when_the_driver_process_dies(tmp_path):
    """The driver sets each motor's Bus_Watchdog to watchdog_s; SIGKILL the driver mid-motion and measure how
    long the emulated motors keep moving. 300 ms rather than the shipped 100 ms, so that a busy test machine
    does not trip it before the kill; the stop must come within 60 ms of the period (20 ms units, 1 ms ticks,
    and the emulator's own scheduling on a loaded machine)."""
    watchdog_s = 0.3
    cal = _calibrate("koch", tmp_path / "cal.json")
    with _emulator("koch") as emu:
        driver = subprocess.Popen([sys.executable, "-c", _DYING_DRIVER, emu.port, str(tmp_path / "cal.json"),
                                   str(watchdog_s)],
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert driver.stdout.readline().strip() == "moving", driver.stderr.read()
            start = emu.motor(1).position
            time.sleep(2 * watchdog_s)  # two watchdog periods of motion: the streaming keeps it fed
            assert emu.motor(1).position > start + 50 and emu.motor(1).watchdog_tripped_at is None
            assert emu.motor(1).get("Bus_Watchdog") == 15  # 300 ms in 20 ms units
            killed_at = time.monotonic()
            driver.send_signal(signal.SIGKILL)
            driver.wait(5)
            deadline = time.monotonic() + 2.0
            while emu.motor(1).watchdog_tripped_at is None and time.monotonic() < deadline:
                time.sleep(0.005)
            tripped_at = emu.motor(1).watchdog_tripped_at
            assert tripped_at is not None, "the watchdog never fired"
            last_packet = max(p.time for p in emu.packets(since=killed_at - 0.5))
            stop_ms = (tripped_at - last_packet) * 1000
            print(f"bus watchdog: stopped {stop_ms:.1f} ms after the last packet, "
                  f"{(tripped_at - killed_at) * 1000:.1f} ms after SIGKILL")
            assert 1000 * watchdog_s <= stop_ms <= 1000 * watchdog_s + 60
            assert tripped_at - killed_at <= watchdog_s + 0.06
            stopped = emu.motor(1).position
            time.sleep(0.2)
            assert emu.motor(1).position == stopped and stopped < cal.to_ticks(np.array([1.5, 0, 0, 0, 0]), 0)[0] - 50
            assert all(emu.motor(i).get("Bus_Watchdog") == -1 for i in range(1, 7))
        finally:
            driver.kill()
            driver.wait(5)

        # a new driver process finds the arm stopped; reset() clears the watchdog and motion resumes
        robot = _robot("koch", emu, tmp_path / "cal.json")
        try:
            obs = robot.reset()
            assert obs.state["joint_pos"][0] == pytest.approx(cal.to_joint_space(
                np.r_[stopped, [2048] * 5])[0][0], abs=0.002)
            assert emu.motor(1).get("Bus_Watchdog") == RELAXED_WATCHDOG_S / 0.02
            target = obs.state["joint_pos"].astype(np.float64) - [0.2, 0, 0, 0, 0]
            result = _step_until(robot, Action(np.r_[target, 0.0], robot.spec.action), target)
            np.testing.assert_allclose(result.obs.state["joint_pos"], target, atol=0.01)
        finally:
            robot.close()


def test_garbled_status_packet_is_a_fault_naming_the_motor(tmp_path):
    _calibrate("so100", tmp_path / "cal.json")
    with _emulator("so100") as emu:
        robot = _robot("so100", emu, tmp_path / "cal.json")
        try:
            robot.reset()
            emu.corrupt_replies(3)
            time.sleep(0.1)
            result = robot.step(Action(np.zeros(6), robot.spec.action))
            assert result.done and "motor id 3" in result.info["fault"] and "garbled" in result.info["fault"]
            emu.corrupt_replies(3, 0)
            time.sleep(0.1)
            robot.reset()
            assert "fault" not in robot.step(Action(np.zeros(6), robot.spec.action)).info
        finally:
            robot.close()


def test_bad_configs_are_clear_errors(tmp_path):
    cfg = load_robot_config("koch")
    with pytest.raises(RobotConfigError, match="6 ids and models"):
        make_robot("koch", connection={**cfg.connection, "ids": [1, 2, 3]})
    with pytest.raises(RobotConfigError, match="connection.protocol = 'feetech'"):
        make_robot("koch", connection={**cfg.connection, "protocol": "feetech"})
    with _emulator("koch") as emu:
        robot = _robot("koch", emu, tmp_path / "nowhere.json")
        with pytest.raises(CalibrationError, match="nowhere.json: no calibration file"):
            robot.reset()
