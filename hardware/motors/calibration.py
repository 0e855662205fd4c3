"""Per-motor calibration of a bus arm: where each joint's zero is, which way it turns, how far it may go.

A servo reports its horn angle in ticks (0..resolution-1 per turn); where
that is on the arm depends on how the horn was mounted. The calibration maps
ticks to joint angles and back, per motor:

    joint angle (rad) = direction * (ticks - homing_offset) * 2*pi / resolution
    allowed travel    = [range_min, range_max] ticks   (also written to the motor's own limits)

The last motor is the gripper: its homing_offset is the closed position and
`direction` is the way the ticks go as the jaws open, so

    opening in [0, 1] = direction * (ticks - homing_offset) / span,
    span = range_max - homing_offset (direction +1) or homing_offset - range_min (direction -1).

Directions come from the arm's assembly (`hardware.arms.bus_arm` knows the
SO-100's and Koch's); if a joint turns the wrong way, flip its `direction` in the file.

The file is JSON in a user folder (`default_path`), one per robot:

    {"format": "embodied-bus-calibration/1", "robot": "so100", "protocol": "feetech", "resolution": 4096,
     "motors": {"shoulder_pan": {"id": 1, "homing_offset": 2048, "direction": 1,
                                 "range_min": 1024, "range_max": 3072}, ...}}

`record_calibration` makes one with a person's help: torque off, the person
puts the arm in the zero pose (upper arm vertical, forearm and wrist pointing
straight forward, jaws closed), then moves every joint through its whole
range while the bus is read at 50 Hz. Run it as
`python -m hardware.motors.calibration so100` (or a robot config path).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardware.motors.bus import MotorBus

FORMAT = "embodied-bus-calibration/1"
CALIBRATION_DIR_ENV = "EMBODIED_CALIBRATION_DIR"
MIN_SPAN_TICKS = 100   # a joint that moved less than this during recording was not moved: refuse


class CalibrationError(ValueError):
    """A calibration file is missing, malformed or does not fit the arm; the message names the file."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


def default_path(robot: str) -> Path:
    """$EMBODIED_CALIBRATION_DIR/<robot>.json, else ~/.config/embodied/calibration/<robot>.json."""
    root = os.environ.get(CALIBRATION_DIR_ENV) or Path.home() / ".config" / "embodied" / "calibration"
    return Path(root).expanduser() / f"{robot}.json"


@dataclasses.dataclass(frozen=True)
class MotorCalibration:
    """One motor. homing_offset, range_min, range_max: ticks; direction: +1 or -1 (see the module docstring)."""

    id: int
    homing_offset: int
    direction: int
    range_min: int
    range_max: int


