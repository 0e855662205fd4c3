"""Meta-World's scripted experts succeed through our wrapper and 7-D actions."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from embodied import registry
from envs.metaworld.sets import MT10


def run_expert(env, seed):
    env.reset(seed=seed)
    expert = env.unwrapped.make_expert()
    expert.reset()
    phases = set()
    while True:
        action = expert.act()
        assert action.shape == (7,) and action.dtype == np.float32
        assert env.action_space.contains(action), action
        phases.add(expert.phase)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info["success"], phases, expert


def test_mt10_experts_succeed_through_the_wrapper():
    results = {}
    for task in MT10:
        env = registry.make(f"metaworld/{task}", cameras=())
        try:
            results[task] = [run_expert(env, seed)[0] for seed in (0, 1)]
        finally:
            env.close()
    rate = np.mean([s for r in results.values() for s in r])
    assert rate >= 0.8, results


def test_expert_reports_phases_and_needs_a_reset():
    env = registry.make("metaworld/pick-place-v3", cameras=())
    try:
        expert = env.make_expert()
        with pytest.raises(RuntimeError, match="reset"):
            expert.act()
        success, phases, expert = run_expert(env, 0)
        assert success
        # pick-place: approach with a relaxed gripper, let the grasp settle, carry the puck
        assert {"move (gripper relaxed)", "hold (gripper closed)", "move (gripper closed)"} <= phases, phases
        expert.act()
        assert expert.phase == "done"
    finally:
        env.close()
