"""The Embodiment view over a simulated `gymnasium.Env`.

Every simulated env in this repository follows one convention, so that one
thin adapter turns any of them into an `Embodiment`:

- ``env.unwrapped.embodiment_spec`` is its `EmbodimentSpec`.
- Observations are a Dict space ``{"images": {cam: (H,W,3) uint8},
  "depth": {cam: (H,W) float32 m}, "state": {key: (d,) float32}}``
  ("images"/"depth" are left out when the env renders no cameras or no
  depth: gymnasium's check_env rejects an empty Dict space).
- ``info`` (from reset and every step) carries ``"instruction"`` (str),
  ``"success"`` (bool), ``"cameras"`` ({cam: {"intrinsics": 3x3,
  "extrinsics": 4x4}}), ``"time"`` (episode seconds) and, for long-horizon
  tasks, ``"subtask"`` (the instruction of the sub-task now active).
- ``reset(seed=..., options={"instruction": text})`` lets a caller reword the
  task; an env terminates when its success predicate holds.
- Constructors take ``cameras=(names...)`` (``()`` for state only, fastest)
  and ``image_size=(h, w)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embodied.types import Action, CameraInfo, EmbodimentSpec, Observation, SpecMismatchError, StepResult


def observation_from_gym(obs: dict[str, Any], info: dict[str, Any]) -> Observation:
    """Convert one env's gym observation + info into an `Observation`."""
    cams = {
        name: CameraInfo(intrinsics=c["intrinsics"], extrinsics=c["extrinsics"])
        for name, c in (info.get("cameras") or {}).items()
    }
    return Observation(
        images=dict(obs.get("images", {})),
        depth=dict(obs.get("depth", {})),
        state={k: np.asarray(v, np.float32) for k, v in obs["state"].items()},
        instruction=info.get("instruction"),
        timestamp=float(info.get("time", 0.0)),
        cameras=cams,
    )


class GymEmbodiment:
    """Wrap a gymnasium env that follows the convention above as an `Embodiment`."""

    def __init__(self, env: Any):
        self.env = env
        self._spec: EmbodimentSpec = env.unwrapped.embodiment_spec
        self.last_info: dict[str, Any] = {}
        self.last_obs: Observation | None = None

    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    def reset(self, instruction: str | None = None, seed: int | None = None) -> Observation:
        options = {"instruction": instruction} if instruction else None
        obs, info = self.env.reset(seed=seed, options=options)
        self.last_info = info
        self.last_obs = observation_from_gym(obs, info)
        return self.last_obs

    def step(self, action: Action) -> StepResult:
        if action.is_chunk:
            raise SpecMismatchError("step() takes one tick; the runner splits chunks")
        if action.spec.mode != self._spec.action.mode or action.spec.dim != self._spec.action.dim:
            raise SpecMismatchError(
                f"action is {action.spec.mode}/{action.spec.dim}-D but {self._spec.name!r} takes "
                f"{self._spec.action.mode}/{self._spec.action.dim}-D"
            )
        obs, _reward, terminated, truncated, info = self.env.step(action.value)
        self.last_info = info
        self.last_obs = observation_from_gym(obs, info)
        return StepResult(
            obs=self.last_obs,
            success=bool(info.get("success", False)),
            done=bool(terminated or truncated),
            info=dict(info),
        )

    @property
    def workspace(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The env's end-effector workspace box (low (3,), high (3,)) in metres, if it has one."""
        return getattr(self.env.unwrapped, "workspace", None)

    def close(self) -> None:
        self.env.close()


def make_embodiment(name: str, **kwargs: Any) -> GymEmbodiment:
    """`registry.make` an env by name and wrap it as an Embodiment."""
    from embodied import registry

    return GymEmbodiment(registry.make(name, kind="env", **kwargs))