@dataclasses.dataclass(frozen=True)
class Calibration:
    """All motors of one arm, in bus order; the last one is the gripper."""

    robot: str
    protocol: str
    resolution: int
    motors: Mapping[str, MotorCalibration]

    def __post_init__(self) -> None:
        problems = []
        for name, m in self.motors.items():
            if m.direction not in (1, -1):
                problems.append(f"{name}: direction must be 1 or -1, got {m.direction}")
            if not 0 <= m.range_min < m.range_max < self.resolution:
                problems.append(f"{name}: need 0 <= range_min < range_max < {self.resolution}, "
                                f"got [{m.range_min}, {m.range_max}]")
            elif not m.range_min <= m.homing_offset <= m.range_max:
                problems.append(f"{name}: homing_offset {m.homing_offset} is outside its range "
                                f"[{m.range_min}, {m.range_max}]")
        if len({m.id for m in self.motors.values()}) != len(self.motors):
            problems.append("two motors share an id")
        if len(self.motors) < 2:
            problems.append("an arm needs at least one joint and a gripper")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.motors)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.motors.values())

    def _arrays(self) -> tuple[np.ndarray, ...]:
        ms = list(self.motors.values())
        return tuple(np.array([getattr(m, f) for m in ms], np.float64)
                     for f in ("homing_offset", "direction", "range_min", "range_max"))

    @property
    def tick_ranges(self) -> dict[int, tuple[int, int]]:
        """{id: (range_min, range_max)} ticks, for the motors' own limit registers."""
        return {m.id: (m.range_min, m.range_max) for m in self.motors.values()}

    def joint_ranges(self) -> np.ndarray:
        """(n_joints, 2) rad: the calibrated travel of every joint (gripper excluded), low <= high."""
        home, direction, lo, hi = (a[:-1] for a in self._arrays())
        scale = 2 * math.pi / self.resolution
        ends = np.stack([direction * (lo - home), direction * (hi - home)], axis=1) * scale
        return np.sort(ends, axis=1)

    def to_joint_space(self, ticks: np.ndarray) -> tuple[np.ndarray, float]:
        """(n_motors,) ticks -> (joint angles (n_joints,) rad, gripper opening in [0, 1])."""
        home, direction, lo, hi = self._arrays()
        ticks = np.asarray(ticks, np.float64)
        q = direction[:-1] * (ticks[:-1] - home[:-1]) * (2 * math.pi / self.resolution)
        span = hi[-1] - home[-1] if direction[-1] > 0 else home[-1] - lo[-1]
        opening = direction[-1] * (ticks[-1] - home[-1]) / span if span > 0 else 0.0
        return q, float(np.clip(opening, 0.0, 1.0))

    def to_ticks(self, q: np.ndarray, opening: float) -> np.ndarray:
        """(joint angles (n_joints,) rad, opening) -> (n_motors,) int ticks, clipped into every motor's range."""
        home, direction, lo, hi = self._arrays()
        q = np.asarray(q, np.float64)
        if q.shape != (len(self.motors) - 1,):
            raise ValueError(f"{self.robot}: expected {len(self.motors) - 1} joint angles, got shape {q.shape}")
        span = hi[-1] - home[-1] if direction[-1] > 0 else home[-1] - lo[-1]
        ticks = np.empty(len(self.motors))
        ticks[:-1] = home[:-1] + direction[:-1] * q * (self.resolution / (2 * math.pi))
        ticks[-1] = home[-1] + direction[-1] * float(np.clip(opening, 0.0, 1.0)) * span
        return np.clip(np.rint(ticks), lo, hi).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "robot": self.robot, "protocol": self.protocol, "resolution": self.resolution,
                "motors": {n: dataclasses.asdict(m) for n, m in self.motors.items()}}


