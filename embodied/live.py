"""The live-run hub: what the web page and the terminal see of a running episode, and how they steer it.

A `LiveSession` sits between one runner and any number of people:

- it is the runner's `Monitor` (embodied.runner): the runner reports every
  tick to it, waits while it is paused and ends the episode when it asks;
- it is a correction channel (``poll()``): text typed on the page or in the
  terminal goes in with `put_correction` and comes out, as typed
  `Correction` events, at the next control tick;
- it keeps what a viewer needs: the latest camera frames (JPEG-encoded only
  when someone asks, at most `max_fps` times a second per camera), the
  instruction, the newest language motion and sub-task, step, time, success,
  every correction with its fate, recent safety interventions and the
  results of finished episodes.

Every method is thread-safe: the runner calls from its thread, the web server
from its event loop, the terminal from its reader thread. Viewers wait for
news without polling: `wait_for_change` (threads) and `changed` (asyncio)
return when the change counter `version` moves.

Commands: `pause` (the runner holds the arm and stops ticking), `resume`,
`stop` (ends the running episode, unsuccessful; the flag clears when the
next episode starts) and `emergency_stop` (latched until `clear_estop`: it
calls `on_estop` at once, in the caller's thread, so the robot's own e-stop
does not wait for the next tick, and it ends every episode until cleared).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from embodied.types import CORRECTION_LEVELS, Correction, Observation

MAX_CORRECTION_CHARS = 500  # longer text is a paste accident, not a correction
SAFETY_HISTORY = 200  # recent interventions kept for viewers (a bad policy can trip one every tick)
COMMANDS = ("pause", "resume", "stop", "estop")


class EStopHookError(RuntimeError):
    """The emergency stop latched (the runner will not tick), but the `on_estop` hook failed."""


@dataclasses.dataclass
class CorrectionRecord:
    """One correction as viewers see it.

    time: seconds on the episode clock when it was given. source: the channel
    it came from ("web", "terminal"). status: "queued" (waiting for the next
    tick), "delivered" (the runner took it at tick `step` and handed it to
    the policy) or "dropped" (the episode ended first; it reached nobody).
    received: the policy's correct() got it (delivered, and the policy
    listens).
    """

    id: int
    text: str
    time: float
    source: str
    level: str
    episode: int
    status: str = "queued"
    step: int | None = None
    received: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LiveSession:
    """Monitor + correction channel + viewer state for one robot's runs (see the module docstring).

    on_estop: called (no arguments) by `emergency_stop`, e.g. the robot's
    e-stop. policy_listens: whether the running policy has correct(); set it
    from ``isinstance(policy, embodied.protocols.Correctable)`` so that the
    history tells the truth about who got a correction. max_fps: JPEG
    encodes per second per camera, at most. clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        on_estop: Callable[[], None] | None = None,
        policy_listens: bool = True,
        max_fps: float = 5.0,
        jpeg_quality: int = 80,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not max_fps > 0:
            raise ValueError(f"max_fps must be positive, got {max_fps}")
        self.on_estop, self.policy_listens = on_estop, policy_listens
        self.min_encode_interval, self.jpeg_quality, self.clock = 1.0 / max_fps, int(jpeg_quality), clock
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._version = 0
        # run state
        self._episode = 0
        self._running = False
        self._started = 0.0
        self._instruction = ""
        self._motion = ""
        self._subtask = ""
        self._step = 0
        self._time = 0.0
        self._success = False
        self._paused = False
        self._stop = False
        self._estopped = False
        self._estop_error = ""
        # what viewers read
        self._inbox: list[tuple[Correction, CorrectionRecord]] = []
        self._history: list[CorrectionRecord] = []
        self._safety: deque[dict[str, Any]] = deque(maxlen=SAFETY_HISTORY)
        self._safety_total = 0
        self._results: list[dict[str, Any]] = []
        self._images: dict[str, np.ndarray] = {}
        self._frame_seq: dict[str, int] = {}
        self._jpeg: dict[str, tuple[int, float, bytes]] = {}  # camera -> (frame seq, encoded at, bytes)

    # ------------------------------------------------------------------ change notification

    @property
    def version(self) -> int:
        """A counter that grows with every change viewers could see."""
        with self._lock:
            return self._version

    def _changed(self) -> None:
        """Bump the version and wake every waiter; call with the lock held."""
        self._version += 1
        self._cond.notify_all()
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed; its waiter is gone
                self._waiters.discard((loop, event))

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until `version` > since (or timeout seconds); return the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > since, timeout)
            return self._version

    async def changed(self, since: int, timeout: float) -> int:
        """Await until `version` > since (or timeout seconds), without blocking the event loop."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._version > since:
                return self._version
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self.version

    # ------------------------------------------------------------------ the runner's side: Monitor

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused and not self._estopped

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop or self._estopped

    @property
    def estopped(self) -> bool:
        with self._lock:
            return self._estopped

    def wait_while_paused(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._paused or self._stop or self._estopped, timeout)

    def on_start(self, task: str, obs: Observation) -> None:
        with self._lock:
            self._episode += 1
            self._running, self._started = True, self.clock()
            self._instruction, self._subtask, self._motion = task, task, ""
            self._step, self._time, self._success = 0, 0.0, False
            self._stop = False  # a stop ends the episode it was given in, not the next one
            self._set_images(obs)
            self._changed()

    def on_tick(self, report: Any) -> None:
        """Take one embodied.runner.TickReport."""
        with self._lock:
            self._step, self._time, self._success = int(report.step), float(report.time), bool(report.success)
            self._instruction = report.instruction
            self._motion, self._subtask = report.language_motion, report.subtask
            for s in report.safety:
                self._safety.append({"episode": self._episode, "step": self._step, **s})
            self._safety_total += len(report.safety)
            self._set_images(report.obs)
            self._changed()

    def on_end(self, result: Any) -> None:
        """Take the embodied.runner.EpisodeResult; corrections still queued are dropped, not carried over."""
        with self._lock:
            self._running, self._success = False, bool(result.success)
            for _, record in self._inbox:
                record.status = "dropped"
            self._inbox.clear()
            self._results.append({
                "episode": self._episode,
                "instruction": result.instruction,
                "success": bool(result.success),
                "steps": int(result.steps),
                "interventions": int(result.interventions),
                "corrections": len(result.corrections),
                "wall_time_s": float(result.wall_time_s),
                "stopped": self._stop or self._estopped,
            })
            self._changed()

    def _set_images(self, obs: Observation) -> None:
        for name, image in obs.images.items():
            self._images[name] = image
            self._frame_seq[name] = self._frame_seq.get(name, 0) + 1

    # ------------------------------------------------------------------ the runner's side: CorrectionChannel

    def poll(self) -> list[Correction]:
        """Corrections put since the last poll; the runner hands each to the policy at once."""
        with self._lock:
            if not self._inbox:
                return []
            out = []
            for correction, record in self._inbox:
                record.status, record.step = "delivered", self._step + 1  # the tick about to run
                record.received = self.policy_listens
                out.append(correction)
            self._inbox.clear()
            self._changed()
            return out

    # ------------------------------------------------------------------ the people's side

    def put_correction(self, text: str, source: str = "web", level: str = "motion") -> CorrectionRecord:
        """Queue a correction for the next tick; raises ValueError/TypeError (saying what to fix) on bad input.

        The Correction the policy gets has source "human" (a person typed it)
        and payload {"channel": source, "id": record id}.
        """
        if not isinstance(text, str):
            raise TypeError(f"a correction is text, got {type(text).__name__}")
        text = " ".join(text.split())
        if not text:
            raise ValueError("a correction needs some words, e.g. 'a bit more to the left'")
        if len(text) > MAX_CORRECTION_CHARS:
            raise ValueError(f"a correction is at most {MAX_CORRECTION_CHARS} characters, got {len(text)}; "
                             "say it in a short sentence")
        if level not in CORRECTION_LEVELS:
            raise ValueError(f"correction level {level!r} is not one of {CORRECTION_LEVELS}")
        if not isinstance(source, str) or not source:
            raise ValueError("source names the channel a correction came from, e.g. 'web' or 'terminal'")
        with self._lock:
            t = self.clock() - self._started if self._running else 0.0
            episode = self._episode if self._running else self._episode + 1  # between episodes: for the next one
            record = CorrectionRecord(len(self._history), text, t, source, level, episode)
            correction = Correction(text, t, "human", level, {"channel": source, "id": record.id})
            self._history.append(record)
            self._inbox.append((correction, record))
            self._changed()
            return record

    def pause(self) -> None:
        self._set(paused=True)

    def resume(self) -> None:
        self._set(paused=False)

    def stop(self) -> None:
        """End the running episode (unsuccessful) at the next tick."""
        with self._lock:
            self._stop = True
            self._changed()

    def emergency_stop(self) -> None:
        """Latch the e-stop, call on_estop now, end every episode until clear_estop().

        Raises EStopHookError when on_estop fails; the latch holds regardless.
        """
        with self._lock:
            self._estopped = True
            self._changed()
        if self.on_estop is not None:
            try:
                self.on_estop()
            except Exception as e:  # the latch holds anyway; viewers must learn that the hook failed
                with self._lock:
                    self._estop_error = f"{type(e).__name__}: {e}"
                    self._changed()
                raise EStopHookError(f"the emergency stop is latched, but the robot's e-stop hook failed: "
                                     f"{self._estop_error}") from e

    def clear_estop(self) -> None:
        """Re-arm after an emergency stop (deliberately not offered to the web page)."""
        with self._lock:
            self._estopped, self._estop_error = False, ""
            self._changed()

    def command(self, name: str) -> None:
        """Run one of COMMANDS by name (what the page and the terminal send)."""
        actions = {"pause": self.pause, "resume": self.resume, "stop": self.stop, "estop": self.emergency_stop}
        if name not in actions:
            raise ValueError(f"unknown command {name!r}; use one of {COMMANDS}")
        actions[name]()

    def _set(self, *, paused: bool) -> None:
        with self._lock:
            self._paused = paused
            self._changed()

    # ------------------------------------------------------------------ what viewers read

    def snapshot(self) -> dict[str, Any]:
        """Everything a viewer shows, as JSON-ready data (frames by sequence number; fetch them with jpeg())."""
        with self._lock:
            if self._estopped:
                state = "estopped"
            elif not self._running:
                state = "ended" if self._results else "idle"
            elif self._stop:
                state = "stopping"
            else:
                state = "paused" if self._paused else "running"
            return {
                "version": self._version,
                "state": state,
                "episode": self._episode,
                "running": self._running,
                "paused": self._paused,
                "stop_requested": self._stop,
                "estopped": self._estopped,
                "estop_error": self._estop_error,
                "instruction": self._instruction,
                "language_motion": self._motion,
                "subtask": self._subtask,
                "step": self._step,
                "time": round(self._time, 3),
                "success": self._success,
                "cameras": dict(self._frame_seq),
                "corrections": [r.to_dict() for r in self._history],
                "safety": list(self._safety),
                "safety_total": self._safety_total,
                "results": list(self._results),
            }

    @property
    def step(self) -> int:
        with self._lock:
            return self._step

    @property
    def history(self) -> list[CorrectionRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._history]

    def jpeg(self, camera: str) -> tuple[int, bytes]:
        """(frame sequence number, JPEG bytes) of the camera's latest frame.

        Encodes at most once per 1/max_fps seconds per camera: a viewer that
        asks faster gets the last encoding again. Raises KeyError for a
        camera that has sent no frame yet.
        """
        with self._lock:
            if camera not in self._images:
                raise KeyError(f"no frame from camera {camera!r} yet; cameras so far: {sorted(self._images)}")
            seq, image = self._frame_seq[camera], self._images[camera]
            cached = self._jpeg.get(camera)
            now = self.clock()
            if cached and (cached[0] == seq or now - cached[1] < self.min_encode_interval):
                return cached[0], cached[2]
            # Claim this encoding slot before letting go of the lock, so that viewers asking meanwhile reuse
            # the previous bytes instead of encoding too; the runner never waits for an encode.
            if cached:
                self._jpeg[camera] = (cached[0], now, cached[2])
        data = encode_jpeg(image, self.jpeg_quality)
        with self._lock:
            if self._jpeg.get(camera, (-1,))[0] < seq:
                self._jpeg[camera] = (seq, now, data)
        return seq, data


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of an HxWx3 uint8 RGB image."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError("encoding camera frames needs OpenCV: pip install 'embodied[hardware]'") from e
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return buf.tobytes()
