"""A simulated env's scripted expert, seen as a `Policy`; and a random policy, the floor beside it.

Sim envs with an expert expose ``env.unwrapped.make_expert()`` (see
embodied.sim): an object with ``reset()``, ``act() -> (D,) float32`` computed
from privileged sim state, and ``phase``. This adapter lets the runner drive
it like any other policy, so expert demonstrations go through the same loop,
safety filter and recorder as learned policies.
"""

from __future__ import annotations

import numpy as np

from embodied.sim import GymEmbodiment
from embodied.types import Action, EmbodimentSpec, Observation


class ExpertPolicy:
    """The privileged expert of the env behind `embodiment`."""

    def __init__(self, embodiment: GymEmbodiment):
        unwrapped = embodiment.env.unwrapped
        if not hasattr(unwrapped, "make_expert"):
            raise TypeError(f"{type(unwrapped).__name__} has no scripted expert (no make_expert())")
        self._expert = unwrapped.make_expert()
        self._spec = embodiment.spec

    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    @property
    def phase(self) -> str:
        return str(getattr(self._expert, "phase", ""))

    def reset(self, instruction: str | None = None) -> None:
        self._expert.reset()

    def act(self, obs: Observation) -> Action:
        return Action(self._expert.act(), self._spec.action)


class RandomPolicy:
    """Uniformly random actions within the spec's bounds, each held for `hold_steps` ticks.

    Holding one draw moves the arm somewhere instead of jittering it in place: scene
    recordings (CollectConfig.scenes_only) use it to show the arm at varied poses.
    Deterministic for a given seed; `reset` starts the same sequence again.
    """

    def __init__(self, spec: EmbodimentSpec, seed: int = 0, hold_steps: int = 1):
        if hold_steps < 1:
            raise ValueError(f"hold_steps must be >= 1, got {hold_steps}")
        self._spec, self._seed, self._hold = spec, seed, hold_steps
        self.reset()

    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    def reset(self, instruction: str | None = None) -> None:
        self._rng = np.random.default_rng(self._seed)
        self._ticks, self._value = 0, None

    def act(self, obs: Observation) -> Action:
        if self._ticks % self._hold == 0:
            a = self._spec.action
            self._value = self._rng.uniform(a.low_array, a.high_array).astype(np.float32)
        self._ticks += 1
        return Action(self._value, self._spec.action)
