"""The two protocols the runner connects: an Embodiment and a Policy.

Data flows one way: embodiment -> observation -> policy -> action -> safety
-> embodiment. Anything with these methods plugs in; nothing needs to inherit.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from embodied.types import Action, Correction, EmbodimentSpec, Observation, StepResult


@runtime_checkable
class Embodiment(Protocol):
    """A body to drive: a simulated env or a real robot.

    `reset` starts an episode and returns its first observation; `instruction`
    (if given) replaces the task's own wording. `step` applies one single-tick
    action (already safety-filtered by the runner) and returns the result.
    """

    @property
    def spec(self) -> EmbodimentSpec: ...

    def reset(self, instruction: str | None = None, seed: int | None = None) -> Observation: ...

    def step(self, action: Action) -> StepResult: ...

    def close(self) -> None: ...


@runtime_checkable
class Policy(Protocol):
    """Maps observations to actions for one embodiment spec.

    `act` may return a single action `(D,)` or a chunk `(T, D)`; the runner
    executes a chunk tick by tick and calls `act` again when it runs out.
    A policy that follows language may also define `correct(Correction)`.
    """

    @property
    def spec(self) -> EmbodimentSpec: ...

    def reset(self, instruction: str | None = None) -> None: ...

    def act(self, obs: Observation) -> Action: ...


@runtime_checkable
class Correctable(Protocol):
    """A policy that can take a live correction (e.g. "a bit more to the left")."""

    def correct(self, correction: Correction) -> None: ...
