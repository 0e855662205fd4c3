"""Fault drills against a robot server: what happens to the arm when the policy side fails.

Each drill runs a real policy *process* (this module's `policy` command: a
client that streams one constant action), breaks it the way the drill
says, and measures the arm through the server's own embodiment, sampled
every millisecond:

- `kill_drill`: SIGKILL the policy process while the arm moves; the time
  from the kill until the end effector is at rest is the stopping time.
- `freeze_drill`: SIGSTOP it (a hung process or a pulled cable: no packets,
  no FIN), measure the stop, SIGCONT, and check the client carries on.

    python -m hardware.drills policy --address tcp://127.0.0.1:5555   # the child process
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np

REST_SPEED = 0.005      # m/s: the end effector counts as stopped below this
MOVING_SPEED = 0.05     # m/s: ... and as moving above this
SAMPLE_S = 0.001


@dataclasses.dataclass
class DrillResult:
    stop_ms: float          # from the fault to rest (ms)
    speed_before: float     # end-effector speed when the fault happened (m/s)
    travel_mm: float        # how far the end effector went after the fault (mm)
    watchdog_trips: int


def ee_speed(arm, window_s: float = 0.01) -> tuple[float, np.ndarray]:
    """End-effector speed (m/s) over `window_s`, and the position at its end."""
    p0 = np.asarray(arm.read().ee_pos, np.float64)
    time.sleep(window_s)
    p1 = np.asarray(arm.read().ee_pos, np.float64)
    return float(np.linalg.norm(p1 - p0) / window_s), p1


def start_policy_process(address: str, action: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "hardware.drills", "policy", "--address", address,
                             "--action", action], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_moving(server, proc: subprocess.Popen, timeout_s: float = 60.0) -> float:
    """Wait until the policy process has driven the arm for a few ticks and it moves steadily; its speed (m/s)."""
    arm = server.embodiment.arm
    steps0 = server.stats.steps
    deadline = time.monotonic() + timeout_s
    moving = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the policy process exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        if server.stats.steps < steps0 + 4:  # connecting, resetting (a reset teleports the arm), accelerating
            time.sleep(0.01)
            continue
        speed, _ = ee_speed(arm)
        moving = moving + 1 if MOVING_SPEED < speed < 2.0 else 0
        if moving >= 2:
            return speed
    raise TimeoutError("the arm never started moving under the policy process")


def _time_to_rest(arm, start: float, timeout_s: float = 2.0) -> tuple[float, np.ndarray]:
    """Seconds from `start` (monotonic) until the end effector is at rest, and where it rests."""
    while time.monotonic() - start < timeout_s:
        t = time.monotonic()
        speed, pos = ee_speed(arm, 0.01)
        if speed < REST_SPEED:
            return t - start, pos  # at rest during the window that began at t
    raise TimeoutError(f"the arm still moves {timeout_s} s after the fault")


def _drill(server, sig: int, action: str) -> tuple[DrillResult, subprocess.Popen]:
    proc = start_policy_process(server.address, action)
    speed = _wait_moving(server, proc)
    arm = server.embodiment.arm
    p0 = np.asarray(arm.read().ee_pos, np.float64)
    trips = server.stats.watchdog_trips
    t = time.monotonic()
    os.kill(proc.pid, sig)
    elapsed, pos = _time_to_rest(arm, t)
    _wait_for_trip(server, trips, t)
    return DrillResult(1000 * elapsed, speed, 1000 * float(np.linalg.norm(pos - p0)),
                       server.stats.watchdog_trips - trips), proc


def _wait_for_trip(server, trips_before: int, fault_time: float, grace_s: float = 0.5) -> None:
    """Wait until the watchdog has tripped, or `grace_s` past its deadline (then the drill reports 0 trips).

    The arm can come to rest before the watchdog's deadline (it reached the last
    target it was sent); the trip still has to come, so the count is read after it.
    """
    deadline = fault_time + server.config.watchdog_s + grace_s
    while server.stats.watchdog_trips == trips_before and time.monotonic() < deadline:
        time.sleep(SAMPLE_S)


def kill_drill(server, action: str = "0.03,0,0,0,0,0,1") -> DrillResult:
    """SIGKILL the policy process mid-motion and time the arm's stop."""
    result, proc = _drill(server, signal.SIGKILL, action)
    proc.wait(5)
    return result


def freeze_drill(server, action: str = "0.03,0,0,0,0,0,1") -> tuple[DrillResult, int]:
    """SIGSTOP the policy process mid-motion, time the stop, SIGCONT it; returns (result, steps served after)."""
    result, proc = _drill(server, signal.SIGSTOP, action)
    steps = server.stats.steps
    os.kill(proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while server.stats.steps < steps + 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    resumed = server.stats.steps - steps
    proc.kill()
    proc.wait(5)
    return result, resumed


def _policy_main(address: str, action: str) -> None:
    from embodied.types import Action
    from hardware.client import RemoteRobot

    robot = RemoteRobot(address)
    value = np.array([float(v) for v in action.split(",")], np.float32)
    robot.reset(seed=0)
    while True:  # until killed: that is the drill
        result = robot.step(Action(value, robot.spec.action))
        if result.done:
            robot.reset(seed=0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("policy", help="stream one constant action to a robot server until killed")
    p.add_argument("--address", default="tcp://127.0.0.1:5555")
    p.add_argument("--action", default="0.03,0,0,0,0,0,1", help="comma-separated action values")
    args = ap.parse_args(argv)
    _policy_main(args.address, args.action)


if __name__ == "__main__":
    main()
