"""Calibration of a bus arm: JSON round trip, clear errors on bad files, ticks <-> radians, and recording it."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from hardware.motors.bus import MotorBus, series
from hardware.motors.calibration import (
    Calibration,
    CalibrationError,
    MotorCalibration,
    default_path,
    load_calibration,
    record_calibration,
    save_calibration,
)
from hardware.motors.emulator import BusEmulator

NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def _calibration() -> Calibration:
    motors = {n: MotorCalibration(i + 1, 2048, 1 if i % 2 == 0 else -1, 1024, 3072) for i, n in enumerate(NAMES[:-1])}
    motors["gripper"] = MotorCalibration(6, 2000, 1, 2000, 3000)  # closed at 2000, open at 3000
    return Calibration("so100", "feetech", 4096, motors)


def test_json_round_trip(tmp_path):
    cal = _calibration()
    path = save_calibration(cal, tmp_path / "nested" / "so100.json")
    assert load_calibration(path, NAMES, [1, 2, 3, 4, 5, 6]) == cal
    assert json.loads(path.read_text())["motors"]["wrist_roll"] == {
        "id": 5, "homing_offset": 2048, "direction": 1, "range_min": 1024, "range_max": 3072}
    assert [p.name for p in path.parent.iterdir()] == ["so100.json"]  # no temp file left behind


def test_ticks_and_radians(tmp_path):
    cal = _calibration()
    q, opening = cal.to_joint_space(np.array([2048 + 1024, 2048 + 1024, 2048, 2048, 2048, 2500]))
    np.testing.assert_allclose(q, [math.pi / 2, -math.pi / 2, 0, 0, 0])  # quarter turn, direction -1 for joint 2
    assert opening == pytest.approx(0.5)
    ticks = cal.to_ticks(np.array([math.pi / 2, -math.pi / 2, 0.1, 0, 0]), 0.5)
    np.testing.assert_array_equal(ticks[:2], [3072, 3072])
    assert ticks[2] == round(2048 + 0.1 * 4096 / (2 * math.pi)) and ticks[5] == 2500
    # beyond the range: clipped to it, whatever was asked
    np.testing.assert_array_equal(cal.to_ticks(np.array([9.0, 9.0, -9.0, 0, 0]), 7.0)[[0, 1, 2, 5]],
                                  [3072, 1024, 1024, 3000])
    np.testing.assert_allclose(cal.joint_ranges(), [[-math.pi / 2, math.pi / 2]] * 5)


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ('{"format": "something-else"}', "not a bus calibration"),
    ('{"format": "embodied-bus-calibration/1", "robot": "so100"}', "missing field 'motors'"),
])
def test_malformed_file_is_an_error_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=problem) as err:
        load_calibration(path)
    assert str(path) in str(err.value) and "python -m hardware.motors.calibration" in str(err.value)


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m["elbow_flex"].update(direction=2), "elbow_flex: direction must be 1 or -1"),
    (lambda m: m["elbow_flex"].update(range_min=3500), "elbow_flex: need 0 <= range_min < range_max"),
    (lambda m: m["wrist_flex"].update(homing_offset=10), "wrist_flex: homing_offset 10 is outside"),
    (lambda m: m["wrist_flex"].update(range_max="3072"), "every field must be an integer"),
    (lambda m: m["wrist_flex"].pop("direction"), "wrist_flex' has fields"),
])
def test_inconsistent_file_is_an_error_naming_file_and_motor(tmp_path, edit, problem):
    raw = _calibration().to_dict()
    edit(raw["motors"])
    path = tmp_path / "so100.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CalibrationError, match=problem) as err:
        load_calibration(path)
    assert str(path) in str(err.value)


def test_file_for_other_motors_is_refused(tmp_path):
    path = save_calibration(_calibration(), tmp_path / "so100.json")
    with pytest.raises(CalibrationError, match=r"motor ids \[1, 2, 3, 4, 5, 6\] do not match the config's"):
        load_calibration(path, NAMES, [11, 12, 13, 14, 15, 16])
    with pytest.raises(CalibrationError, match="no calibration file"):
        load_calibration(tmp_path / "missing.json")


def test_default_path_is_a_user_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBODIED_CALIBRATION_DIR", raising=False)
    assert default_path("koch").parts[-4:] == (".config", "embodied", "calibration", "koch.json")
    monkeypatch.setenv("EMBODIED_CALIBRATION_DIR", str(tmp_path))
    assert default_path("koch") == tmp_path / "koch.json"


def test_record_calibration_while_a_person_moves_the_arm(tmp_path):
    """Torque off, zero pose, then every joint swept by hand: homing = the zero pose, range = the sweep."""
    ids = [1, 2, 3, 4, 5, 6]
    zero = [2000, 2100, 1900, 2048, 2048, 1500]
    sweeps = {1: (1200, 2900), 2: (1500, 2600), 3: (1000, 3000), 4: (1700, 2400), 5: (600, 3500), 6: (1500, 2300)}
    with BusEmulator.for_arm("feetech", ids, ["sts3215"] * 6, positions=zero) as emu:
        emu.motor(1).set("Torque_Enable", 1)  # left on by a previous session: recording must turn it off
        done = threading.Event()

        def person() -> None:  # moves each joint to both ends of its travel, a few steps at a time
            for motor_id, (lo, hi) in sweeps.items():
                for ticks in np.linspace(zero[motor_id - 1], lo, 5).tolist() + np.linspace(lo, hi, 9).tolist():
                    emu.motor(motor_id).move_by_hand(ticks)
                    time.sleep(0.01)
            time.sleep(0.1)
            done.set()

        with MotorBus(emu.port, 1_000_000, series("feetech").TABLE, ids) as bus:
            hand = threading.Thread(target=person)
            cal = record_calibration(bus, NAMES, (1, -1, 1, 1, 1, 1), "so100",
                                     zero_pose_ready=hand.start, keep_recording=lambda: not done.is_set(),
                                     poll_s=0.005)
            hand.join()
    for (name, m), motor_id, z in zip(cal.motors.items(), ids, zero):
        assert (m.id, m.homing_offset, (m.range_min, m.range_max)) == (motor_id, z, sweeps[motor_id]), name
    assert cal.motors["shoulder_lift"].direction == -1
    path = save_calibration(cal, tmp_path / "so100.json")
    assert load_calibration(path, NAMES, ids) == cal


def test_record_calibration_refuses_a_joint_that_was_not_moved():
    polls = iter(range(3))
    with BusEmulator.for_arm("dynamixel", [1, 2], ["xl330-m288"] * 2) as emu, \
            MotorBus(emu.port, 1_000_000, series("dynamixel").TABLE, [1, 2]) as bus, \
            pytest.raises(ValueError, match=r"barely moved: \['wrist_roll \(0 ticks\)', 'gripper"):
        record_calibration(bus, ("wrist_roll", "gripper"), (1, 1), "koch", lambda: None,
                           lambda: next(polls, None) is not None, poll_s=0.0)
