"""MetaWorldEnv follows the gym convention of embodied.sim, with real MuJoCo physics and rendering."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from embodied import registry
from embodied.sim import GymEmbodiment
from embodied.types import REQUIRED_STATE_KEYS, Action
from envs.metaworld.env import MetaWorldEnv
from envs.metaworld.frame import pos_to_mw
from envs.metaworld.instructions import paraphrases


@pytest.fixture(scope="module")
def camera_env():
    env = MetaWorldEnv("pick-place-v3", shadows=False, render_mode="rgb_array")
    yield env
    env.close()


@pytest.mark.parametrize("task", ["reach-v3", "drawer-open-v3"])
def test_check_env_state_only(task):
    env = registry.make(f"metaworld/{task}", cameras=())
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        assert "images" not in obs and "depth" not in obs  # gymnasium forbids empty Dict spaces
        assert set(REQUIRED_STATE_KEYS) <= set(obs["state"]) and obs["state"]["mw_obs"].shape == (39,)
        assert info["cameras"] == {}
    finally:
        env.close()


def test_check_env_with_cameras_and_images_are_real(camera_env):
    check_env(camera_env)
    obs, info = camera_env.reset(seed=1)
    np.testing.assert_array_equal(camera_env.render(), obs["images"]["corner"])
    spec = camera_env.embodiment_spec
    assert spec.camera_names == ("corner", "gripperPOV")
    for cam in spec.camera_names:
        img, depth = obs["images"][cam], obs["depth"][cam]
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        assert img.std() > 20, f"{cam} looks blank"
        assert depth.shape == (128, 128) and depth.dtype == np.float32
        assert 0.01 < np.median(depth) < 3.0, "depth is in metres, the scene is within a few metres"
        assert set(info["cameras"][cam]) == {"intrinsics", "extrinsics"}


def test_depth_intrinsics_and_extrinsics_agree_with_ray_casting(camera_env):
    """Back-project pixels with K and T_world_cam; MuJoCo's ray caster must hit at the rendered depth."""
    obs, info = camera_env.reset(seed=2)
    model, data = camera_env._mw.model, camera_env._mw.data
    rng = np.random.default_rng(0)
    for cam in ("corner", "gripperPOV"):  # "corner" is published turned by 180 degrees, the wrist camera is not
        K = info["cameras"][cam]["intrinsics"].astype(np.float64)
        T = info["cameras"][cam]["extrinsics"].astype(np.float64)
        errors = []
        for u, v in rng.integers(0, 128, (60, 2)):
            ray_cam = np.linalg.solve(K, [u + 0.5, v + 0.5, 1.0])  # z = 1: depth along the optical axis
            ray = pos_to_mw(T[:3, :3] @ ray_cam)
            geom = np.zeros(1, np.int32)
            hit = mujoco.mj_ray(
                model, data, pos_to_mw(T[:3, 3]), ray, np.array([1, 1, 1, 0, 0, 0], np.uint8), 1, -1, geom
            )
            if hit >= 0:  # mj_ray returns the distance in units of |ray|, i.e. the depth
                errors.append(abs(hit - obs["depth"][cam][v, u]))
        assert len(errors) > 20 and np.median(errors) < 1e-3, (cam, np.median(errors))


def test_front_camera_is_right_side_up(camera_env):
    """A point above the hand projects higher in the "corner" image than the hand itself."""
    obs, info = camera_env.reset(seed=0)
    K = info["cameras"]["corner"]["intrinsics"]
    T = info["cameras"]["corner"]["extrinsics"]
    hand = obs["state"]["ee_pos"]
    rows = []
    for p in (hand, hand + np.array([0, 0, 0.2], np.float32)):
        p_cam = T[:3, :3].T @ (p - T[:3, 3])
        rows.append((K @ p_cam)[1] / p_cam[2])
    assert rows[1] < rows[0]


