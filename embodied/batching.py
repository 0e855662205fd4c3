"""Observations of several robots -> one policy batch, and `act_batch` for any policy with `predict`.

The runner asks a policy for the actions of all slots whose queue ran out in
one call, `act_batch(observations) -> list[Action]` (each observation
carries its own instruction). Trainable policies already have a batched
`predict(batch) -> (B, Ta, D)`; `BatchedPolicy(policy)` turns it into
`act_batch` by building the same batch keys the training windows use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embodied.data.format import STATE, depth_key, extrinsics_key, flatten_state, intrinsics_key, video_key
from embodied.types import Action, Correction, EmbodimentSpec, Observation


def histories_to_batch(
    histories: Sequence[Sequence[Observation]], spec: EmbodimentSpec, cameras: Sequence[str], obs_horizon: int,
    instructions: Sequence[str], depth: bool = False,
) -> dict[str, Any]:
    """B observation histories (oldest first) -> the training-window batch a policy's `predict` reads.

    Keys: "observation.state" (B, To, S) float32, "observation.images.<cam>"
    (B, To, H, W, 3) uint8 for each camera, "task" (the B instructions); with
    `depth`, for each of `cameras` whose spec has depth, "observation.depth.<cam>"
    (B, To, H, W) float32 metres and its calibration "observation.intrinsics.<cam>"
    (B, To, 3, 3) and "observation.extrinsics.<cam>" (B, To, 4, 4). The
    last To = obs_horizon frames of each history are used; a shorter history is
    padded by repeating its first frame, as the data layer pads the start of
    an episode. Torch tensors when torch is installed, else numpy arrays.
    """
    padded = []
    for h in histories:
        frames = list(h)[-obs_horizon:]
        if not frames:
            raise ValueError("every history needs at least one observation")
        padded.append([frames[0]] * (obs_horizon - len(frames)) + frames)
    batch: dict[str, Any] = {STATE: np.stack([[flatten_state(o.state, spec) for o in f] for f in padded])}
    for cam in cameras:
        batch[video_key(cam)] = np.stack([[o.images[cam] for o in f] for f in padded])
    for cam in (c for c in cameras if depth and spec.camera(c).depth):
        if any(cam not in o.depth or cam not in o.cameras for f in padded for o in f):
            raise ValueError(f"the policy reads camera {cam!r}'s depth and calibration, and an observation lacks "
                             "them (Observation.depth, Observation.cameras); use an embodiment that gives them")
        batch[depth_key(cam)] = np.stack([[np.asarray(o.depth[cam], np.float32) for o in f] for f in padded])
        batch[intrinsics_key(cam)] = np.stack([[o.cameras[cam].intrinsics for o in f] for f in padded])
        batch[extrinsics_key(cam)] = np.stack([[o.cameras[cam].extrinsics for o in f] for f in padded])
    batch = _to_torch(batch)
    batch["task"] = [str(t) for t in instructions]
    return batch


def observations_to_batch(
    observations: Sequence[Observation], spec: EmbodimentSpec, requirements: Mapping[str, Any]
) -> dict[str, Any]:
    """B observations (one per robot, one frame each) -> a batch (see `histories_to_batch`), with
    each robot's instruction taken from its observation."""
    if not observations:
        raise ValueError("observations_to_batch needs at least one observation")
    for i, obs in enumerate(observations):
        obs.check(spec)
        if not obs.instruction:
            raise ValueError(f"observation {i} has no instruction; a batched policy reads each robot's "
                             "instruction from its observation (the env puts it in info['instruction'])")
    cameras = tuple(requirements.get("cameras") or spec.camera_names)
    return histories_to_batch([[o] for o in observations], spec, cameras, int(requirements.get("obs_horizon", 1)),
                              [o.instruction for o in observations], depth=bool(requirements.get("depth")))


def _to_torch(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    try:
        import torch
    except ModuleNotFoundError:
        return arrays
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def default_execute_steps(policy: Any) -> int | None:
    """Actions of each predicted chunk a policy executes before replanning, read from its config
    (MDT's `execute_steps`, BC's `n_action_steps`); None: the whole chunk."""
    config = getattr(policy, "config", None)
    for field in ("execute_steps", "n_action_steps"):
        value = getattr(config, field, None)
        if value is not None:
            return int(value)
    return None


class BatchedPolicy:
    """Gives a policy with `predict(batch) -> (B, Ta, D)` the runner's `act_batch`.

    act_batch returns, per observation, the first `execute_steps` actions
    of its predicted chunk (all Ta when None) for the runner to queue. It
    holds no per-episode state: history longer than one frame needs the
    policy's own `act` (run with one env). reset/act/correct go to the
    wrapped policy unchanged.
    """

    def __init__(self, policy: Any, execute_steps: int | None = None):
        if not hasattr(policy, "predict") or not hasattr(policy, "data_requirements"):
            raise TypeError(f"{type(policy).__name__} has no predict()/data_requirements(); BatchedPolicy needs a "
                            "trainable policy (see the policy <-> training-loop contract in embodied/train.py)")
        self.policy = policy
        self.requirements = dict(policy.data_requirements())
        if int(self.requirements.get("obs_horizon", 1)) > 1:
            raise ValueError(f"{type(policy).__name__} looks at {self.requirements['obs_horizon']} frames of history, "
                             "which act_batch (one frame per robot) cannot give it; evaluate it with num_envs=1 so "
                             "that its own act() keeps the history")
        self.execute_steps = execute_steps if execute_steps is not None else default_execute_steps(policy)

    @property
    def spec(self) -> EmbodimentSpec:
        return self.policy.spec

    def reset(self, instruction: str | None = None) -> None:
        self.policy.reset(instruction)

    def act(self, obs: Observation) -> Action:
        return self.policy.act(obs)

    def correct(self, correction: Correction) -> None:
        if not hasattr(self.policy, "correct"):
            raise TypeError(f"{type(self.policy).__name__} takes no corrections")
        self.policy.correct(correction)

    def act_batch(self, observations: Sequence[Observation]) -> list[Action]:
        """B observations -> B action chunks (n, D), n = execute_steps or the predicted horizon."""
        batch = observations_to_batch(observations, self.spec, self.requirements)
        chunks = self.policy.predict(batch)
        chunks = chunks.detach().cpu().numpy() if hasattr(chunks, "detach") else np.asarray(chunks)
        if chunks.ndim != 3 or chunks.shape[0] != len(observations):
            raise ValueError(f"{type(self.policy).__name__}.predict returned shape {chunks.shape}; expected "
                             f"(B={len(observations)}, Ta, D)")
        n = self.execute_steps or chunks.shape[1]
        if n > chunks.shape[1]:
            raise ValueError(f"execute_steps={n} is more than the {chunks.shape[1]} actions {type(self.policy).__name__} "
                             "predicts per chunk; give at most that many")
        return [Action(c[:n], self.spec.action) for c in chunks]
