"""B simulated embodiments stepped in lockstep in worker processes (gymnasium's AsyncVectorEnv).

`VectorEmbodiment` is what `embodied.runner.Runner` drives when it runs
several episodes at once: one env per worker process, each created by its
registered name, reset explicitly with its own seed (autoreset is off, so an
episode ends where the env says it ends and nothing restarts behind the
runner's back). A slot the runner is not using this tick is *parked*: its
worker returns its last result again without stepping the simulator, so a
finished episode is never stepped past its end (Meta-World, for one, refuses
to step past its time limit).

    vec = VectorEmbodiment("tabletop/pick-v0", num_envs=4, env_kwargs={"image_size": (96, 96)})
    obs = vec.reset(0, seed=7)                 # slot 0 starts the episode of seed 7
    results = vec.step({0: action})            # {slot: StepResult}; the other slots are parked
    vec.close()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from embodied.sim import observation_from_gym
from embodied.types import Action, EmbodimentSpec, Observation, SpecMismatchError, StepResult


def _parked(action: Any) -> bool:
    a = np.asarray(action)
    return a.size > 0 and bool(np.all(np.isnan(a)))


class _EnvFactory:
    """Builds env `name` wrapped so that an all-NaN action means "park".

    gymnasium calls it once in this process (to read the spaces; we also read
    the spec and workspace from that env) and once in each worker process.
    """

    def __init__(self, name: str, kwargs: dict[str, Any]):
        self.name, self.kwargs = name, kwargs
        self.parent_pid = os.getpid()
        self.spec: EmbodimentSpec | None = None
        self.workspace: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": self.kwargs, "parent_pid": self.parent_pid}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["kwargs"])
        self.parent_pid = state["parent_pid"]

    def __call__(self) -> Any:
        from embodied import registry

        # Offscreen rendering needs EGL in a process without a display.
        os.environ.setdefault("MUJOCO_GL", "egl")
        if os.getpid() != self.parent_pid:
            # One BLAS/torch thread per worker: the parent keeps its threads for batched inference.
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ.setdefault(var, "1")
            try:
                import torch

                torch.set_num_threads(1)
            except ModuleNotFoundError:
                pass
        env = registry.make(self.name, kind="env", **self.kwargs)
        if os.getpid() == self.parent_pid:
            self.spec = env.unwrapped.embodiment_spec
            self.workspace = getattr(env.unwrapped, "workspace", None)
        return _parkable(env)


def _parkable(env: Any) -> Any:
    import gymnasium as gym

    class Parkable(gym.Wrapper):
        """Repeats the last step result for an all-NaN action instead of stepping the simulator.

        The runner's safety filter never lets NaN through, so an all-NaN action
        is unambiguous: it can only be the parking signal.
        """

        def __init__(self, env: Any):
            super().__init__(env)
            self._last: tuple[Any, ...] | None = None

        def reset(self, **kwargs: Any) -> Any:
            obs, info = self.env.reset(**kwargs)
            self._last = (obs, 0.0, False, False, info)
            return obs, info

        def step(self, action: Any) -> Any:
            if _parked(action):
                if self._last is None:
                    # A slot that has had no episode yet (fewer jobs than envs): give it a state to repeat.
                    # Its result is ignored, and its first job resets it with that job's seed.
                    self.reset()
                return self._last
            self._last = self.env.step(action)
            return self._last

    return Parkable(env)


def _slot(tree: Any, i: int) -> Any:
    """Element i of a batched observation tree ({key: (B, ...)} nested)."""
    if isinstance(tree, Mapping):
        return {k: _slot(v, i) for k, v in tree.items()}
    return tree[i]


def _slot_info(info: Mapping[str, Any], i: int) -> dict[str, Any]:
    """Env i's own info dict from gymnasium's vector info ({key: (B,) values, "_key": (B,) bool presence})."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        present = info.get(f"_{key}")
        if present is not None and not present[i]:
            continue
        out[key] = _slot_info(value, i) if isinstance(value, Mapping) else _plain(value[i])
    return out


