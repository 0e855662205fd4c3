"""The shared interface: specs round-trip, mismatches are explained, bad input refused."""

import numpy as np
import pytest

from embodied import Action, ActionSpec, CameraSpec, Correction, EmbodimentSpec, Observation, SpecMismatchError
from embodied.geometry import axis_angle_to_quat, quat_mul, quat_to_axis_angle

ACT = ActionSpec.ee_delta(0.03, 0.2, 10)
STATE = {"joint_pos": 7, "ee_pos": 3, "ee_quat": 4, "gripper": 1}


def spec(name="panda", size=64, rate=10.0, state=STATE):
    return EmbodimentSpec(name, (CameraSpec("front", size, size), CameraSpec("wrist", size, size)), state,
                          ActionSpec.ee_delta(0.03, 0.2, rate))


def test_spec_json_round_trip():
    s = spec()
    assert EmbodimentSpec.from_dict(s.to_dict()) == s
    assert s.action.dim == 7 and s.control_hz == 10.0 and s.camera_names == ("front", "wrist")


def test_compatible_spec_passes_and_extra_sensors_are_fine():
    bigger = EmbodimentSpec("panda-b", spec().cameras + (CameraSpec("side", 64, 64),), STATE | {"joint_vel": 7}, ACT)
    assert spec().check_compatible(bigger) is None  # no SpecMismatchError: the policy ignores extra sensors


def test_incompatible_spec_names_every_difference():
    with pytest.raises(SpecMismatchError) as e:
        spec().check_compatible(spec("ur5e", size=128, rate=20.0))
    msg = str(e.value)
    assert "camera 'front' is 128x128" in msg and "20.0 Hz" in msg and "ur5e" in msg


def test_required_state_keys_and_action_shapes():
    with pytest.raises(ValueError, match="gripper"):
        EmbodimentSpec("x", (), {"joint_pos": 7, "ee_pos": 3, "ee_quat": 4}, ACT)
    with pytest.raises(SpecMismatchError, match=r"\(7,\) or \(T, 7\)"):
        Action(np.zeros(6), ACT)
    chunk = Action(np.zeros((5, 7)), ACT)
    assert chunk.is_chunk and len(chunk.steps()) == 5 and not chunk.steps()[0].is_chunk
    with pytest.raises(ValueError, match="control mode"):
        ActionSpec(mode="torque", low=[0], high=[1], rate_hz=1)


def test_observation_check_against_spec():
    s = spec(size=8)
    img = np.zeros((8, 8, 3), np.uint8)
    state = {k: np.zeros(d, np.float32) for k, d in STATE.items()}
    Observation(images={"front": img, "wrist": img}, state=state).check(s)
    with pytest.raises(SpecMismatchError, match="wrist"):
        Observation(images={"front": img}, state=state).check(s)


def test_correction_is_typed():
    c = Correction("a bit more to the left", time=1.5, source="simulated", level="motion", payload={"dy": 0.02})
    assert Correction.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="non-empty"):
        Correction("  ", time=0)
    with pytest.raises(ValueError, match="source"):
        Correction("left", time=0, source="robot")


def test_axis_angle_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = rng.normal(size=3)
        v *= rng.uniform(0, np.pi - 1e-3) / np.linalg.norm(v)
        np.testing.assert_allclose(quat_to_axis_angle(axis_angle_to_quat(v)), v, atol=1e-5)
    qz = axis_angle_to_quat([0, 0, np.pi / 2])
    np.testing.assert_allclose(quat_to_axis_angle(quat_mul(qz, qz)), [0, 0, np.pi], atol=1e-5)


def test_privileged_state_is_recorded_but_a_real_robot_without_it_still_matches():
    """A sim spec may carry state only a simulator knows (where the goal's object is); a checkpoint trained on
    it still drives a robot that lacks it, and an observation without it still passes the checks."""
    sim = spec(state=STATE | {"goal_points": 6})
    sim = EmbodimentSpec(sim.name, sim.cameras, sim.state, sim.action, privileged=("goal_points",))
    assert EmbodimentSpec.from_dict(sim.to_dict()) == sim
    old = sim.to_dict()
    del old["privileged"]  # a spec saved before privileged state existed
    assert EmbodimentSpec.from_dict(old).privileged == ()
    sim.check_compatible(spec())  # the real arm: no goal_points, no error
    with pytest.raises(SpecMismatchError, match="'goal_points' is missing"):
        EmbodimentSpec.from_dict(old).check_compatible(spec())  # not privileged: a policy input that is missing
    img = np.zeros((64, 64, 3), np.uint8)
    Observation(images={"front": img, "wrist": img},
                state={k: np.zeros(d, np.float32) for k, d in STATE.items()}).check(sim)
    with pytest.raises(ValueError, match="privileged keys \\['gripper'\\]"):
        EmbodimentSpec("x", (), STATE, ACT, privileged=("gripper",))
