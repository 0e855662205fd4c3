"""Feetech STS/SMS series (STS3215 of the SO-100/SO-101) on the SCS protocol: control table and safety settings.

Addresses from Feetech's STS/SMS memory table. Units: position in ticks
(4096 per revolution), velocity in ticks/s (sign-magnitude, bit 15),
acceleration in 100 ticks/s^2.

What `configure` sets on every motor:

- Operating_Mode = 0 (position servo) and Min/Max_Position_Limit = the
  calibrated range (ticks): the motor clamps any goal into it. EEPROM writes
  need Lock = 0; the driver locks it again (Lock = 1) afterwards;
- Goal_Velocity (the running speed in position mode, ticks/s) and
  Acceleration from the robot's velocity limit.

No communication watchdog. Unlike Dynamixel's Bus_Watchdog, the STS3215
has no register that stops the motor when packets stop coming: on a lost
link or a dead host it keeps its last goal. What bounds the harm instead:
the driver streams goals that are at most one control tick ahead of the arm,
inside the calibrated range, at a capped speed, so the arm finishes that
short move and holds; and the motor's own overload protection
(Protective_Torque, Protection_Time, Overload_Torque, and the bits of
Unloading_Condition) cuts torque on a stall. Those protection settings are
left at their factory values and reported by `configure`, not changed: the
right thresholds depend on the arm's load, and a wrong one makes a motor
give up under its own weight. The host-side watchdog (robot server) is what
stops the arm when the policy stops speaking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from hardware.motors.bus import ControlTable, MotorBus, Register

R = Register
TABLE = ControlTable(
    series="feetech-sts",
    protocol="feetech",
    registers={
        # EEPROM (written with Lock = 0)
        "Firmware_Major_Version": R(0, 1, eeprom=True),
        "Firmware_Minor_Version": R(1, 1, eeprom=True),
        "Model_Number": R(3, 2, eeprom=True),
        "ID": R(5, 1, eeprom=True),
        "Baud_Rate": R(6, 1, eeprom=True),
        "Return_Delay_Time": R(7, 1, eeprom=True),
        "Response_Status_Level": R(8, 1, eeprom=True),
        "Min_Position_Limit": R(9, 2, eeprom=True),
        "Max_Position_Limit": R(11, 2, eeprom=True),
        "Max_Temperature_Limit": R(13, 1, eeprom=True),
        "Max_Voltage_Limit": R(14, 1, eeprom=True),
        "Min_Voltage_Limit": R(15, 1, eeprom=True),
        "Max_Torque_Limit": R(16, 2, eeprom=True),
        "Unloading_Condition": R(19, 1, eeprom=True),
        "LED_Alarm_Condition": R(20, 1, eeprom=True),
        "P_Coefficient": R(21, 1, eeprom=True),
        "D_Coefficient": R(22, 1, eeprom=True),
        "I_Coefficient": R(23, 1, eeprom=True),
        "Protection_Current": R(28, 2, eeprom=True),
        "Homing_Offset": R(31, 2, sign_bit=11, eeprom=True),
        "Operating_Mode": R(33, 1, eeprom=True),
        "Protective_Torque": R(34, 1, eeprom=True),
        "Protection_Time": R(35, 1, eeprom=True),
        "Overload_Torque": R(36, 1, eeprom=True),
        # RAM
        "Torque_Enable": R(40, 1),
        "Acceleration": R(41, 1),
        "Goal_Position": R(42, 2),
        "Goal_Time": R(44, 2),
        "Goal_Velocity": R(46, 2, sign_bit=15),
        "Torque_Limit": R(48, 2),
        "Lock": R(55, 1),
        "Present_Position": R(56, 2),
        "Present_Velocity": R(58, 2, sign_bit=15),
        "Present_Load": R(60, 2, sign_bit=10),
        "Present_Voltage": R(62, 1),
        "Present_Temperature": R(63, 1),
        "Status": R(65, 1),
        "Moving": R(66, 1),
        "Present_Current": R(69, 2),
    },
    models={"sts3215": 777, "sts3250": 2825},
    resolution=4096,
    velocity_unit=2 * math.pi / 4096,  # rad/s per tick/s
)

POSITION_MODE = 0
ACCELERATION_UNIT = 100.0          # ticks/s^2 per unit of the Acceleration register
ACCELERATION = 20                  # 2000 ticks/s^2 (~3 rad/s^2): a gentle start and stop
PROTECTION_REGISTERS = ("Unloading_Condition", "Protective_Torque", "Protection_Time", "Overload_Torque",
                        "Max_Torque_Limit")
# Status (address 65) bits, as the datasheet names them: any set bit is a fault.
STATUS_BITS = {0: "voltage", 1: "angle sensor", 2: "temperature", 3: "current", 5: "overload"}

# Read every control cycle in one SYNC READ (addresses 56..65): position, velocity, status.
STATE_REGISTERS = ("Present_Position", "Present_Velocity", "Status")


def speed_units(rad_per_s: float) -> int:
    """Velocity limit (rad/s) -> Goal_Velocity (ticks/s), at least 1 (0 would mean the motor's maximum)."""
    return max(1, round(rad_per_s / TABLE.velocity_unit))


def configure(bus: MotorBus, ranges: Mapping[int, tuple[int, int]], watchdog_s: float,
              max_velocity: Mapping[int, float] | None = None) -> list[str]:
    """Write position limits and speed (see the module docstring); returns what was set and found, in words.

    ranges: {id: (min_tick, max_tick)}. watchdog_s is accepted for the common signature; the STS has no
    bus watchdog, which the returned notes say. Torque is left off.
    """
    ids = list(ranges)
    bus.set_torque(False, ids)
    current = bus.sync_read(["Min_Position_Limit", "Max_Position_Limit", "Operating_Mode"], ids)
    for k, i in enumerate(ids):
        want = {"Operating_Mode": POSITION_MODE, "Min_Position_Limit": int(ranges[i][0]),
                "Max_Position_Limit": int(ranges[i][1])}
        stale = {name: v for name, v in want.items() if current[name][k] != v}
        if stale:
            bus.write("Lock", i, 0)
            for name, v in stale.items():
                bus.write(name, i, v)
            bus.write("Lock", i, 1)
        bus.write("Acceleration", i, ACCELERATION)
        if max_velocity:
            bus.write("Goal_Velocity", i, speed_units(max_velocity[i]))
    protection = bus.sync_read(PROTECTION_REGISTERS, ids)
    notes = [f"position mode with the motors' own position limits {dict(ranges)} (ticks)",
             (f"no bus watchdog on {TABLE.series} (watchdog_s = {watchdog_s} is enforced by the host only); "
              f"on a lost link the motors finish their last short move and hold"),
             ("overload protection left at factory values: "
              + ", ".join(f"{n}={protection[n].tolist()}" for n in PROTECTION_REGISTERS))]
    if max_velocity:
        notes.append(f"running speed {dict(max_velocity)} rad/s")
    return notes


def clear_fault(bus: MotorBus, ids: Sequence[int], watchdog_s: float) -> None:
    """Nothing latches in the bus protocol; an overload cut is cleared by enabling torque again."""


def fault(state: Mapping[str, np.ndarray], ids: Sequence[int], status_errors: Mapping[int, int]) -> str | None:
    """Alarms in the Status register or status packets' error byte, in words; None when all is well."""
    bad = {}
    for i, status in zip(ids, state["Status"]):
        bits = int(status) | status_errors.get(i, 0)
        if bits:
            bad[i] = [name for bit, name in STATUS_BITS.items() if bits >> bit & 1] or [f"bits {bits:#04x}"]
    if bad:
        return f"motor alarms {bad}: remove the cause (stall, heat, supply), then reset()"
    return None
