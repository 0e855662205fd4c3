"""A simulated env's scripted expert, seen as a `Policy`.

Sim envs with an expert expose ``env.unwrapped.make_expert()`` (see
embodied.sim): an object with ``reset()``, ``act() -> (D,) float32`` computed
from privileged sim state, and ``phase``. This adapter lets the runner drive
it like any other policy, so expert demonstrations go through the same loop,
safety filter and recorder as learned policies.
"""

from __future__ import annotations

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
