"""MDT-small inference speed on CPU with a batch of 1: replans/s and actions/s.

A replan is one `act()` call that runs the whole policy: both camera CNNs,
the goal encoder (instruction embedding cached, as in a rollout), the
transformer encoder and 10 DDIM steps of the decoder, giving a chunk of 10
actions. Actions/s is `act()` with the chunk executed open loop (one replan
per `execute_steps` actions), as in a rollout. Observations come from the real
tabletop env (front + wrist, 128x128) when it is registered, else synthetic
observations of the same spec. The weights are untrained: speed does not
depend on them. Its last line is one JSON object.

    MUJOCO_GL=egl python bench/policy_speed.py [--seconds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from embodied.data.format import ACTION, STATE, state_dim
from embodied.types import ActionSpec, CameraSpec, EmbodimentSpec, Observation
from policies.mdt import MDTConfig, MDTPolicy

INSTRUCTION = "pick up the red cube"


def tabletop_observations(n: int) -> tuple[EmbodimentSpec, list[Observation], str]:
    """n observations from tabletop/pick-v0 under random actions, or synthetic ones of its spec."""
    try:
        from embodied.sim import make_embodiment

        env = make_embodiment("tabletop/pick-v0")
    except Exception as e:  # noqa: BLE001 - any env failure (missing suite, no EGL): the figure is about the policy
        print(f"tabletop env unavailable ({type(e).__name__}: {e}); using synthetic observations")
        return _synthetic(n)
    rng = np.random.default_rng(0)
    obs = [env.reset(seed=0)]
    spec = env.spec
    while len(obs) < n:
        a = rng.uniform(spec.action.low_array, spec.action.high_array).astype(np.float32)
        from embodied.types import Action

        result = env.step(Action(a, spec.action))
        obs.append(env.reset(seed=len(obs)) if result.done else result.obs)
    env.close()
    return spec, obs, "tabletop/pick-v0"


def _synthetic(n: int) -> tuple[EmbodimentSpec, list[Observation], str]:
    from embodied.data.synthetic import synthetic_observation

    spec = EmbodimentSpec(
        name="tabletop-like", cameras=(CameraSpec("front", 128, 128), CameraSpec("wrist", 128, 128)),
        state={"joint_pos": 7, "joint_vel": 7, "ee_pos": 3, "ee_quat": 4, "gripper": 1},
        action=ActionSpec.ee_delta(0.02, 0.1, 10.0))
    return spec, [synthetic_observation(spec, t) for t in range(n)], "synthetic"


def neutral_stats(spec: EmbodimentSpec) -> dict:
    s = state_dim(spec)
    return {STATE: {"mean": np.zeros(s), "std": np.ones(s)},
            ACTION: {"min": spec.action.low_array, "max": spec.action.high_array}}


def rate(policy: MDTPolicy, observations: list[Observation], seconds: float) -> float:
    """act() calls per second over about `seconds`, after warm-up."""
    policy.reset(INSTRUCTION)
    for o in observations[:3]:
        policy.act(o)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 10:
        policy.act(observations[n % len(observations)])
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: batch-1 ops are too small to gain from more, and a busy "
                         "2-core machine loses badly to thread contention; 0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec, observations, source = tabletop_observations(32)
    config = MDTConfig()
    # eval(), as a loaded checkpoint is: a deployed policy does not switch train/eval modes on every replan
    replanning = MDTPolicy.from_dataset_meta(dataclasses.replace(config, execute_steps=1), spec,
                                             neutral_stats(spec)).eval()
    chunked = MDTPolicy.from_dataset_meta(config, spec, neutral_stats(spec), replanning.language_encoder).eval()
    replans = rate(replanning, observations, args.seconds)
    actions = rate(chunked, observations, args.seconds)
    params = sum(p.numel() for p in replanning.trainable_parameters()) / 1e6
    print(f"observations: {source}; camera images {[(c.name, c.height, c.width) for c in spec.cameras]} "
          f"resized to {config.image_size}; torch threads {torch.get_num_threads()}")
    print(f"MDT-small ({params:.2f} M trainable parameters, chunk {config.chunk}, {config.sampling_steps} DDIM steps): "
          f"{replans:.1f} replans/s, {actions:.1f} actions/s (chunk executed open loop)")
    print(json.dumps({"replans_per_s": round(replans, 2), "actions_per_s": round(actions, 2),
                      "image_size": list(config.image_size), "params_m": round(params, 3),
                      "chunk": config.chunk, "sampling_steps": config.sampling_steps,
                      "threads": torch.get_num_threads(), "observations": source}))


if __name__ == "__main__":
    main()
