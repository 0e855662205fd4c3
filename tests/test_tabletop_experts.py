"""The scripted experts solve every tabletop family (real physics, state-only envs).

The full measurement (50 seeds per family) is bench/expert_success.py; here a
fixed sample of 4 seeds per family must give at least 3 successes.
"""

from __future__ import annotations

import numpy as np
import pytest

from embodied.expert import ExpertPolicy
from embodied.runner import Runner
from embodied.sim import GymEmbodiment
from envs.tabletop import FAMILIES
from envs.tabletop.env import TabletopEnv

SEEDS = (100, 101, 102, 103)


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_solves_the_family(family):
    robot = GymEmbodiment(TabletopEnv(task=family, cameras=()))
    runner = Runner(robot, ExpertPolicy(robot))  # the one loop, safety filter included
    results = [runner.run_episode(seed=seed) for seed in SEEDS]
    successes = sum(r.success for r in results)
    assert successes >= 3, f"{family}: expert succeeded in {successes}/{len(SEEDS)} episodes"
    assert sum(r.interventions for r in results) == 0, "the expert should never need the safety filter"
    robot.close()


def test_expert_actions_stay_in_bounds_and_name_their_phase():
    env = TabletopEnv(task="stack", cameras=())
    env.reset(seed=7)
    expert = env.make_expert()
    expert.reset()
    phases = set()
    for _ in range(env.max_episode_steps):
        action = expert.act()
        assert action.shape == (7,) and action.dtype == np.float32
        assert env.action_space.contains(action)
        phases.add(expert.phase)
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break
    assert term
    assert {"approach", "grasp", "lift", "carry", "release"} <= phases


def test_a_wrong_object_does_not_count():
    """Success is about the named object: lifting a distractor instead fails the pick task."""
    env = TabletopEnv(task="pick", cameras=())
    env.reset(seed=4)
    target = env.goal.params["object"]
    distractor = next(o.name for o in env.scene.objects if o.kind == "block" and o.name != target)
    env.goal.params["object"] = distractor  # point the expert at the wrong object
    expert = env.make_expert()
    expert.reset()
    for _ in range(60):
        _, _, term, _, _ = env.step(expert.act())
        assert not term
    assert env.world.grasped(distractor) and not env.world.grasped(target)


def test_expert_refuses_joint_control():
    env = TabletopEnv(task="pick", cameras=(), control_mode="joint_pos")
    with pytest.raises(ValueError, match="ee_delta"):
        env.make_expert()


def test_the_random_policy_holds_each_draw_within_bounds_and_repeats_per_seed():
    """RandomPolicy: the floor beside the expert, and what moves the arm in recorded scenes."""
    from embodied.data.synthetic import synthetic_observation, synthetic_spec
    from embodied.expert import RandomPolicy

    spec = synthetic_spec()
    obs = synthetic_observation(spec, 0, 0)
    policy = RandomPolicy(spec, seed=7, hold_steps=3)
    values = [policy.act(obs).value for _ in range(6)]
    assert all(np.array_equal(values[0], v) for v in values[:3]) and not np.array_equal(values[2], values[3])
    assert all((v >= spec.action.low_array).all() and (v <= spec.action.high_array).all() for v in values)
    policy.reset()
    assert np.array_equal(policy.act(obs).value, values[0])  # the same seed gives the same moves again
    assert not np.array_equal(RandomPolicy(spec, seed=8).act(obs).value, values[0])
    with pytest.raises(ValueError, match="hold_steps must be >= 1"):
        RandomPolicy(spec, hold_steps=0)
