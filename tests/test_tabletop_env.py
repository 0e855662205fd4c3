"""The MuJoCo tabletop suite as a gymnasium env: spaces, cameras, control, vector envs.

Speed is measured by bench/sim_throughput.py, not here.

Everything here runs real MuJoCo physics and real offscreen (EGL) rendering.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from embodied import registry
from embodied.sim import GymEmbodiment
from envs.tabletop import FAMILIES, LONG_HORIZON_FAMILIES, SINGLE_STEP_FAMILIES, env_id
from envs.tabletop.env import TabletopEnv
from envs.tabletop.tasks import NEXT_TO_OFFSET, PUSH_DIRECTIONS, PUSH_DISTANCE


def _checked(env) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    return [str(w.message) for w in caught]


def test_every_family_is_registered_by_name():
    assert len(FAMILIES) >= 11 and len(LONG_HORIZON_FAMILIES) >= 2
    assert set(SINGLE_STEP_FAMILIES) | set(LONG_HORIZON_FAMILIES) == set(FAMILIES)
    names = registry.names(kind="env", prefix="tabletop/")
    assert {env_id(f) for f in FAMILIES} <= set(names)
    env = registry.make("tabletop/open-drawer-v0", cameras=())
    assert env.config.task == "open-drawer"
    env.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_check_env_state_only(family):
    env = TabletopEnv(task=family, cameras=())
    assert _checked(env) == []
    obs, info = env.reset(seed=3)
    assert set(obs) == {"state"}
    assert info["instruction"] and info["subtask"] and info["success"] is False
    assert env.max_episode_steps == (400 if family in LONG_HORIZON_FAMILIES else 120)
    env.close()


def test_check_env_with_cameras_and_rgb_render():
    env = gym.make("tabletop/stack-three-v0", render_mode="rgb_array", image_size=(64, 80))
    assert _checked(env) == []
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 80, 3) and frame.dtype == np.uint8
    env.close()


def test_images_depth_and_intrinsics_agree_with_the_scene():
    env = TabletopEnv(task="pick", cameras=("front", "wrist"))
    obs, info = env.reset(seed=5)
    for cam in ("front", "wrist"):
        rgb, depth = obs["images"][cam], obs["depth"][cam]
        assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
        assert depth.shape == (128, 128) and depth.dtype == np.float32
        assert rgb.std() > 10, f"{cam} image is blank"
        assert np.isfinite(depth).all() and depth.min() > 0.01
    # The front camera sees the table about 1-2 m away at the image centre.
    assert 0.8 < obs["depth"]["front"][64, 64] < 2.0
    # Project the top face centre of the target object with K and T_world_cam:
    # the depth image there must hold that point's distance along the optical axis.
    cam = info["cameras"]["front"]
    K, T = np.asarray(cam["intrinsics"], float), np.asarray(cam["extrinsics"], float)
    name = env.goal.params["object"]
    top = env.world.pos(name) + [0, 0, env.scene.object(name).half_height]
    p_cam = np.linalg.inv(T) @ np.append(top, 1.0)
    assert p_cam[2] > 0, "the object is behind the camera"
    u, v, _ = K @ (p_cam[:3] / p_cam[2])
    assert 0 <= u < 128 and 0 <= v < 128
    seen = obs["depth"]["front"][int(v), int(u)]
    assert abs(seen - p_cam[2]) < 0.03, (seen, p_cam[2])
    env.close()


def test_ee_delta_moves_the_gripper_by_the_commanded_amount():
    env = TabletopEnv(task="reach", cameras=())
    obs, _ = env.reset(seed=1)
    start = obs["state"]["ee_pos"].copy()
    move = np.array([0.03, -0.02, -0.01, 0, 0, 0, 1], np.float32)
    for _ in range(5):
        env.step(move)
    for _ in range(5):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1], np.float32))
    np.testing.assert_allclose(obs["state"]["ee_pos"] - start, 5 * move[:3], atol=0.006)
    # Turning: 3 ticks of 0.2 rad about world z turn the gripper 0.6 rad.
    q0 = obs["state"]["ee_quat"].astype(float)
    for _ in range(3):
        env.step(np.array([0, 0, 0, 0, 0, 0.2, 1], np.float32))
    for _ in range(4):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1], np.float32))
    q1 = obs["state"]["ee_quat"].astype(float)
    rel = np.empty(4)
    neg = np.empty(4)
    mujoco.mju_negQuat(neg, q0)
    mujoco.mju_mulQuat(rel, q1, neg)
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, rel if rel[0] >= 0 else -rel, 1.0)
    np.testing.assert_allclose(vel, [0, 0, 0.6], atol=0.03)
    # Closing the gripper shows in the state.
    for _ in range(6):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 0], np.float32))
    assert obs["state"]["gripper"][0] < 0.1
    env.close()


def test_joint_pos_mode_reaches_the_target():
    env = TabletopEnv(task="pick", cameras=(), control_mode="joint_pos")
    assert env.action_space.shape == (8,) and env.embodiment_spec.action.mode == "joint_pos"
    obs, _ = env.reset(seed=0)
    target = obs["state"]["joint_pos"] + np.array([0.2, -0.15, 0.1, 0.2, -0.1, 0.15, 0.3], np.float32)
    action = np.append(target, 1.0).astype(np.float32)
    for _ in range(15):
        obs, *_ = env.step(action)
    np.testing.assert_allclose(obs["state"]["joint_pos"], target, atol=0.02)
    env.close()


@pytest.mark.parametrize("robot,n_joints", [("ur5e", 6), ("iiwa", 7), ("xarm7", 7)])
def test_other_arms_build_and_move(robot, n_joints):
    env = TabletopEnv(task="reach", robot=robot, cameras=())
    obs, _ = env.reset(seed=0)
    assert obs["state"]["joint_pos"].shape == (n_joints,)
    np.testing.assert_allclose(obs["state"]["ee_pos"], [0.45, 0.0, 0.25], atol=0.03)
    start = obs["state"]["ee_pos"].copy()
    for _ in range(4):
        obs, *_ = env.step(np.array([0, 0.03, 0, 0, 0, 0, 1], np.float32))
    for _ in range(4):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1], np.float32))
    assert abs(obs["state"]["ee_pos"][1] - start[1] - 0.12) < 0.01
    env.close()


def test_reset_is_deterministic_per_seed_and_rollouts_repeat():
    a, b = TabletopEnv(task="push", cameras=()), TabletopEnv(task="push", cameras=())
    oa, ia = a.reset(seed=11)
    ob, ib = b.reset(seed=11)
    assert ia["instruction"] == ib["instruction"]
    rng = np.random.default_rng(0)
    for _ in range(10):
        act = rng.uniform(a.action_space.low, a.action_space.high).astype(np.float32)
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
    for k in oa["state"]:
        np.testing.assert_array_equal(oa["state"][k], ob["state"][k])
    _, other = a.reset(seed=12)
    assert a.layout.poses != b.layout.poses or other["instruction"] != ib["instruction"]


def test_a_crowded_seed_still_gives_a_scene():
    """Rendering thousands of scenes (CollectConfig.scenes_only) reaches seeds whose task condition takes many
    layout draws; reset must still give one, the same every time."""
    env = TabletopEnv(task="push", cameras=())
    _, info = env.reset(seed=102878)  # needs between 400 and 600 draws
    poses = dict(env.layout.poses)
    _, again = env.reset(seed=102878)
    assert env.layout.poses == poses and again["instruction"] == info["instruction"]


def test_goals_per_layout_shows_one_scene_with_several_goals():
    """goals_per_layout=4: seeds 8..11 share scene 2 and differ in their goals; seed 12 starts a new scene."""
    env = TabletopEnv(task="reach", cameras=(), goals_per_layout=4)
    scenes, targets = [], []
    for seed in range(8, 13):
        env.reset(seed=seed)
        scenes.append(env.layout.poses)
        targets.append((env.goal.params["object"], env.instruction))
    assert all(p == scenes[0] for p in scenes[1:4]) and scenes[4] != scenes[0]
    assert len({obj for obj, _ in targets[:4]}) > 1  # the instruction now says which object, not the picture
    env.reset(seed=9)
    assert (env.goal.params["object"], env.instruction) == targets[1]  # still one episode per seed
    drawer = TabletopEnv(task="close-drawer", cameras=(), goals_per_layout=4)  # one drawer: nothing to choose
    openings = []
    for seed in (8, 9):
        drawer.reset(seed=seed)
        openings.append(drawer.world.drawer_opening())
    assert openings[0] != openings[1]  # every seed its own scene, as without the option
    with pytest.raises(ValueError, match="goals_per_layout"):
        TabletopEnv(task="reach", goals_per_layout=0)


def test_instruction_override_and_long_horizon_subtasks():
    env = TabletopEnv(task="drawer-store", cameras=())
    _, info = env.reset(seed=2, options={"instruction": "tidy up the block"})
    assert info["instruction"] == "tidy up the block"
    assert info["subtask"] == "open the drawer"  # the first stage of the chain
    emb = GymEmbodiment(TabletopEnv(task="pick", cameras=()))
    obs = emb.reset(instruction="grab it", seed=0)
    assert obs.instruction == "grab it" and obs.state["ee_pos"].shape == (3,)
    obs.check(emb.spec)
    env.close()


def test_bad_input_is_refused_with_a_clear_error():
    env = TabletopEnv(task="pick", cameras=())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 1], np.float32))
    with pytest.raises(ValueError, match="unknown tabletop task"):
        TabletopEnv(task="juggle")
    with pytest.raises(ValueError, match="unknown cameras"):
        TabletopEnv(task="pick", cameras=("top",))
    with pytest.raises(ValueError, match="unknown robot"):
        TabletopEnv(task="pick", robot="r2d2")


def _make_small_env():
    return TabletopEnv(task="place", cameras=("front", "wrist"), image_size=(48, 64))


def test_async_vector_env_with_two_envs():
    # "spawn": a forked child would inherit this process's EGL contexts and can hang.
    envs = gym.vector.AsyncVectorEnv([_make_small_env, _make_small_env], context="spawn")
    try:
        obs, info = envs.reset(seed=[0, 1])
        assert obs["images"]["wrist"].shape == (2, 48, 64, 3)
        assert obs["depth"]["front"].shape == (2, 48, 64)
        assert obs["state"]["joint_pos"].shape == (2, 7)
        for _ in range(3):
            obs, reward, _term, _trunc, info = envs.step(envs.action_space.sample())
        assert reward.shape == (2,) and len(info["instruction"]) == 2
        assert info["cameras"]["front"]["intrinsics"].shape == (2, 3, 3)
    finally:
        envs.close()


def test_goal_uv_says_where_the_goals_object_is_in_each_camera_image():
    """Privileged GOAL_UV: the goal points projected into every camera, normalised to [-1, 1]. The
    pixel there shows the named object: its colour, at the depth the camera measures."""
    from embodied.types import GOAL_UV

    env = TabletopEnv(task="pick", image_size=(96, 96))
    assert env.embodiment_spec.privileged == ("goal_points", GOAL_UV)
    assert env.embodiment_spec.state[GOAL_UV] == 4 * 2  # (subject u, v, destination u, v) per camera
    assert GOAL_UV not in TabletopEnv(task="pick", cameras=()).embodiment_spec.state  # nothing to project into
    checked = []
    for seed in (0, 1, 3):
        obs, info = env.reset(seed=seed)
        name = env.goal.params["object"]
        colour = env.model.geom_rgba[env.scene.object(name).geom_ids[0], :3] * 255
        uv = obs["state"][GOAL_UV].reshape(2, 2, 2)  # camera, point, (u, v)
        np.testing.assert_allclose(uv[:, 0], uv[:, 1])  # pick: the destination is the subject
        for k, cam in enumerate(env.config.cameras):
            u, v = uv[k, 0]
            if abs(u) >= 1 or abs(v) >= 1:
                assert cam == "wrist", (cam, u, v)  # the front camera sees the whole table; the wrist, part
                continue
            checked.append(cam)
            col, row = int((u + 1) / 2 * 96), int((v + 1) / 2 * 96)
            seen = obs["images"][cam][row, col].astype(float)
            lit = seen / max(seen.max(), 1) * colour.max()  # shading scales the colour, not its hue
            assert np.abs(lit - colour).max() < 70, (cam, seen, colour)
            T = info["cameras"][cam]["extrinsics"]
            depth_of_centre = (env.world.pos(name) - T[:3, 3]) @ T[:3, 2]
            assert abs(obs["depth"][cam][row, col] - depth_of_centre) < 0.04  # the surface facing the camera
    assert checked.count("wrist") >= 1 and checked.count("front") == 3
    # A point behind a camera lands outside the image on both axes.
    from embodied.geometry import BEHIND_CAMERA, image_coordinates

    behind = T[:3, 3] - T[:3, 2]
    assert image_coordinates(behind, np.eye(3), T, 96, 96).tolist() == [[BEHIND_CAMERA, BEHIND_CAMERA]]


def _run_expert(env: TabletopEnv) -> tuple[dict, bool]:
    """Play the env's scripted expert to the end of the episode: (the last observation, whether it succeeded)."""
    expert, done, success = env.make_expert(), False, False
    expert.reset()
    while not done:
        obs, _, done, truncated, info = env.step(expert.act())
        success, done = info["success"], done or truncated
    return obs, success