def save_calibration(cal: Calibration, path: str | Path) -> Path:
    """Write atomically (temp file + rename), creating the folder."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(cal.to_dict(), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def load_calibration(path: str | Path, names: Sequence[str] | None = None,
                     ids: Sequence[int] | None = None) -> Calibration:
    """Read and validate a calibration file; `names`/`ids` (bus order) must match when given."""
    path = Path(path).expanduser()
    redo = "record one with `python -m hardware.motors.calibration <robot>`"
    if not path.is_file():
        raise CalibrationError(path, f"no calibration file; {redo}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(path, f"not valid JSON ({e}); fix it or {redo}") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CalibrationError(path, f"not a bus calibration (expected \"format\": \"{FORMAT}\"); {redo}")
    try:
        motors = {}
        for name, m in raw["motors"].items():
            fields = {f.name for f in dataclasses.fields(MotorCalibration)}
            if set(m) != fields:
                raise ValueError(f"motor {name!r} has fields {sorted(m)}, expected {sorted(fields)}")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in m.values()):
                raise ValueError(f"motor {name!r}: every field must be an integer, got {m}")
            motors[name] = MotorCalibration(**m)
        cal = Calibration(str(raw["robot"]), str(raw["protocol"]), int(raw["resolution"]), motors)
    except KeyError as e:
        raise CalibrationError(path, f"missing field {e}; {redo}") from e
    except (TypeError, ValueError, AttributeError) as e:
        raise CalibrationError(path, f"{e}; fix it or {redo}") from e
    if names is not None and tuple(names) != cal.names:
        raise CalibrationError(path, f"motors {list(cal.names)} do not match the arm's {list(names)}; {redo}")
    if ids is not None and tuple(ids) != cal.ids:
        raise CalibrationError(path, f"motor ids {list(cal.ids)} do not match the config's {list(ids)}; {redo}")
    return cal


def record_calibration(bus: MotorBus, names: Sequence[str], directions: Sequence[int], robot: str,
                       zero_pose_ready: Callable[[], None], keep_recording: Callable[[], bool],
                       poll_s: float = 0.02) -> Calibration:
    """Record homing offsets and ranges while a person moves the arm (torque off).

    names/directions: per motor in `bus.ids` order, gripper last. zero_pose_ready: returns once the arm
    is in the zero pose (e.g. waits for Enter). keep_recording: polled between reads; False ends the sweep.
    """
    if len(names) != len(bus.ids) or len(directions) != len(bus.ids):
        raise ValueError(f"{len(bus.ids)} motors on the bus, got {len(names)} names and {len(directions)} directions")
    bus.set_torque(False)
    zero_pose_ready()
    zero = bus.sync_read(["Present_Position"])["Present_Position"]
    lo, hi, last = zero.copy(), zero.copy(), zero.copy()
    half_turn = bus.table.resolution // 2
    while keep_recording():
        now = bus.sync_read(["Present_Position"])["Present_Position"]
        jumped = [n for n, a, b in zip(names, last, now) if abs(int(b) - int(a)) > half_turn]
        if jumped:
            raise ValueError(f"{jumped} crossed the encoder's wrap (0 <-> {bus.table.resolution - 1}) while "
                             f"recording: re-seat that horn so the joint's travel stays inside one turn")
        lo, hi, last = np.minimum(lo, now), np.maximum(hi, now), now
        time.sleep(poll_s)
    still = [f"{n} ({int(h - low)} ticks)" for n, low, h in zip(names, lo, hi) if h - low < MIN_SPAN_TICKS]
    if still:
        raise ValueError(f"these joints barely moved: {still}; move every joint through its whole range")
    motors = {n: MotorCalibration(int(i), int(z), int(d), int(low), int(h))
              for n, i, z, d, low, h in zip(names, bus.ids, zero, directions, lo, hi)}
    return Calibration(robot, bus.table.protocol, bus.table.resolution, motors)


def main(argv: Sequence[str] | None = None) -> None:
    """Interactive calibration: `python -m hardware.motors.calibration <robot or config.toml> [--out path]`."""
    import argparse
    import threading

    from hardware.arms.bus_arm import arm_model, bus_settings
    from hardware.config import load_robot_config

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("robot", help="robot name (so100, koch) or its config .toml")
    parser.add_argument("--port", help="serial port (default: the config's connection.port)")
    parser.add_argument("--out", help="where to write (default: the config's connection.calibration)")
    args = parser.parse_args(argv)
    config = load_robot_config(args.robot)
    settings = bus_settings(config)
    arm = arm_model(settings["arm"])
    port = args.port or settings["port"]
    out = Path(args.out) if args.out else settings["calibration"]
    from hardware.motors.bus import series
    with MotorBus(port, settings["baudrate"], series(settings["protocol"]).TABLE, settings["ids"]) as bus:
        done = threading.Event()

        def wait_enter() -> None:
            input("Torque is off. Put the arm in the zero pose (upper arm vertical, forearm and wrist pointing "
                  "straight forward, jaws closed) and press Enter...")
            print("Now move every joint through its whole range, then press Enter.")
            threading.Thread(target=lambda: (input(), done.set()), daemon=True).start()

        cal = record_calibration(bus, arm.motor_names, arm.directions, config.name, wait_enter,
                                 lambda: not done.is_set())
    print(f"wrote {save_calibration(cal, out)}")


if __name__ == "__main__":
    main()
