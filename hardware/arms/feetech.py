"""Driver name `feetech` in a robot config: the SO-100 (Feetech STS3215 bus), through `hardware.arms.bus_arm`."""

from __future__ import annotations

from hardware.arms.bus_arm import BusArm
from hardware.arms.bus_arm import make_driver as _make_bus_driver
from hardware.config import RobotConfig


def make_driver(config: RobotConfig) -> BusArm:
    return _make_bus_driver(config, protocol="feetech")