def test_goal_points_say_where_the_goals_object_is_and_where_it_must_go():
    """Privileged state (never a policy input unless named): (subject xyz, destination xyz) in metres,
    following the object as the expert carries it."""
    env = TabletopEnv(task="pick", cameras=())
    assert env.embodiment_spec.privileged == ("goal_points",) and env.embodiment_spec.state["goal_points"] == 6
    obs, _ = env.reset(seed=3)
    start = env.world.pos(env.goal.params["object"])
    np.testing.assert_allclose(obs["state"]["goal_points"], np.concatenate([start, start]), atol=1e-6)
    obs, _ = _run_expert(env)
    points = obs["state"]["goal_points"]
    assert points[2] > start[2] + 0.03  # lifted, and the points went with it
    np.testing.assert_allclose(points[:3], env.world.pos(env.goal.params["object"]), atol=1e-6)

    place = TabletopEnv(task="place", cameras=())
    obs, _ = place.reset(seed=3)
    np.testing.assert_allclose(obs["state"]["goal_points"][3:], place.world.pos(place.goal.params["container"]),
                               atol=1e-6)
    drawer = TabletopEnv(task="close-drawer", cameras=())
    obs, _ = drawer.reset(seed=3)
    front = obs["state"]["goal_points"][:3]
    assert abs(front[0] - drawer.world.drawer_front_x()) < 1e-6  # the handle side, which moves with the drawer
    store = TabletopEnv(task="put-in-drawer", cameras=())
    obs, _ = store.reset(seed=3)
    np.testing.assert_allclose(obs["state"]["goal_points"][3:], store.world.drawer_center(), atol=1e-6)


