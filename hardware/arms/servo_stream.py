"""Feed a vendor's servo call at the controller's rate, gliding from one tick's target to the next.

Servo interfaces (UR `servoL`/`servoJ`, xArm `set_servo_cartesian`/
`set_servo_angle_j`) expect a fresh set-point every controller cycle (UR:
500 Hz, xArm: 100-250 Hz), each close to the last. A policy speaks at 10 Hz
in steps of centimetres. `ServoStream` bridges the two: `glide(kind, start,
goal, duration)` sets a straight segment, and a thread sends the point of
that segment for "now" every period, then keeps sending the goal (holding
it, and keeping the vendor's watchdog fed) until the next segment.

"Now" is the segment's own clock, which advances by the time since the
last tick but never by more than `MAX_STEP_PERIODS` periods: a tick that
comes late (a loaded machine, a garbage-collection pause) moves the
set-point at most that many periods' worth along the segment, and the
segment finishes late rather than the arm jumping to catch up.

Set-points are in our units: kind "ee" is a (7,) vector (x, y, z m; w, x, y,
z unit quaternion), interpolated linearly in position and by slerp in
rotation; kind "joint" is (n,) rad, interpolated linearly. `send(kind,
setpoint)` converts to the vendor's units; `idle()` is called each period
when there is nothing to servo (a UR kicks its watchdog there). An
exception from either stops the stream and is handed to `on_error`.

`lock` is held around every send: a driver that takes it, calls `stop()`
and then the vendor's stop call knows that no set-point follows the stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

MAX_LAG_PERIODS = 5  # a thread that fell further behind than this (a stalled machine) skips ahead, never bursts
MAX_STEP_PERIODS = 2.0  # the most segment time one set-point advances: bounds each step to ~2x the nominal one


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Unit quaternion (w,x,y,z) a fraction t in [0, 1] of the short way from q0 to q1."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    d = float(np.dot(q0, q1))
    if d < 0:  # q and -q are one rotation: go the short way
        q1, d = -q1, -d
    if d > 0.9995:  # nearly equal: the linear blend is exact enough and avoids dividing by sin(~0)
        q = q0 + t * (q1 - q0)
    else:
        theta = np.arccos(d)
        q = (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)
    return q / np.linalg.norm(q)


def interpolate(kind: str, start: np.ndarray, goal: np.ndarray, t: float) -> np.ndarray:
    """The set-point a fraction t of the way from start to goal (see the module docstring for the layouts)."""
    if kind == "ee":
        return np.concatenate([start[:3] + t * (goal[:3] - start[:3]), slerp(start[3:], goal[3:], t)])
    return start + t * (goal - start)


class ServoStream:
    """A thread that sends interpolated set-points at `rate_hz` (see the module docstring)."""

    def __init__(self, send: Callable[[str, np.ndarray], None], rate_hz: float,
                 on_error: Callable[[Exception], None], idle: Callable[[], None] | None = None,
                 name: str = "servo-stream"):
        if rate_hz <= 0:
            raise ValueError(f"servo rate {rate_hz} Hz must be > 0")
        self.send, self.on_error, self.idle = send, on_error, idle
        self.period = 1.0 / rate_hz
        self.name = name
        self.lock = threading.RLock()
        self._segment: tuple[str, np.ndarray, np.ndarray, float] | None = None  # kind, start, goal, duration T
        self._elapsed = 0.0  # the segment's own clock (s), see the module docstring
        self._last_tick = 0.0  # when the segment's clock last advanced (monotonic s); set by glide()
        self._setpoint: tuple[str, np.ndarray] | None = None
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def setpoint(self) -> tuple[str, np.ndarray] | None:
        """(kind, the last set-point sent) while a segment is active, else None."""
        with self.lock:
            return None if self._segment is None or self._setpoint is None else self._setpoint

    def start(self) -> None:
        if self._thread is None:
            self._running.set()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread (after the set-point being sent, if any)."""
        self._running.clear()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._thread = None

    def glide(self, kind: str, start: np.ndarray, goal: np.ndarray, duration: float) -> None:
        """Servo along a straight segment from `start` to `goal` (our units) over `duration` s, then hold `goal`."""
        if kind not in ("ee", "joint"):
            raise ValueError(f"set-point kind {kind!r}: 'ee' or 'joint'")
        start, goal = np.asarray(start, np.float64), np.asarray(goal, np.float64)
        if start.shape != goal.shape or not (np.all(np.isfinite(start)) and np.all(np.isfinite(goal))):
            raise ValueError(f"servo segment {start} -> {goal} is malformed or not finite")
        with self.lock:
            self._segment = (kind, start, goal, max(float(duration), self.period))
            self._elapsed, self._last_tick = 0.0, time.monotonic()

    def stop(self) -> None:
        """Send no more set-points until the next `glide` (hold the lock around this and the vendor's stop)."""
        with self.lock:
            self._segment = None
            self._setpoint = None

    def tick(self, now: float) -> None:
        """One period's work: send the segment's point for `now` (monotonic s), or call idle()."""
        with self.lock:
            try:
                if self._segment is None:
                    if self.idle is not None:
                        self.idle()
                    return
                kind, start, goal, duration = self._segment
                self._elapsed += min(max(0.0, now - self._last_tick), MAX_STEP_PERIODS * self.period)
                self._last_tick = now
                point = interpolate(kind, start, goal, min(1.0, self._elapsed / duration))
                self.send(kind, point)
                self._setpoint = (kind, point)
            except Exception as e:  # noqa: BLE001 - the vendor's error, whatever its type: stop, report it
                self._segment = self._setpoint = None
                self.on_error(e)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while self._running.is_set():
            self.tick(time.monotonic())
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif -delay > MAX_LAG_PERIODS * self.period:
                next_t = time.monotonic()
