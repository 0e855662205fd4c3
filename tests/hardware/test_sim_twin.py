"""The sim twin behaves like the simulated env: same spec, same motion for the same actions, real-time physics."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from embodied import registry
from embodied.sim import GymEmbodiment
from embodied.types import Action
from hardware.config import RobotConfigError, load_robot_config, robot_config_from_dict
from hardware.robots import make_robot


def twin(realtime: bool, size: int = 32, task: str = "reach"):
    cfg = load_robot_config("sim-twin")
    cfg = dataclasses.replace(cfg, connection={**cfg.connection, "realtime": realtime, "task": task},
                              cameras=tuple(dataclasses.replace(c, width=size, height=size) for c in cfg.cameras))
    return make_robot(cfg)


def test_the_twin_publishes_the_tabletop_spec_so_sim_checkpoints_load_unchanged():
    robot = twin(realtime=False)
    env = GymEmbodiment(registry.make("tabletop/reach-v0", image_size=(32, 32)))
    # A robot, even a simulated one, has no privileged state (goal_points); everything else is the same.
    unprivileged = {k: v for k, v in env.spec.state.items() if k not in env.spec.privileged}
    assert robot.spec == dataclasses.replace(env.spec, state=unprivileged, privileged=())
    env.spec.check_compatible(robot.spec)  # a checkpoint trained in the env loads on the twin
    env.close()


def test_same_seed_and_actions_give_the_same_motion_as_the_env():
    """Stepped in lockstep (no wall clock), the twin follows the env's trajectory to within a millimetre."""
    robot = twin(realtime=False)
    env = GymEmbodiment(registry.make("tabletop/reach-v0", image_size=(32, 32)))
    rng = np.random.default_rng(0)
    obs_env = env.reset(seed=7)
    obs_twin = robot.reset(seed=7)
    assert obs_twin.instruction == obs_env.instruction
    np.testing.assert_allclose(obs_twin.state["ee_pos"], obs_env.state["ee_pos"], atol=1e-6)
    for _ in range(15):
        a = Action(rng.uniform(-1, 1, 7).astype(np.float32) * env.spec.action.high_array, env.spec.action)
        a.value[-1] = 1.0
        obs_env = env.step(a).obs
        robot.step(a)
        robot.arm.advance(0.1)  # one control period of physics, as env.step does
        obs_twin = robot.observe()
    np.testing.assert_allclose(obs_twin.state["ee_pos"], obs_env.state["ee_pos"], atol=1e-3)
    np.testing.assert_allclose(obs_twin.state["joint_pos"], obs_env.state["joint_pos"], atol=1e-2)
    robot.close()
    env.close()


def test_realtime_physics_keeps_wall_clock_pace_and_steps_take_one_period():
    robot = twin(realtime=True)
    robot.reset(seed=0)
    sim0, t0 = robot.arm.sim_time, time.monotonic()
    for _ in range(5):
        robot.step(Action(np.array([0.0] * 6 + [1.0], np.float32), robot.spec.action))
    wall = time.monotonic() - t0
    assert wall == pytest.approx(0.5, abs=0.15)  # five ticks at 10 Hz
    assert (robot.arm.sim_time - sim0) / wall == pytest.approx(1.0, abs=0.25)
    robot.close()


def test_hold_stops_a_moving_arm_within_a_tenth_of_a_second():
    robot = twin(realtime=True)
    robot.reset(seed=0)
    for _ in range(4):
        robot.step(Action(np.array([0.03, 0, 0, 0, 0, 0, 1], np.float32), robot.spec.action))
    robot.hold()
    time.sleep(0.1)
    p0 = robot.arm.read().ee_pos.copy()
    time.sleep(0.05)
    assert np.linalg.norm(robot.arm.read().ee_pos - p0) / 0.05 < 0.01  # < 1 cm/s: at rest
    robot.close()


def test_a_bad_limits_file_names_the_field():
    with pytest.raises(RobotConfigError, match="workspace_low"):
        robot_config_from_dict({"name": "x", "driver": "sim_twin", "n_joints": 7, "workspace_low": [1, 1, 1],
                                "workspace_high": [0, 0, 0]})
    with pytest.raises(RobotConfigError, match="unknown fields"):
        robot_config_from_dict({"name": "x", "driver": "sim_twin", "n_joints": 7, "watchdog": 1})
    with pytest.raises(RobotConfigError, match="shipped ones"):
        load_robot_config("no-such-robot")


def test_camera_calibration_comes_from_the_limits_file():
    from hardware.cameras.opencv import make_camera

    raw = {"name": "x", "driver": "sim_twin", "n_joints": 7,
           "cameras": [{"name": "side", "kind": "opencv", "source": "0", "width": 64, "height": 48,
                        "intrinsics": [50, 51, 32, 24], "extrinsics": [1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0.2,
                                                                       0, 0, 0, 1]}]}
    cam_cfg = robot_config_from_dict(raw).cameras[0]
    cam = make_camera(cam_cfg)  # nothing is opened until connect()
    assert cam.intrinsics[0, 0] == 50 and cam.intrinsics[1, 2] == 24
    assert cam.extrinsics[0, 3] == 0.5 and cam.extrinsics[2, 3] == pytest.approx(0.2)
    raw["cameras"][0]["extrinsics"] = [1, 0, 0]
    with pytest.raises(RobotConfigError, match="16 numbers"):
        robot_config_from_dict(raw)