def test_goal_points_noise_shifts_each_named_thing_by_one_fixed_offset_per_episode():
    """goal_points_noise (a diagnostic): the subject and destination each move by their own offset, fixed for the
    episode and drawn from its seed; pick's destination is its subject, so both move alike. Nothing else changes."""
    exact = TabletopEnv(task="place", cameras=())
    noisy = TabletopEnv(task="place", cameras=(), goal_points_noise=0.05)
    a, _ = exact.reset(seed=4)
    b, _ = noisy.reset(seed=4)
    shift = b["state"]["goal_points"] - a["state"]["goal_points"]
    assert 0.005 < np.linalg.norm(shift[:3]) < 0.4 and not np.allclose(shift[:3], shift[3:])
    np.testing.assert_array_equal(a["state"]["ee_pos"], b["state"]["ee_pos"])  # the same scene
    step = np.zeros(7, np.float32)
    b2, *_ = noisy.step(step)
    a2, *_ = exact.step(step)
    np.testing.assert_allclose(b2["state"]["goal_points"] - a2["state"]["goal_points"], shift, atol=1e-6)  # fixed
    again, _ = noisy.reset(seed=4)
    np.testing.assert_array_equal(again["state"]["goal_points"], b["state"]["goal_points"])  # from the seed
    pick = TabletopEnv(task="pick", cameras=(), goal_points_noise=0.05)
    points = pick.reset(seed=4)[0]["state"]["goal_points"]
    np.testing.assert_array_equal(points[:3], points[3:])
    with pytest.raises(ValueError, match="goal_points_noise"):
        TabletopEnv(task="pick", goal_points_noise=-0.01)


