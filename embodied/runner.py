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

The same loop drives B embodiments in lockstep (`Slots`, e.g.
embodied.vector.VectorEmbodiment for evaluation in parallel envs): each slot
keeps its own chunk queue, language-motion labeller, pending frames, recorder
and step count; one `act_batch` call serves every slot whose queue ran out;
one safety filter checks every slot's action; one parallel step advances them
all. `run_episode` is the B=1 case of `run_episodes`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from embodied.channels import CorrectionChannel, poll_all
from embodied.language_motion import MotionLabeller, MotionThresholds
from embodied.protocols import Correctable, Embodiment, Policy
from embodied.safety import SafetyFilter
from embodied.types import Action, Correction, EmbodimentSpec, Observation, SpecMismatchError, StepResult


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
class TickReport:
    """What a monitor sees after each tick of a one-embodiment run (web page, terminal).

    obs: the observation after the step. action: (D,) the executed (filtered)
    action. language_motion: the newest labelled motion ("" until the labeller
    has one). corrections: those that arrived this tick. safety: the filter's
    interventions as dicts. step: ticks so far; time: seconds since the episode began.
    """

    obs: Observation
    action: np.ndarray
    instruction: str
    language_motion: str
    subtask: str
    corrections: list[Correction]
    safety: list[dict[str, str]]
    step: int
    time: float
    success: bool


class Monitor(Protocol):
    """Watches and steers a live run (embodied.live.LiveSession is one).

    The runner calls on_start/on_tick/on_end; before each tick it waits while
    `paused` (holding the arm, if the embodiment has `hold()`), and ends the
    episode (unsuccessful) when `stop_requested` is set.
    """

    @property
    def paused(self) -> bool: ...

    @property
    def stop_requested(self) -> bool: ...

    def wait_while_paused(self, timeout: float) -> None: ...

    def on_start(self, task: str, obs: Observation) -> None: ...

    def on_tick(self, report: TickReport) -> None: ...

    def on_end(self, result: EpisodeResult) -> None: ...


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
    seed: int | None = None
    slot: int = 0  # which embodiment slot ran it (always 0 with one embodiment)
    # SHA-1 of the executed (post-safety) actions as float64 bytes: equal digests, identical rollouts
    action_digest: str = ""


@dataclasses.dataclass(frozen=True)
class EpisodeJob:
    """One episode to run: the env's own task wording unless `instruction` is given; `seed` fixes the layout."""

    instruction: str | None = None
    seed: int | None = None


class Slots(Protocol):
    """B embodiments driven in lockstep (embodied.vector.VectorEmbodiment is one).

    reset(index, seed, instruction) starts an episode in one slot; step({slot:
    Action}) applies one already-filtered single-tick action to each listed
    slot and returns {slot: StepResult}; last_info[index] is the slot's
    latest env info (e.g. its active "subtask").
    """

    num_envs: int
    last_info: list[dict[str, Any]]

    @property
    def spec(self) -> EmbodimentSpec: ...

    def reset(self, index: int, seed: int | None = None, instruction: str | None = None) -> Observation: ...

    def step(self, actions: Mapping[int, Action]) -> dict[int, StepResult]: ...


class _OneSlot:
    """A single `Embodiment` seen as B=1 slots, so that one loop drives both."""

    num_envs = 1

    def __init__(self, embodiment: Embodiment):
        self.embodiment = embodiment
        self.last_info: list[dict[str, Any]] = [{}]

    @property
    def spec(self) -> EmbodimentSpec:
        return self.embodiment.spec

    def reset(self, index: int, seed: int | None = None, instruction: str | None = None) -> Observation:
        obs = self.embodiment.reset(instruction=instruction, seed=seed)
        self.last_info[0] = dict(getattr(self.embodiment, "last_info", {}) or {})
        return obs

    def step(self, actions: Mapping[int, Action]) -> dict[int, StepResult]:
        result = self.embodiment.step(actions[0])
        self.last_info[0] = result.info
        return {0: result}


@dataclasses.dataclass
class _Episode:
    """Per-slot state of the episode a slot is running."""

    job: int
    seed: int | None
    task: str
    obs: Observation
    info: dict[str, Any]
    recorder: Recorder | None
    labeller: MotionLabeller | None
    started: float
    queue: deque[Action] = dataclasses.field(default_factory=deque)
    pending: deque[tuple[Observation, np.ndarray, str, list[Correction]]] = dataclasses.field(default_factory=deque)
    corrections: list[Correction] = dataclasses.field(default_factory=list)
    digest: Any = dataclasses.field(default_factory=hashlib.sha1)
    steps: int = 0
    interventions: int = 0
    success: bool = False
    done: bool = False
    last_motion: str = ""  # the newest language motion the labeller produced


