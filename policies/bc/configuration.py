"""Configuration of the BC baseline (policies.bc)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class BCConfig:
    """What the BC policy looks at and how big it is.

    obs_horizon: frames of history the policy sees (To). action_horizon: actions
    predicted per call (Ta, a chunk at the control rate). n_action_steps: how
    many of the chunk act() returns for the runner to execute before asking
    again (None: all Ta). cameras: which cameras to use (None: every camera
    of the training data). state_keys: which state entries to read (() = all).
    language: how the instruction conditions the
    network — "film" scales and shifts every CNN block's channels, "concat"
    appends the embedding to the fused features, "none" ignores language.
    language_model: folder of a sentence-transformers model (None: the
    packaged all-MiniLM-L6-v2); frozen, referenced here, never copied into
    the checkpoint. language_motion_prob: fraction of training windows whose
    instruction is their RT-H language motion ("move arm left") instead of the
    task, so that motions given as corrections are understood.
    hold_steps: control ticks a correction replaces the task instruction.
    hand_relative: state entries that hold 3-D points (k × 3 metres, world frame, e.g. tracked object
    positions) which the policy also reads as offsets from the end effector's `ee_pos`, in units of
    HAND_RELATIVE_UNIT_M, whether or not state_keys also reads them as they are (naming a privileged
    entry here reads it, as naming it in state_keys does). The arm's ee_delta
    actions live in that frame, so "the object is 3 cm left of the hand" is nearly the action, where
    absolute positions leave the network to learn the subtraction from a few dozen demonstrations.
    """

    obs_horizon: int = 1
    action_horizon: int = 10
    n_action_steps: int | None = None
    cameras: tuple[str, ...] | None = None
    state_keys: tuple[str, ...] = ()
    cnn_channels: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128
    hidden_dim: int = 256
    language: Literal["film", "concat", "none"] = "film"
    language_model: str | None = None
    language_motion_prob: float = 0.0
    hold_steps: int = 20
    hand_relative: tuple[str, ...] = ()
    state_norm: Literal["mean_std", "min_max", "bounds_q99", "identity"] = "mean_std"
    action_norm: Literal["mean_std", "min_max", "bounds_q99", "identity"] = "min_max"
    image_norm: Literal["mean_std", "identity"] = "mean_std"

    def __post_init__(self) -> None:
        self.state_keys = tuple(self.state_keys)
        self.hand_relative = tuple(self.hand_relative)
        if self.obs_horizon < 1 or self.action_horizon < 1:
            raise ValueError(f"obs_horizon and action_horizon must be >= 1, got {self.obs_horizon}, "
                             f"{self.action_horizon}")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= self.action_horizon:
            raise ValueError(f"n_action_steps must be in 1..action_horizon={self.action_horizon}, "
                             f"got {self.n_action_steps}")
        if not self.cnn_channels:
            raise ValueError("cnn_channels needs at least one block, e.g. (32, 64, 128)")
        if not 0.0 <= self.language_motion_prob <= 1.0:
            raise ValueError(f"language_motion_prob is a probability, got {self.language_motion_prob}")
