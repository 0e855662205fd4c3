"""Build a `Robot` from its limits file: `make_robot("ur5e")` or `make_robot("my_arm.toml")`.

The file's `driver` names the module `hardware/arms/<driver>.py`, which has
`make_driver(config: RobotConfig) -> ArmDriver`; each camera's `kind` names
`hardware/cameras/<kind>.py` with `make_camera(config: CameraConfig) -> Camera`.
Vendor SDKs are imported by those modules only, when the robot connects.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from hardware.config import RobotConfig, RobotConfigError, load_robot_config
from hardware.robot import Robot

# driver / camera kind -> the pip extra that brings its SDK
DRIVER_EXTRAS = {"franka": "franka", "ur": "ur", "xarm": "xarm", "dynamixel": "bus", "feetech": "bus",
                 "sim_twin": "sim"}
CAMERA_EXTRAS = {"realsense": "realsense", "opencv": "hardware", "sim": "sim"}


def _module(package: str, name: str, extras: dict[str, str], what: str, source: str):
    try:
        return importlib.import_module(f"hardware.{package}.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"hardware.{package}.{name}":
            raise RobotConfigError(source, f"unknown {what} {name!r}; known: {sorted(extras)}") from e
        raise RobotConfigError(source, f"{what} {name!r} needs {e.name!r}: pip install "
                                       f"'embodied[{extras.get(name, 'hardware')}]'") from e


def make_robot(config: str | Path | RobotConfig = "sim-twin", **overrides: Any) -> Robot:
    """A connected-on-first-reset `Robot`. overrides replace fields of the config (e.g. connection=...)."""
    cfg = config if isinstance(config, RobotConfig) else load_robot_config(config)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    driver_mod = _module("arms", cfg.driver, DRIVER_EXTRAS, "arm driver", cfg.source or cfg.name)
    arm = driver_mod.make_driver(cfg)
    cameras = []
    for cam in cfg.cameras:
        if cam.kind == "sim" and hasattr(arm, "make_camera"):
            cameras.append(arm.make_camera(cam))  # a twin renders its own cameras
        else:
            cameras.append(_module("cameras", cam.kind, CAMERA_EXTRAS, "camera kind",
                                   cfg.source or cfg.name).make_camera(cam))
    return Robot(cfg.name, arm, cameras, cfg.embodiment_spec(), cfg.workspace, cfg.joint_limits)