def test_reset_seed_picks_variation_and_instruction_deterministically():
    env = MetaWorldEnv("push-v3", cameras=())
    try:
        o5, i5 = env.reset(seed=5)
        env.reset(seed=6)
        o5b, i5b = env.reset(seed=5)  # the same episode start, whatever ran in between
        np.testing.assert_array_equal(o5["state"]["mw_obs"], o5b["state"]["mw_obs"])
        assert (i5["variation"], i5["instruction"]) == (i5b["variation"], i5b["instruction"])
        seen = {env.reset(seed=s)[1]["variation"] for s in range(20)}
        assert len(seen) > 10 and seen <= set(range(50))
        goals = {tuple(env.reset(seed=s)[0]["state"]["mw_obs"][-3:].round(4)) for s in range(8)}
        assert len(goals) > 1, "different variations place the goal differently"
        assert i5["instruction"] in paraphrases("push-v3") and i5["subtask"] == i5["instruction"]

        _, info = env.reset(seed=5, options={"instruction": "shove the puck over there", "variation": 7})
        assert info["instruction"] == "shove the puck over there" and info["variation"] == 7
        with pytest.raises(ValueError, match="unknown reset options"):
            env.reset(options={"instrucion": "typo"})
        with pytest.raises(ValueError, match="variation"):
            env.reset(options={"variation": 50})
    finally:
        env.close()


def test_episode_clock_truncation_and_bad_input():
    env = MetaWorldEnv("reach-v3", cameras=(), max_episode_steps=3)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(7, np.float32))
        env.reset(seed=0)
        still = np.array([0, 0, 0, 0, 0, 0, 1], np.float32)
        results = [env.step(still) for _ in range(3)]
        assert [r[3] for r in results] == [False, False, True]
        assert results[-1][4]["time"] == pytest.approx(3 / 80)
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(still)
        env.reset(seed=0)
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(4, np.float32))
        with pytest.raises(ValueError, match="NaN"):
            env.step(np.full(7, np.nan, np.float32))
    finally:
        env.close()
    with pytest.raises(ValueError, match="Did you mean"):
        MetaWorldEnv("reach-v2")
    with pytest.raises(TypeError, match="valid ones"):
        MetaWorldEnv("reach-v3", camera=("corner",))
    with pytest.raises(ValueError, match="no camera"):
        MetaWorldEnv("reach-v3", cameras=("front",))


def test_embodiment_view_and_spec():
    emb = GymEmbodiment(registry.make("metaworld/window-open-v3", cameras=()))
    try:
        spec = emb.spec
        assert spec.control_hz == pytest.approx(80.0)
        assert spec.action.mode == "ee_delta" and spec.action.high[:3] == (0.01, 0.01, 0.01)
        assert spec.action.high[3:6] == (0.0, 0.0, 0.0), "the Meta-World hand cannot rotate"
        obs = emb.reset(instruction="slide the window to the right", seed=0)
        obs.check(spec)
        assert obs.instruction == "slide the window to the right"
        result = emb.step(Action(np.array([0.01, 0, 0, 0, 0, 0, 1], np.float32), spec.action))
        assert result.obs.timestamp == pytest.approx(1 / 80) and not result.done
    finally:
        emb.close()


def test_async_vector_env_with_two_envs():
    # "module:id" makes gymnasium import our registrations first, in each worker process too.
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make("envs.registration:metaworld/reach-v3", cameras=())] * 2)
    try:
        obs, info = envs.reset(seed=[0, 1])
        assert obs["state"]["ee_pos"].shape == (2, 3) and obs["state"]["mw_obs"].shape == (2, 39)
        assert list(info["instruction"]) and len(info["instruction"]) == 2
        actions = np.tile(np.array([0.01, 0, 0, 0, 0, 0, 1], np.float32), (2, 1))
        for _ in range(5):
            obs, reward, _, _, info = envs.step(actions)
        assert reward.shape == (2,) and info["success"].shape == (2,)
        assert np.all(obs["state"]["ee_pos"][:, 0] > 0.6), "five ticks forward at 1 cm each"
    finally:
        envs.close()


def test_msaa_and_reflections_are_off_by_default_and_each_one_switch():
    # Off, a frame costs about a third on llvmpipe; the scene itself is the same either way.
    kw = {"cameras": ("corner",), "height": 48, "width": 48, "depth": False}
    fast, full = MetaWorldEnv("reach-v3", **kw), MetaWorldEnv("reach-v3", antialiasing=True, reflections=True, **kw)
    try:
        a = fast.reset(seed=3)[0]["images"]["corner"].astype(float)
        b = full.reset(seed=3)[0]["images"]["corner"].astype(float)
        assert not np.array_equal(a, b)
        assert np.abs(a - b).mean() < 8, "the two looks should differ only in edges and the floor's mirror"
    finally:
        fast.close()
        full.close()
