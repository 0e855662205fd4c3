"""3-D points of the flat state read as offsets from the end effector, for any policy that reads state.

An arm's `ee_delta` actions live in the world frame of its hand, so "the object is 3 cm left of the
hand" is nearly the action, where absolute positions leave a network to learn the subtraction from
a few dozen demonstrations. Points here are state entries of k × 3 metres in the world frame
(tracked objects; tabletop's privileged `goal_points`), measured from the state's `ee_pos`.
"""

from __future__ import annotations

import torch

from embodied.data.format import state_indices
from embodied.types import EmbodimentSpec

HAND_RELATIVE_UNIT_M = 0.1  # offsets are read in tenths of a metre: a tabletop's reach is about 1


class HandRelativePoints:
    """Where the state entries `keys` (each k × 3 world points) sit relative to `ee_pos`.

    Built against a spec so that a bad key fails when the policy is built, not when it first acts:
    a ValueError (prefixed by `owner`, the config field that named them) lists every problem.
    """

    def __init__(self, spec: EmbodimentSpec, keys: tuple[str, ...], owner: str = "hand_relative"):
        self.keys = tuple(keys)
        if not self.keys:
            self._points, self._hand = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
            return
        problems = []
        if spec.state.get("ee_pos") != 3:
            problems.append(f"the state has no 3-d 'ee_pos' to measure from (it has {dict(spec.state)})")
        for key in self.keys:
            if key not in spec.state:
                problems.append(f"{key!r} is not in the state ({list(spec.state)})")
            elif spec.state[key] % 3:
                problems.append(f"{key!r} has {spec.state[key]} values, not 3-d points")
        if problems:
            raise ValueError(f"{owner}: " + "; ".join(problems))
        self._points = torch.tensor(state_indices(spec, self.keys))
        self._hand = torch.tensor(state_indices(spec, ("ee_pos",)))

    @property
    def width(self) -> int:
        """How many values `__call__` adds per frame: 3 per point (0 without keys)."""
        return len(self._points)

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """(..., S) raw (unnormalised) state -> (..., k·3) each point minus ee_pos, in HAND_RELATIVE_UNIT_M."""
        if not self.width:
            return state[..., :0]
        points = state[..., self._points.to(state.device)].unflatten(-1, (-1, 3))
        hand = state[..., self._hand.to(state.device)]
        return ((points - hand[..., None, :]) / HAND_RELATIVE_UNIT_M).flatten(-2)
