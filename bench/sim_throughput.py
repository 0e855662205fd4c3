"""Simulation throughput: the tabletop env against a raw mj_step loop and robosuite.

Prints, in one run:
  1. raw `mujoco.mj_step` on the tabletop's own compiled model through the very states the env
     visits (physics steps/s), as `mj_step(nstep=substeps)` in C (the baseline of the ratio) and as
     a Python loop of single steps;
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


def physics_vs_raw(env, seconds: float, seed: int = 0) -> dict[str, float]:
    """The env without rendering against raw stepping of the same model through the same states.

    Interleaved tick by tick, so that a busy machine slows both sides alike: before each env tick
    the integration state is saved; after it, a scratch MjData is set to that state with the
    controls the env's controller chose, and the same number of physics steps is run raw, once as
    `mj_step(nstep=substeps)` in C and once as a Python loop of single `mj_step` calls.
    Actions are uniformly random within the action bounds.
    """
    import mujoco

    u = env.unwrapped
    m, d, n_sub = u.model, u.data, u.config.substeps
    scratch = mujoco.MjData(m)
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    before = np.empty(mujoco.mj_stateSize(m, spec))
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=seed)
    t_env = t_raw = t_loop = 0.0
    ticks = 0
    clock = time.perf_counter
    while ticks < 20 or t_env + t_raw + t_loop < seconds:
        a = rng.uniform(low, high).astype(np.float32)
        mujoco.mj_getState(m, d, before, spec)
        t0 = clock()
        _, _, term, trunc, _ = env.step(a)
        t_env += clock() - t0
        for batched in (True, False):
            mujoco.mj_setState(m, scratch, before, spec)
            scratch.ctrl[:] = d.ctrl
            t0 = clock()
            if batched:
                mujoco.mj_step(m, scratch, nstep=n_sub)
                t_raw += clock() - t0
            else:
                for _ in range(n_sub):
                    mujoco.mj_step(m, scratch)
                t_loop += clock() - t0
        ticks += 1
        if term or trunc:
            env.reset()
    return {"env_steps_per_s": ticks / t_env, "physics_steps_per_s": ticks * n_sub / t_env,
            "raw_per_s": ticks * n_sub / t_raw, "raw_loop_per_s": ticks * n_sub / t_loop, "substeps": n_sub}


def env_steps(env, seconds: float, seed: int = 0) -> float:
    """Control steps/s of `env` under uniformly random actions (reset when an episode ends)."""
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
    phys = physics_vs_raw(env, 2 * args.seconds)
    env.close()
    substeps, raw, raw_loop = phys["substeps"], phys["raw_per_s"], phys["raw_loop_per_s"]
    physics_env = phys["env_steps_per_s"]
    print(f"raw mj_step, one call per step:   {raw_loop:12,.0f} physics steps/s")
    print(f"raw mj_step(nstep={substeps}):           {raw:12,.0f} physics steps/s  (the baseline of the ratio)")
    print(f"tabletop, no rendering:           {physics_env:12,.1f} control steps/s "
          f"= {physics_env * substeps:,.0f} physics steps/s ({substeps} per control step)")

    env = registry.make(args.task, cameras=("front", "wrist"), image_size=(args.size, args.size))
    render_env = env_steps(env, args.seconds)
    env.close()
    print(f"tabletop, 2 cameras {args.size}x{args.size} RGB+D:  {render_env:12,.1f} steps/s")

    # Its own process: robosuite's renderer must not share a process (and EGL state) with ours.
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        rs = pool.apply(robosuite_lift, (args.size, args.seconds))
    print(f"robosuite Lift, 2 cameras RGB+D:  {rs:12,.1f} steps/s")

    result = {
        "raw_mj_step_per_s": raw,
        "raw_mj_step_python_loop_per_s": raw_loop,
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
