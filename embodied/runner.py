"""The one control loop: any Embodiment, any Policy, sim or hardware.

Per control tick the runner

1. polls the correction channels and hands each correction to the policy
   (``policy.correct``), dropping any queued chunk so the policy replans;
2. asks the policy for an action when its queue is empty; a chunk ``(T, D)``
   is queued and executed tick by tick (receding horizon lives here, not in
   the model);
3. passes the action through the safety filter (always: there is no path
   around it) and steps the embodiment with the result;
4. records the observation, the executed action, its language motion, the
   active sub-task and the corrections of this tick.

``realtime=True`` holds the loop to the control rate (hardware, live demos);
simulation runs as fast as it can.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from embodied.channels import CorrectionChannel, poll_all
from embodied.language_motion import MotionLabeller, MotionThresholds
from embodied.protocols import Correctable, Embodiment, Policy
from embodied.safety import SafetyFilter
from embodied.types import Action, Correction, Observation, SpecMismatchError


class Recorder(Protocol):
    """Where the runner writes episodes (embodied.data.DatasetWriter, EpisodeBuffer)."""

    def start_episode(self, task: str) -> None: ...

    def add_frame(
        self,
        obs: Observation,
        action: np.ndarray,
        *,
        language_motion: str = "",
        subtask: str = "",
        corrections: Iterable[Correction] = (),
    ) -> None: ...

    def end_episode(self, success: bool) -> Any: ...

    def discard_episode(self) -> None: ...


@dataclasses.dataclass
class RunnerConfig:
    """max_steps: cap on ticks (None: run until the embodiment says done).
    realtime: sleep to keep the control rate. motion_window: ticks averaged
    when labelling language motions (see embodied.language_motion)."""

    max_steps: int | None = None
    realtime: bool = False
    label_motions: bool = True
    motion_window: int = 3
    replan_on_correction: bool = True


@dataclasses.dataclass
class EpisodeResult:
    instruction: str
    success: bool
    steps: int
    interventions: int
    corrections: list[Correction]
    wall_time_s: float
    recorded: Any = None  # what the recorder's end_episode returned (e.g. the episode index)


class Runner:
    """Connects one embodiment and one policy through the safety filter."""

    def __init__(
        self,
        embodiment: Embodiment,
        policy: Policy,
        *,
        safety: SafetyFilter | None = None,
        recorder: Recorder | None = None,
        channels: Iterable[CorrectionChannel] = (),
        config: RunnerConfig | None = None,
    ):
        policy.spec.check_compatible(embodiment.spec, what="policy")
        self.embodiment, self.policy, self.recorder = embodiment, policy, recorder
        self.safety = safety or SafetyFilter.for_embodiment(embodiment)
        self.channels = list(channels)
        self.config = config or RunnerConfig()
        spec = embodiment.spec.action
        self._labeller = (
            MotionLabeller(MotionThresholds.from_spec(spec), self.config.motion_window)
            if self.config.label_motions and spec.mode == "ee_delta"
            else None
        )

    def run_episode(self, instruction: str | None = None, seed: int | None = None) -> EpisodeResult:
        """Run one episode; a crash discards the episode in progress and re-raises."""
        started = time.monotonic()
        obs = self.embodiment.reset(instruction=instruction, seed=seed)
        info: dict[str, Any] = dict(getattr(self.embodiment, "last_info", {}) or {})
        task = obs.instruction or instruction or ""
        self.policy.reset(task)
        for ch in self.channels:
            if hasattr(ch, "reset"):
                ch.reset()
        if self._labeller:
            self._labeller.reset()
        if self.recorder:
            self.recorder.start_episode(task)
        pending: deque[tuple[Observation, np.ndarray, str, list[Correction]]] = deque()
        queue: deque[Action] = deque()
        all_corrections: list[Correction] = []
        interventions, steps, success = 0, 0, False
        period = 1.0 / self.embodiment.spec.control_hz
        try:
            while self.config.max_steps is None or steps < self.config.max_steps:
                corrections = poll_all(self.channels)
                for c in corrections:
                    if isinstance(self.policy, Correctable):
                        self.policy.correct(c)
                    if self.config.replan_on_correction:
                        queue.clear()
                all_corrections.extend(corrections)
                if not queue:
                    queue.extend(self._ask_policy(obs).steps())
                action = queue.popleft()
                safe, applied = self.safety.filter(action, obs)
                result = self.embodiment.step(safe)
                result.info["safety"] = [i.to_dict() for i in applied]
                interventions += len(applied)
                pending.append((obs, safe.value, str(info.get("subtask") or task), corrections))
                self._emit(pending, self._labeller.push(safe.value, _gripper(obs)) if self._labeller else None)
                obs, info, success = result.obs, result.info, result.success
                steps += 1
                if self.config.realtime:
                    time.sleep(max(0.0, started + steps * period - time.monotonic()))
                if result.done:
                    break
            self._emit(pending, self._labeller.flush() if self._labeller else None, final=True)
            recorded = self.recorder.end_episode(success) if self.recorder else None
        except BaseException:
            if self.recorder:
                self.recorder.discard_episode()
            raise
        return EpisodeResult(task, success, steps, interventions, all_corrections, time.monotonic() - started, recorded)

    def _ask_policy(self, obs: Observation) -> Action:
        action = self.policy.act(obs)
        if not isinstance(action, Action):
            raise TypeError(f"{type(self.policy).__name__}.act must return an embodied.Action, got {type(action).__name__}")
        want = self.embodiment.spec.action
        if action.spec.mode != want.mode or action.spec.dim != want.dim:
            raise SpecMismatchError(
                f"policy returned {action.spec.mode}/{action.spec.dim}-D actions; "
                f"embodiment {self.embodiment.spec.name!r} takes {want.mode}/{want.dim}-D"
            )
        return action

    def _emit(self, pending: deque, labels: list[str] | None, final: bool = False) -> None:
        """Hand frames to the recorder once their language motion is known."""
        count = len(pending) if labels is None and final else len(labels or [])
        if labels is None and not final:
            count = len(pending)  # no labelling: every frame is ready at once
        for i in range(count):
            obs, action, subtask, corrections = pending.popleft()
            if self.recorder:
                self.recorder.add_frame(
                    obs,
                    action,
                    language_motion=labels[i] if labels else "",
                    subtask=subtask,
                    corrections=corrections,
                )


def _gripper(obs: Observation) -> float:
    g = obs.state.get("gripper")
    return float(g[0]) if g is not None else 1.0