def _plain(v: Any) -> Any:
    """numpy scalars back to Python ones (info values such as success flags and instructions)."""
    return v.item() if isinstance(v, np.generic) else v


class VectorEmbodiment:
    """`num_envs` copies of the registered env `name`, one per spawned worker process.

    spec: the envs' EmbodimentSpec. reset(index, seed, instruction) starts an
    episode in one slot; step({slot: Action}) applies one single-tick action
    to each listed slot (the others are parked) and returns their
    StepResults. last_obs / last_info hold each slot's latest observation
    and info. Actions must already be safety-filtered (the runner does it).
    """

    def __init__(self, name: str, num_envs: int, env_kwargs: Mapping[str, Any] | None = None):
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.name, self.num_envs = name, int(num_envs)
        factory = _EnvFactory(name, dict(env_kwargs or {}))
        # spawn, not fork: MuJoCo's EGL contexts and torch's thread pools do not survive a fork.
        self.env = AsyncVectorEnv([factory] * self.num_envs, context="spawn", autoreset_mode=AutoresetMode.DISABLED)
        if factory.spec is None:  # gymnasium builds one env here to read the spaces; ask a worker if it did not
            factory.spec = self.env.get_attr("embodiment_spec")[0]
        self._spec: EmbodimentSpec = factory.spec
        self._workspace = factory.workspace
        self._dim = self._spec.action.dim
        self.last_obs: list[Observation | None] = [None] * self.num_envs
        self.last_info: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]

    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    @property
    def workspace(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The envs' end-effector box (low (3,), high (3,)) in metres, for the safety filter."""
        return self._workspace

    def reset(self, index: int, seed: int | None = None, instruction: str | None = None) -> Observation:
        """Start a new episode in slot `index` (seeded with `seed`); the other slots are untouched."""
        self._check_index(index)
        mask = np.zeros(self.num_envs, np.bool_)
        mask[index] = True
        seeds: list[int | None] = [None] * self.num_envs
        seeds[index] = seed
        options: dict[str, Any] = {"reset_mask": mask}
        if instruction:
            options["instruction"] = instruction
        obs, info = self.env.reset(seed=seeds, options=options)
        return self._store(index, obs, info)

    def step(self, actions: Mapping[int, Action]) -> dict[int, StepResult]:
        """Apply one tick to each slot in `actions` (all in one parallel step); returns {slot: StepResult}."""
        if not actions:
            raise ValueError("step() needs an action for at least one slot")
        batch = np.full((self.num_envs, self._dim), np.nan, np.float32)
        for i, action in actions.items():
            self._check_index(i)
            if action.is_chunk:
                raise SpecMismatchError("step() takes one tick per slot; the runner splits chunks")
            if action.spec.mode != self._spec.action.mode or action.spec.dim != self._dim:
                raise SpecMismatchError(
                    f"action is {action.spec.mode}/{action.spec.dim}-D but {self._spec.name!r} takes "
                    f"{self._spec.action.mode}/{self._dim}-D"
                )
            if not np.all(np.isfinite(action.value)):
                raise ValueError(f"slot {i}: action {action.value} is not finite; filter actions with the "
                                 "SafetyFilter (the Runner does) before stepping")
            batch[i] = action.value
        obs, _reward, terminated, truncated, info = self.env.step(batch)
        out = {}
        for i in actions:
            o = self._store(i, obs, info)
            slot_info = self.last_info[i]
            out[i] = StepResult(obs=o, success=bool(slot_info.get("success", False)),
                                done=bool(terminated[i] or truncated[i]), info=dict(slot_info))
        return out

    def _store(self, i: int, obs: Any, info: Mapping[str, Any]) -> Observation:
        self.last_info[i] = _slot_info(info, i)
        self.last_obs[i] = observation_from_gym(_slot(obs, i), self.last_info[i])
        return self.last_obs[i]

    def _check_index(self, i: int) -> None:
        if not 0 <= i < self.num_envs:
            raise IndexError(f"slot {i} out of range: this VectorEmbodiment has {self.num_envs} envs")

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
