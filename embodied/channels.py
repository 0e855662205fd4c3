"""Correction channels: where live corrections come from.

The runner polls every channel once per control tick. A channel is anything
with ``poll() -> list[Correction]`` that never blocks. The web page, the
terminal and the simulated user (issue #4 and on) are channels; so is a
script of timed corrections used in tests and benchmarks.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from embodied.types import Correction


@runtime_checkable
class CorrectionChannel(Protocol):
    def poll(self) -> list[Correction]:
        """Corrections that arrived since the last poll (never blocks)."""
        ...


class QueueChannel:
    """A thread-safe inbox: other threads `put` text, the runner polls.

    Corrections are stamped with the time they were put, on the clock given
    (monotonic seconds by default).
    """

    def __init__(self, source: str = "human", clock=time.monotonic):
        self._q: queue.SimpleQueue[Correction] = queue.SimpleQueue()
        self.source, self.clock = source, clock

    def put(self, text: str, level: str = "motion", **payload) -> Correction:
        c = Correction(text=text, time=self.clock(), source=self.source, level=level, payload=payload)
        self._q.put(c)
        return c

    def poll(self) -> list[Correction]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out


class ScheduledChannel:
    """Corrections scripted by control tick: {tick: text or Correction}.

    For tests and benchmarks that need corrections at known moments.
    """

    def __init__(self, schedule: dict[int, str | Correction], source: str = "simulated"):
        self.schedule, self.source = dict(schedule), source
        self.tick = 0

    def reset(self) -> None:
        self.tick = 0

    def poll(self) -> list[Correction]:
        item = self.schedule.get(self.tick)
        self.tick += 1
        if item is None:
            return []
        if isinstance(item, Correction):
            return [item]
        return [Correction(text=item, time=float(self.tick - 1), source=self.source)]


def poll_all(channels: Iterable[CorrectionChannel]) -> list[Correction]:
    out: list[Correction] = []
    for ch in channels:
        out.extend(ch.poll())
    return out
