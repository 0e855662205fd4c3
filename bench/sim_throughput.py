"""Simulation throughput: the tabletop env against a raw mj_step loop and robosuite.

Prints, in one run:
  1. raw `mujoco.mj_step` loop on the tabletop's own compiled model (physics steps/s);
  2. the tabletop env without rendering (its physics steps/s, controller included,
     and its control steps/s);
  3. the tabletop env with two cameras (front + wrist) of SIZE×SIZE, RGB + depth;
  4. robosuite's Lift (Panda) with two cameras (agentview + eye-in-hand) of the
     same size, RGB + depth, on its default renderer settings;
and the ratios. Actions are random within the action bounds for both envs.
Its last line is one JSON object with the figures.

    MUJOCO_GL=egl python bench/sim_throughput.py [--size 128] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np


def timed(fn, seconds: float, min_iters: int = 5) -> float:
    """Calls of fn() per second over about `seconds` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def raw_mj_step(model, seconds: float) -> float:
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    batch = 100

    def run():
        for _ in range(batch):
            mujoco.mj_step(model, data)

    return batch * timed(run, seconds)


def env_steps(env, seconds: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    space = env.action_space
    env.reset(seed=seed)

    def step():
        a = rng.uniform(space.low, space.high).astype(np.float32)
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()

    return timed(step, seconds)


def robosuite_lift(size: int, seconds: float) -> float:
    import robosuite

    env = robosuite.make(
        "Lift",
        robots="Panda",
        has_renderer=False,
        has_offscreen_renderer=True,
        use_camera_obs=True,
        camera_names=["agentview", "robot0_eye_in_hand"],
        camera_heights=size,
        camera_widths=size,
        camera_depths=True,
        control_freq=10,
        horizon=10_000,
    )
    env.reset()
    low, high = env.action_spec
    rng = np.random.default_rng(0)
    try:
        return timed(lambda: env.step(rng.uniform(low, high)), seconds)
    finally:
        env.close()


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--task", default="tabletop/pick-v0")
    args = ap.parse_args()

    from embodied import registry

    env = registry.make(args.task, cameras=())
    u = env.unwrapped
    substeps = int(u.substeps)
    raw = raw_mj_step(u.model, args.seconds)
    physics_env = env_steps(env, args.seconds)
    env.close()
    print(f"raw mj_step loop:                 {raw:12,.0f} physics steps/s")
    print(f"tabletop, no rendering:           {physics_env:12,.1f} control steps/s "
          f"= {physics_env * substeps:,.0f} physics steps/s ({substeps} per control step)")

    env = registry.make(args.task, cameras=("front", "wrist"), image_size=(args.size, args.size))
    render_env = env_steps(env, args.seconds)
    env.close()
    print(f"tabletop, 2 cameras {args.size}x{args.size} RGB+D:  {render_env:12,.1f} steps/s")

    rs = robosuite_lift(args.size, args.seconds)
    print(f"robosuite Lift, 2 cameras RGB+D:  {rs:12,.1f} steps/s")

    result = {
        "raw_mj_step_per_s": raw,
        "tabletop_env_steps_per_s": physics_env,
        "tabletop_physics_steps_per_s": physics_env * substeps,
        "substeps": substeps,
        "tabletop_render_steps_per_s": render_env,
        "robosuite_render_steps_per_s": rs,
        "image_size": args.size,
        "ratio_physics_vs_raw": physics_env * substeps / raw,
        "ratio_render_vs_robosuite": render_env / rs,
    }
    print(f"ratios: physics vs raw {result['ratio_physics_vs_raw']:.2f}x, "
          f"rendered vs robosuite {result['ratio_render_vs_robosuite']:.1f}x")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