class Runner:
    """Connects an embodiment (or B of them in lockstep) and one policy through the safety filter.

    embodiment: an `Embodiment`, or `Slots` such as a VectorEmbodiment. With
    B > 1 slots the policy must have `act_batch(observations) ->
    list[Action]` (one call for every slot whose queue ran out; each
    observation carries its own instruction); `recorder` is then a list of B
    recorders (one per slot) and correction channels are not supported.
    """

    def __init__(
        self,
        embodiment: Embodiment | Slots,
        policy: Policy,
        *,
        safety: SafetyFilter | None = None,
        recorder: Recorder | Sequence[Recorder] | None = None,
        channels: Iterable[CorrectionChannel] = (),
        config: RunnerConfig | None = None,
        monitor: Monitor | None = None,
    ):
        policy.spec.check_compatible(embodiment.spec, what="policy")
        self.embodiment, self.policy = embodiment, policy
        self.slots: Slots = embodiment if hasattr(embodiment, "num_envs") else _OneSlot(embodiment)
        n = self.slots.num_envs
        # A vector of envs is always driven through act_batch when the policy has it, even with one env,
        # so that B=1 and B=N runs of a batched policy take the same code path.
        self.batched = hasattr(policy, "act_batch") and self.slots is embodiment
        if n > 1 and not hasattr(policy, "act_batch"):
            raise TypeError(
                f"{type(policy).__name__} has no act_batch(observations), which driving {n} envs at once needs: "
                "use one env (num_envs=1), or wrap a policy that has predict() in embodied.batching.BatchedPolicy"
            )
        self.recorders = self._recorders(recorder, n)
        self.recorder = self.recorders[0] if n == 1 else None
        self.safety = safety or SafetyFilter.for_embodiment(embodiment)
        self.channels = list(channels)
        if self.channels and n > 1:
            raise ValueError(f"correction channels speak to one robot; run with one env, not {n}")
        if monitor is not None and n > 1:
            raise ValueError(f"a live monitor watches one robot; run with one env, not {n}")
        self.monitor = monitor
        self.config = config or RunnerConfig()
        spec = embodiment.spec.action
        self._label = self.config.label_motions and spec.mode == "ee_delta"

    @staticmethod
    def _recorders(recorder: Recorder | Sequence[Recorder] | None, n: int) -> list[Recorder | None]:
        if recorder is None:
            return [None] * n
        if isinstance(recorder, Sequence):
            if len(recorder) != n:
                raise ValueError(f"got {len(recorder)} recorders for {n} envs; give one per env")
            return list(recorder)
        if n > 1:
            raise ValueError(f"one recorder cannot record {n} envs at once; give a list of {n} recorders")
        return [recorder]

    def _new_labeller(self) -> MotionLabeller | None:
        if not self._label:
            return None
        return MotionLabeller(MotionThresholds.from_spec(self.slots.spec.action), self.config.motion_window)

    # ------------------------------------------------------------------ the loop

    def run_episode(self, instruction: str | None = None, seed: int | None = None) -> EpisodeResult:
        """Run one episode; a crash discards the episode in progress and re-raises."""
        return self.run_episodes([EpisodeJob(instruction, seed)])[0]

    def run_episodes(
        self,
        jobs: Sequence[EpisodeJob],
        on_result: Callable[[int, EpisodeResult], None] | None = None,
    ) -> list[EpisodeResult]:
        """Run every job, up to B at a time in lockstep; results in job order.

        A slot whose episode ends starts the next job at once. on_result(job
        index, result) is called as each episode finishes (e.g. a progress
        bar). A crash discards the recorders' episodes in progress and re-raises.
        """
        results: list[EpisodeResult | None] = [None] * len(jobs)
        running: dict[int, _Episode] = {}
        next_job = 0
        loop_started, ticks = time.monotonic(), 0
        period = 1.0 / self.slots.spec.control_hz
        try:
            for slot in range(min(self.slots.num_envs, len(jobs))):
                running[slot] = self._start(slot, next_job, jobs[next_job])
                next_job += 1
            while running:
                for slot in sorted(running):
                    ep = running[slot]
                    if ep.done or (self.config.max_steps is not None and ep.steps >= self.config.max_steps):
                        results[ep.job] = self._finish(slot, ep)
                        del running[slot]  # saved: from here on a crash (or on_result's) must not discard it
                        if on_result:
                            on_result(ep.job, results[ep.job])
                        if next_job < len(jobs):
                            running[slot] = self._start(slot, next_job, jobs[next_job])
                            next_job += 1
                if not running:
                    break
                if self.monitor is not None and self._obey_monitor(running):
                    continue
                self._tick(running)
                ticks += 1
                if self.config.realtime:
                    time.sleep(max(0.0, loop_started + ticks * period - time.monotonic()))
        except BaseException:
            for slot, ep in running.items():
                if ep.recorder:
                    ep.recorder.discard_episode()
            raise
        return results  # type: ignore[return-value]

    def _start(self, slot: int, job: int, spec: EpisodeJob) -> _Episode:
        obs = self.slots.reset(slot, seed=spec.seed, instruction=spec.instruction)
        info = dict(self.slots.last_info[slot])
        task = obs.instruction or spec.instruction or ""
        if not self.batched:
            self.policy.reset(task)
        for ch in self.channels:
            if hasattr(ch, "reset"):
                ch.reset()
        self.safety.reset(slot)
        recorder = self.recorders[slot]
        ep = _Episode(job, spec.seed, task, obs, info, recorder, self._new_labeller(), time.monotonic())
        if recorder:
            recorder.start_episode(task)
        if self.monitor is not None:
            self.monitor.on_start(task, obs)
        return ep

    def _obey_monitor(self, running: dict[int, _Episode]) -> bool:
        """Stop or pause as the monitor asks; True when this round must not tick (stopped, or still paused)."""
        if self.monitor.stop_requested:
            for ep in running.values():
                ep.done, ep.success = True, False
            return True
        if self.monitor.paused:
            hold = getattr(self.embodiment, "hold", None)
            if callable(hold):
                hold()
            self.monitor.wait_while_paused(0.1)
            return True
        return False

    def _tick(self, running: dict[int, _Episode]) -> None:
        """One control tick of every running slot: corrections, policy, safety, one parallel step, bookkeeping."""
        corrections = poll_all(self.channels)  # channels exist only with one slot
        for ep in running.values():
            for c in corrections:
                if isinstance(self.policy, Correctable):
                    self.policy.correct(c)
                if self.config.replan_on_correction:
                    ep.queue.clear()
            ep.corrections.extend(corrections)
        self._refill_queues(running)
        actions, sent = {}, {}
        for slot, ep in running.items():
            action = ep.queue.popleft()
            safe, applied = self.safety.filter(action, ep.obs, slot)
            actions[slot], sent[slot] = safe, applied
        results = self.slots.step(actions)
        for slot, ep in running.items():
            result, safe, applied = results[slot], actions[slot], sent[slot]
            result.info["safety"] = [i.to_dict() for i in applied]
            ep.interventions += len(applied)
            ep.digest.update(np.ascontiguousarray(safe.value, dtype=np.float64).tobytes())
            ep.pending.append((ep.obs, safe.value, str(ep.info.get("subtask") or ep.task), corrections))
            self._emit(ep, ep.labeller.push(safe.value, _gripper(ep.obs)) if ep.labeller else None)
            ep.obs, ep.info, ep.success, ep.done = result.obs, result.info, result.success, result.done
            ep.steps += 1
            if self.monitor is not None:
                self.monitor.on_tick(TickReport(
                    result.obs, safe.value, ep.task, ep.last_motion, str(result.info.get("subtask") or ep.task),
                    list(corrections), result.info["safety"], ep.steps, time.monotonic() - ep.started,
                    bool(result.success)))

    def _refill_queues(self, running: dict[int, _Episode]) -> None:
        """Ask the policy for every slot whose queue is empty: one act_batch call, or act with one slot."""
        empty = [slot for slot, ep in running.items() if not ep.queue]
        if not empty:
            return
        if self.batched:
            observations = [running[s].obs for s in empty]
            actions = self.policy.act_batch(observations)  # type: ignore[attr-defined]
            if len(actions) != len(observations):
                raise ValueError(f"{type(self.policy).__name__}.act_batch returned {len(actions)} actions for "
                                 f"{len(observations)} observations")
        else:
            actions = [self.policy.act(running[s].obs) for s in empty]
        for slot, action in zip(empty, actions):
            running[slot].queue.extend(self._check_action(action).steps())

    def _finish(self, slot: int, ep: _Episode) -> EpisodeResult:
        self._emit(ep, ep.labeller.flush() if ep.labeller else None, final=True)
        recorded = ep.recorder.end_episode(ep.success) if ep.recorder else None
        result = EpisodeResult(ep.task, ep.success, ep.steps, ep.interventions, ep.corrections,
                               time.monotonic() - ep.started, recorded, ep.seed, slot,
                               ep.digest.hexdigest())
        if self.monitor is not None:
            self.monitor.on_end(result)
        return result

    def _check_action(self, action: Any) -> Action:
        if not isinstance(action, Action):
            raise TypeError(f"{type(self.policy).__name__}.act must return an embodied.Action, got {type(action).__name__}")
        want = self.slots.spec.action
        if action.spec.mode != want.mode or action.spec.dim != want.dim:
            raise SpecMismatchError(
                f"policy returned {action.spec.mode}/{action.spec.dim}-D actions; "
                f"embodiment {self.slots.spec.name!r} takes {want.mode}/{want.dim}-D"
            )
        return action

    def _emit(self, ep: _Episode, labels: list[str] | None, final: bool = False) -> None:
        """Hand frames to the recorder once their language motion is known (at once when not labelling)."""
        count = len(ep.pending) if labels is None else len(labels)
        for i in range(count):
            obs, action, subtask, corrections = ep.pending.popleft()
            if labels:
                ep.last_motion = labels[i]
            if ep.recorder:
                ep.recorder.add_frame(
                    obs,
                    action,
                    language_motion=labels[i] if labels else "",
                    subtask=subtask,
                    corrections=corrections,
                )


def _gripper(obs: Observation) -> float:
    g = obs.state.get("gripper")
    return float(g[0]) if g is not None else 1.0
