"""`MotorBus` through the real vendor SDKs (dynamixel_sdk, scservo_sdk) on the emulator's pseudo-terminal."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from hardware.motors.bus import MotorBus, MotorBusError, load_sdk, series
from hardware.motors.emulator import SYNC_READ, SYNC_WRITE, BusEmulator

IDS = [1, 2, 3, 4, 5, 6]
ARMS = {"dynamixel": ["xl430-w250"] * 2 + ["xl330-m288"] * 4, "feetech": ["sts3215"] * 6}


@pytest.fixture(params=sorted(ARMS))
def emulated(request):
    """(emulator, connected bus) for each protocol."""
    protocol = request.param
    with BusEmulator.for_arm(protocol, IDS, ARMS[protocol]) as emu, \
            MotorBus(emu.port, 1_000_000, series(protocol).TABLE, IDS) as bus:
        yield emu, bus


def test_ping_reports_each_motors_model_number(emulated):
    emu, bus = emulated
    expected = {i: m for i, m in zip(IDS, ARMS[emu.protocol])}
    bus.check_models(expected)
    assert [bus.ping(i) for i in IDS] == [bus.table.model_number(m) for m in ARMS[emu.protocol]]
    with pytest.raises(MotorBusError, match="id 3: expected"):
        bus.check_models({**expected, 3: "xl430-w250" if emu.protocol == "dynamixel" else "sts3250"})


def test_sync_write_of_six_goals_then_sync_read_moves_the_motors(emulated):
    emu, bus = emulated
    goals = [1500, 1800, 2100, 2400, 2700, 3000]
    bus.set_torque(True)
    bus.sync_write("Goal_Position", goals)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        present = bus.sync_read(["Present_Position"])["Present_Position"]
        if np.array_equal(present, goals):
            break
        time.sleep(0.02)
    assert present.tolist() == goals
    assert [round(emu.motor(i).position) for i in IDS] == goals
    # one SYNC WRITE carried all six goals; every read was one SYNC READ for all six motors
    [write] = emu.packets(SYNC_WRITE)
    assert write.motor_id == 0xFE and len(write.params) == 2 * emu.framing.field_bytes + 6 * (1 + bus.table[
        "Goal_Position"].size)
    assert all(list(p.params[2 * emu.framing.field_bytes:]) == IDS for p in emu.packets(SYNC_READ))


def test_sync_read_decodes_several_registers_in_one_transaction(emulated):
    emu, bus = emulated
    emu.motor(4).move_by_hand(1234)  # torque is off: turn its horn
    before = len(emu.packets(SYNC_READ))
    state = bus.sync_read(series(emu.protocol).STATE_REGISTERS)
    assert len(emu.packets(SYNC_READ)) == before + 1
    assert state["Present_Position"].tolist() == [2048, 2048, 2048, 1234, 2048, 2048]
    assert set(state) == set(series(emu.protocol).STATE_REGISTERS)


def test_corrupt_status_packet_is_an_error_naming_the_motor(emulated):
    emu, bus = emulated
    emu.corrupt_replies(4)  # every status packet of motor 4 gets a bad CRC / checksum
    with pytest.raises(MotorBusError, match=r"motor id 4 .*garbled") as err:
        bus.sync_read(["Present_Position"])
    assert err.value.motor_id == 4
    with pytest.raises(MotorBusError, match="motor id 4 "):
        bus.read("Present_Position", 4)
    emu.corrupt_replies(4, 0)
    assert bus.sync_read(["Present_Position"])["Present_Position"].tolist() == [2048] * 6  # the bus recovered


def test_one_corrupt_reply_is_absorbed_by_a_retry(emulated):
    emu, bus = emulated
    emu.corrupt_replies(2, count=1)
    assert bus.sync_read(["Present_Position"])["Present_Position"].tolist() == [2048] * 6


def test_a_motor_that_does_not_answer_is_named():
    with BusEmulator.for_arm("feetech", [1, 2], ["sts3215"] * 2) as emu, \
            MotorBus(emu.port, 1_000_000, series("feetech").TABLE, [1, 2, 7], retries=0) as bus, \
            pytest.raises(MotorBusError, match=r"motor id 7 .*no status packet") as err:
        bus.sync_read(["Present_Position"])
    assert err.value.motor_id == 7


def test_dynamixel_refusal_in_a_status_packet_is_an_error():
    """A goal beyond Max_Position_Limit is refused by the motor; the acknowledged write says so."""
    with BusEmulator.for_arm("dynamixel", [1], ["xl330-m288"]) as emu:
        with MotorBus(emu.port, 1_000_000, series("dynamixel").TABLE, [1]) as bus:
            bus.write("Max_Position_Limit", 1, 3000)
            bus.set_torque(True)
            with pytest.raises(MotorBusError, match="motor id 1 .* refused writing Goal_Position = 3500"):
                bus.write("Goal_Position", 1, 3500)
            with pytest.raises(MotorBusError, match="refused writing Min_Position_Limit"):
                bus.write("Min_Position_Limit", 1, 10)  # EEPROM with torque on: access error
        assert [r[0] for r in emu.motor(1).refused] == ["Goal_Position", "Min_Position_Limit"]


def test_port_that_does_not_exist_is_a_clear_error():
    bus = MotorBus("/dev/does-not-exist", 1_000_000, series("dynamixel").TABLE, [1])
    with pytest.raises(MotorBusError, match="cannot open /dev/does-not-exist"):
        bus.connect()
    with BusEmulator.for_arm("feetech", [1], ["sts3215"]) as emu, \
            pytest.raises(MotorBusError, match="baud rate 12345"):
        MotorBus(emu.port, 12345, series("feetech").TABLE, [1]).connect()


def test_missing_sdk_names_the_pip_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scservo_sdk", None)  # what an environment without the SDK looks like
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'embodied\[bus\]'"):
        load_sdk("feetech")
