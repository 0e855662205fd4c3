"""Dynamixel X series (XL330, XL430, XM430, XC430, ...) on protocol 2.0: control table and safety settings.

Addresses from the ROBOTIS e-manual's X-series control table; every X
model used by low-cost arms shares them. Units: position in ticks (4096 per
revolution, 2048 = the horn's middle), velocity in 0.229 rpm, watchdog in 20 ms.

What `configure` sets on every motor, and why:

- Operating_Mode = 3 (position control): the only mode in which the motor
  itself enforces Min/Max_Position_Limit (extended position mode ignores them);
- Min/Max_Position_Limit = the calibrated range (ticks): a goal outside it is
  refused by the motor, whatever the host sends;
- Profile_Velocity (and Profile_Acceleration) from the robot's velocity limit:
  the motor's own trajectory generator caps its speed;
- Bus_Watchdog (address 98, units of 20 ms): when no instruction packet
  reaches a motor for that long while its torque is on, it stops where it is,
  the register reads -1 and goal writes are refused until 0 is written
  (`clear_fault`). The driver keeps the bus busy (a streaming thread), so the
  watchdog fires when the host process dies or hangs, or the cable is pulled.

EEPROM registers (mode, limits) can only be written with torque off, so
`configure` writes them only when they differ from what the motor holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from hardware.motors.bus import ControlTable, MotorBus, Register

R = Register
TABLE = ControlTable(
    series="dynamixel-x",
    protocol="dynamixel",
    registers={
        # EEPROM (written with torque off only)
        "Model_Number": R(0, 2, eeprom=True),
        "Firmware_Version": R(6, 1, eeprom=True),
        "ID": R(7, 1, eeprom=True),
        "Baud_Rate": R(8, 1, eeprom=True),
        "Return_Delay_Time": R(9, 1, eeprom=True),
        "Drive_Mode": R(10, 1, eeprom=True),
        "Operating_Mode": R(11, 1, eeprom=True),
        "Homing_Offset": R(20, 4, twos=True, eeprom=True),
        "Temperature_Limit": R(31, 1, eeprom=True),
        "Max_Voltage_Limit": R(32, 2, eeprom=True),
        "Min_Voltage_Limit": R(34, 2, eeprom=True),
        "PWM_Limit": R(36, 2, eeprom=True),
        "Current_Limit": R(38, 2, eeprom=True),
        "Velocity_Limit": R(44, 4, eeprom=True),
        "Max_Position_Limit": R(48, 4, eeprom=True),
        "Min_Position_Limit": R(52, 4, eeprom=True),
        "Shutdown": R(63, 1, eeprom=True),
        # RAM
        "Torque_Enable": R(64, 1),
        "LED": R(65, 1),
        "Status_Return_Level": R(68, 1),
        "Hardware_Error_Status": R(70, 1),
        "Position_D_Gain": R(80, 2),
        "Position_I_Gain": R(82, 2),
        "Position_P_Gain": R(84, 2),
        "Bus_Watchdog": R(98, 1, twos=True),
        "Goal_PWM": R(100, 2, twos=True),
        "Goal_Current": R(102, 2, twos=True),
        "Goal_Velocity": R(104, 4, twos=True),
        "Profile_Acceleration": R(108, 4),
        "Profile_Velocity": R(112, 4),
        "Goal_Position": R(116, 4, twos=True),
        "Moving": R(122, 1),
        "Present_Current": R(126, 2, twos=True),
        "Present_Velocity": R(128, 4, twos=True),
        "Present_Position": R(132, 4, twos=True),
        "Present_Input_Voltage": R(144, 2),
        "Present_Temperature": R(146, 1),
    },
    models={"xl330-m077": 1190, "xl330-m288": 1200, "xl430-w250": 1060, "xm430-w210": 1030,
            "xm430-w350": 1020, "xc430-w150": 1070, "xm540-w270": 1120},
    resolution=4096,
    velocity_unit=0.229 * 2 * math.pi / 60,  # rad/s per unit (0.229 rpm)
)

POSITION_MODE = 3
WATCHDOG_UNIT_S = 0.02
WATCHDOG_MAX = 127
WATCHDOG_TRIPPED = -1
# Profile_Acceleration unit: 214.577 rev/min^2; 0 = unlimited. A gentle default for arms that start at rest.
PROFILE_ACCELERATION = 50

# Read every control cycle in one SYNC READ (addresses 98..135): watchdog state, velocity, position.
STATE_REGISTERS = ("Bus_Watchdog", "Present_Velocity", "Present_Position")


def watchdog_units(seconds: float) -> int:
    """Watchdog period (s) -> register value (20 ms units, rounded up so the motor never waits less than asked)."""
    if not seconds > 0:
        raise ValueError(f"watchdog period must be > 0 s, got {seconds}")
    units = math.ceil(round(seconds / WATCHDOG_UNIT_S, 6))
    if units > WATCHDOG_MAX:
        raise ValueError(f"Dynamixel bus watchdog is at most {WATCHDOG_MAX * WATCHDOG_UNIT_S:.2f} s, "
                         f"got {seconds} s; lower watchdog_s in the robot config")
    return units


def speed_units(rad_per_s: float) -> int:
    """Velocity limit (rad/s) -> Profile_Velocity units (0.229 rpm), at least 1 (0 would mean unlimited)."""
    return max(1, round(rad_per_s / TABLE.velocity_unit))


def configure(bus: MotorBus, ranges: Mapping[int, tuple[int, int]], watchdog_s: float,
              max_velocity: Mapping[int, float] | None = None) -> list[str]:
    """Write the motors' own limits and watchdog (see the module docstring); returns what was set, in words.

    ranges: {id: (min_tick, max_tick)}. max_velocity: {id: rad/s}. Torque is left off.
    """
    ids = list(ranges)
    wanted = {"Operating_Mode": {i: POSITION_MODE for i in ids},
              "Min_Position_Limit": {i: int(ranges[i][0]) for i in ids},
              "Max_Position_Limit": {i: int(ranges[i][1]) for i in ids}}
    current = bus.sync_read(["Operating_Mode", "Max_Position_Limit", "Min_Position_Limit"], ids)
    stale = [name for name, values in wanted.items()
             if any(current[name][k] != values[i] for k, i in enumerate(ids))]
    bus.set_torque(False, ids)
    for name in stale:
        for i in ids:
            bus.write(name, i, wanted[name][i])
    units = watchdog_units(watchdog_s)
    for i in ids:
        bus.write("Bus_Watchdog", i, 0)   # also clears a latched watchdog error
        bus.write("Bus_Watchdog", i, units)
        bus.write("Profile_Acceleration", i, PROFILE_ACCELERATION)
        if max_velocity:
            bus.write("Profile_Velocity", i, speed_units(max_velocity[i]))
    notes = [f"position mode with the motors' own position limits {dict(ranges)} (ticks)",
             f"bus watchdog {units * WATCHDOG_UNIT_S * 1000:.0f} ms (register 98 = {units})"]
    if max_velocity:
        notes.append(f"profile velocity {dict(max_velocity)} rad/s")
    return notes


def clear_fault(bus: MotorBus, ids: Sequence[int], watchdog_s: float) -> None:
    """Clear a tripped bus watchdog (write 0, then re-arm it)."""
    units = watchdog_units(watchdog_s)
    for i in ids:
        bus.write("Bus_Watchdog", i, 0)
        bus.write("Bus_Watchdog", i, units)


def fault(state: Mapping[str, np.ndarray], ids: Sequence[int], status_errors: Mapping[int, int]) -> str | None:
    """A tripped watchdog or a hardware alert in one cycle's state, in words; None when all is well.

    status_errors: {id: error byte of its last status packet}; bit 7 is the hardware alert.
    """
    tripped = [i for i, v in zip(ids, state["Bus_Watchdog"]) if v == WATCHDOG_TRIPPED]
    if tripped:
        return f"bus watchdog tripped on motor ids {tripped}: no command reached them in time; reset() re-arms"
    alert = [i for i in ids if status_errors.get(i, 0) & 0x80]
    if alert:
        return (f"hardware error alert on motor ids {alert} (overload, overheating or voltage: read "
                f"Hardware_Error_Status); remove the cause, then power-cycle the motors")
    return None
