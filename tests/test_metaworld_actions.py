"""The 7-D ee_delta <-> Meta-World 4-D action mapping, checked by arithmetic and by physics."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from embodied.types import SpecMismatchError
from envs.metaworld.actions import MW_ACTION_SCALE, action_spec, from_metaworld, to_metaworld
from envs.metaworld.env import MetaWorldEnv, train_tasks


def test_metaworld_action_round_trips_through_ee_delta():
    rng = np.random.default_rng(0)
    mw = rng.uniform(-1, 1, (2000, 4)).astype(np.float32)
    mw[:4, 3] = [-1.0, 0.0, 0.6, 1.0]  # the grip efforts the experts use
    for m in mw:
        ours = from_metaworld(m)
        assert ours.dtype == np.float32 and ours.shape == (7,)
        np.testing.assert_array_equal(ours[3:6], 0.0)
        # float32 rounding of the 1/100 scale is the only difference
        np.testing.assert_allclose(to_metaworld(ours), m, rtol=0, atol=1e-6)
    for effort in (-1.0, 0.0, 1.0):
        assert to_metaworld(from_metaworld([0, 0, 0, effort]))[3] == effort
    # Out-of-range expert commands are clipped, as Meta-World itself clips them.
    np.testing.assert_allclose(to_metaworld(from_metaworld([3.0, -2.0, 0.5, 4.0])), [1.0, -1.0, 0.5, 1.0], atol=1e-6)


def test_ee_delta_round_trips_through_metaworld_within_the_spec():
    spec = action_spec(80.0)
    rng = np.random.default_rng(1)
    for a in rng.uniform(spec.low_array, spec.high_array, (500, 7)).astype(np.float32):
        np.testing.assert_allclose(from_metaworld(to_metaworld(a)), a, rtol=0, atol=1e-9)
    assert spec.high[:3] == (MW_ACTION_SCALE,) * 3 and spec.high[3:6] == (0.0, 0.0, 0.0)
    # axes: our +x forward is Meta-World's +y, our +y (left) is Meta-World's -x; opening 1 is effort -1
    np.testing.assert_allclose(to_metaworld([0.01, 0, 0, 0, 0, 0, 1]), [0, 1, 0, -1], atol=1e-12)
    np.testing.assert_allclose(to_metaworld([0, 0.01, 0, 0, 0, 0, 0]), [-1, 0, 0, 1], atol=1e-12)
    with pytest.raises(SpecMismatchError, match=r"shape \(7,\)"):
        to_metaworld(np.zeros(4))


def test_commands_move_the_hand_the_way_the_convention_says():
    env = MetaWorldEnv("reach-v3", cameras=())
    try:

        def run(action, n=15):
            obs, _ = env.reset(seed=0)
            start = obs["state"]
            for _ in range(n):
                obs, *_ = env.step(np.array(action, np.float32))
            return start, obs["state"]

        for axis in range(3):
            action = [0, 0, 0, 0, 0, 0, 1]
            action[axis] = 0.01
            start, end = run(action)
            moved = end["ee_pos"] - start["ee_pos"]
            assert moved[axis] > 0.05 and np.abs(np.delete(moved, axis)).max() < 0.02, (axis, moved)
            assert moved[axis] < 15 * 0.01 + 1e-3, "at most action_scale metres per tick"
        start, closed = run([0, 0, 0, 0, 0, 0, 0.0])
        assert start["gripper"][0] > 0.95 and closed["gripper"][0] < 0.1
        _, opened = run([0, 0, 0, 0, 0, 0, 1.0])
        assert opened["gripper"][0] > 0.95
        # ee_pos is the hand in the base frame: Meta-World's (x, y, z) -> (y, -x, z)
        mw = opened["mw_obs"][:3]
        np.testing.assert_allclose(opened["ee_pos"], [mw[1], -mw[0], mw[2]], atol=1e-6)
    finally:
        env.close()


@pytest.mark.filterwarnings("ignore:Constant")
def test_expert_through_the_wrapper_replays_the_raw_metaworld_loop():
    """Same task variation, same scripted policy: our 7-D path and Meta-World's own 4-D loop agree."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    task = "door-open-v3"
    env = MetaWorldEnv(task, cameras=())
    raw = ALL_V3_ENVIRONMENTS[task]()
    try:
        obs, info = env.reset(seed=3)
        expert = env.make_expert()
        expert.reset()
        raw.set_task(train_tasks(task, env.config.task_seed)[info["variation"]])
        raw_obs, _ = raw.reset()
        np.testing.assert_array_equal(obs["state"]["mw_obs"], raw_obs.astype(np.float32))
        policy = ENV_POLICY_MAP[task]()
        for t in range(150):
            action = expert.act()
            np.testing.assert_array_equal(expert.act(), action)  # acting does not disturb the env
            obs, _, terminated, _, info = env.step(action)
            raw_action = policy.get_action(raw_obs.copy())  # door-open's policy edits its input in place
            np.testing.assert_allclose(expert.last_mw_action, raw_action, atol=1e-5)
            raw_obs, _, _, _, raw_info = raw.step(raw_action)
            np.testing.assert_allclose(obs["state"]["mw_obs"], raw_obs, atol=1e-4)
            assert info["success"] == bool(raw_info["success"])
            if terminated:
                break
        assert terminated, "the door-open expert succeeds well within 150 ticks"
    finally:
        env.close()
        raw.close()