def test_a_pushs_destination_is_the_spot_on_the_table_the_push_must_reach_and_it_stays_put():
    """Push names only a direction; its destination point says where that leaves the object (PUSH_DISTANCE
    along it from where the object started), so that how far is left to push is in the state."""
    env = TabletopEnv(task="push", cameras=())
    obs, _ = env.reset(seed=5)
    name, direction = env.goal.params["object"], np.array(PUSH_DIRECTIONS[env.goal.params["direction"]])
    start = env.world.pos(name)
    target = obs["state"]["goal_points"][3:]
    np.testing.assert_allclose(target[:2], start[:2] + PUSH_DISTANCE * direction, atol=1e-5)
    obs, success = _run_expert(env)
    assert success
    np.testing.assert_allclose(obs["state"]["goal_points"][3:], target)  # fixed, while the object moved
    assert np.linalg.norm(env.world.pos(name)[:2] - target[:2]) < 0.03  # and the push left it there


def test_a_move_next_tos_destination_is_the_free_spot_beside_the_reference_where_the_expert_sets_it_down():
    """The reference object is not where the object must go: the expert sets it down NEXT_TO_OFFSET away, on
    the side clear of the other objects, which the state does not show; the destination point names that spot."""
    env = TabletopEnv(task="move-next-to", cameras=())
    obs, _ = env.reset(seed=4)
    name, ref = env.goal.params["object"], env.goal.params["reference"]
    spot = obs["state"]["goal_points"][3:]
    assert abs(np.linalg.norm(spot[:2] - env.world.pos(ref)[:2]) - NEXT_TO_OFFSET) < 0.01
    others = [o for o in env.world.scene.objects if o.name not in (name, ref)]
    assert all(np.linalg.norm(env.world.pos(o.name)[:2] - spot[:2]) > 0.05 for o in others)
    obs, success = _run_expert(env)
    assert success
    np.testing.assert_allclose(obs["state"]["goal_points"][3:], spot)  # fixed, while the object moved
    assert np.linalg.norm(env.world.pos(name)[:2] - spot[:2]) < 0.02  # and the expert left it there
