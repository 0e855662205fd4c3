"""The scripted expert of a Meta-World task, speaking our 7-D action.

Wraps the task's hand-written policy from `metaworld.policies` (e.g.
`SawyerReachV3Policy`). Those policies read the raw 39-D Meta-World
observation, which includes the goal position, so the expert is privileged:
it reads the env's last Meta-World observation rather than the published
observation.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from envs.metaworld.actions import from_metaworld

if TYPE_CHECKING:
    from envs.metaworld.env import MetaWorldEnv

# Below this many Meta-World units per axis the expert is treated as holding still.
_STILL = 0.05


class MetaWorldExpert:
    """`reset()` after env.reset, then `act()` -> (7,) float32 each tick; `phase` says what it does.

    `phase` is derived from the command, since Meta-World's policies keep no
    explicit stage: "move" or "hold" (the hand stays put), with the gripper
    "open", "closed" or "relaxed" (zero effort), e.g. "hold (gripper closed)"
    while a grasp settles, and "done" once the env has reported success.
    """

    def __init__(self, env: MetaWorldEnv):
        from metaworld.policies import ENV_POLICY_MAP

        self.env = env
        self.task = env.config.task
        self.policy = ENV_POLICY_MAP[self.task]()
        self.phase = "start"
        self.last_mw_action: np.ndarray | None = None

    def reset(self) -> None:
        self.phase = "start"
        self.last_mw_action = None

    def act(self) -> np.ndarray:
        obs = self.env.last_mw_obs
        if obs is None:
            raise RuntimeError("the expert acts on the env's current episode: call env.reset() before act()")
        with warnings.catch_warnings():
            # Meta-World's policies use gains that overshoot [-1, 1] by design and warn every tick.
            warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
            # A copy: some policies (e.g. door-open) edit the observation they are given in place.
            mw_action = np.asarray(self.policy.get_action(obs.copy()), np.float64)
        self.last_mw_action = mw_action
        self.phase = self._describe(mw_action)
        return from_metaworld(mw_action, self.env.action_scale)

    def _describe(self, mw_action: np.ndarray) -> str:
        if self.env.last_success:
            return "done"
        motion = "move" if np.max(np.abs(mw_action[:3])) > _STILL else "hold"
        effort = mw_action[3]
        grip = "gripper closed" if effort > 0.5 else "gripper open" if effort < -0.5 else "gripper relaxed"
        return f"{motion} ({grip})"
