"""The safety filter: bad numbers never reach an embodiment, limits are reported."""

import numpy as np
import pytest

from embodied import Action, ActionSpec, Observation
from embodied.safety import SafetyConfig, SafetyFilter

SPEC = ActionSpec.ee_delta(max_translation=0.03, max_rotation=0.2, rate_hz=10)
BOX = SafetyConfig(workspace_low=(0.2, -0.4, 0.0), workspace_high=(0.8, 0.4, 0.5))


def obs_at(ee=(0.5, 0.0, 0.2), gripper=0.6, joints=None):
    state = {"ee_pos": np.array(ee, np.float32), "gripper": np.array([gripper], np.float32)}
    if joints is not None:
        state["joint_pos"] = np.array(joints, np.float32)
    return Observation(state=state)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_holds_the_arm(bad):
    f = SafetyFilter(SPEC, BOX)
    safe, why = f.filter(Action([0.01, bad, 0, 0, 0, 0, 0.0], SPEC), obs_at(gripper=0.6))
    assert np.all(np.isfinite(safe.value))
    np.testing.assert_array_equal(safe.value[:6], 0.0)
    assert safe.value[6] == pytest.approx(0.6)  # gripper stays where it is
    assert [i.kind for i in why] == ["non_finite"]


def test_translation_is_scaled_keeping_direction():
    f = SafetyFilter(SPEC, BOX)
    safe, why = f.filter(Action([0.09, 0.03, 0, 0, 0, 0, 1], SPEC), obs_at())
    np.testing.assert_allclose(safe.value[:3], [0.03, 0.01, 0.0], atol=1e-6)
    assert "translation_limit" in [i.kind for i in why]


def test_norm_caps_apply_on_top_of_axis_bounds():
    f = SafetyFilter(SPEC, SafetyConfig(max_translation=0.01, max_rotation=0.05))
    safe, why = f.filter(Action([0.02, 0.02, 0, 0.1, 0, 0, 1], SPEC), obs_at())
    assert np.linalg.norm(safe.value[:3]) == pytest.approx(0.01, rel=1e-5)
    assert np.linalg.norm(safe.value[3:6]) == pytest.approx(0.05, rel=1e-5)
    assert {"translation_limit", "rotation_limit"} <= {i.kind for i in why}


def test_workspace_box_is_never_left():
    f = SafetyFilter(SPEC, BOX)
    o = obs_at(ee=(0.79, 0.39, 0.01))
    safe, why = f.filter(Action([0.03, 0.03, -0.03, 0, 0, 0, 1], SPEC), o)
    target = o.state["ee_pos"] + safe.value[:3]
    assert np.all(target <= np.array(BOX.workspace_high) + 1e-6)
    assert np.all(target >= np.array(BOX.workspace_low) - 1e-6)
    assert "workspace" in [i.kind for i in why]


def test_gripper_is_clipped_and_in_range_actions_pass_untouched():
    f = SafetyFilter(SPEC, BOX)
    safe, why = f.filter(Action([0, 0, 0, 0, 0, 0, 3.0], SPEC), obs_at())
    assert safe.value[6] == 1.0 and [i.kind for i in why] == ["gripper_limit"]
    ok = Action([0.01, -0.01, 0.005, 0.05, 0, -0.05, 0.0], SPEC)
    safe, why = f.filter(ok, obs_at())
    np.testing.assert_array_equal(safe.value, ok.value)
    assert why == []


def test_joint_mode_limits_targets_and_steps():
    spec = ActionSpec(mode="joint_pos", low=[-1.0] * 7 + [0.0], high=[1.0] * 7 + [1.0], rate_hz=10)
    f = SafetyFilter(spec, SafetyConfig(max_joint_step=0.1))
    o = obs_at(joints=[0.0] * 7)
    safe, why = f.filter(Action([5.0, 0.05] + [0.0] * 5 + [1.0], spec), o)
    np.testing.assert_allclose(safe.value[:2], [0.1, 0.05])
    assert {"joint_limit", "joint_step_limit"} <= {i.kind for i in why}


def test_chunks_and_foreign_actions_are_refused_loudly():
    f = SafetyFilter(SPEC, BOX)
    with pytest.raises(ValueError, match="one tick"):
        f.filter(Action(np.zeros((4, 7)), SPEC), obs_at())
    other = ActionSpec(mode="joint_pos", low=[-1] * 8, high=[1] * 8, rate_hz=10)
    with pytest.raises(ValueError, match="guards"):
        f.filter(Action(np.zeros(8), other), obs_at())


def test_acceleration_limit_stops_a_full_speed_reversal_in_one_tick():
    f = SafetyFilter(SPEC, SafetyConfig(max_translation_change=0.01))
    ahead = Action([0.03, 0, 0, 0, 0, 0, 1], SPEC)
    back = Action([-0.03, 0, 0, 0, 0, 0, 1], SPEC)
    xs = []
    f.filter(Action([0.0] * 6 + [1.0], SPEC), obs_at())
    for a in [ahead] * 4 + [back] * 7:
        safe, why = f.filter(a, obs_at())
        xs.append(float(safe.value[0]))
    assert np.allclose(xs[:4], [0.01, 0.02, 0.03, 0.03])        # speeds up 1 cm per tick per tick
    assert np.allclose(xs[4:], [0.02, 0.01, 0.0, -0.01, -0.02, -0.03, -0.03], atol=1e-6)
    assert np.abs(np.diff(xs)).max() <= 0.01 + 1e-6
    f.reset()  # a new episode starts at rest
    safe, why = f.filter(back, obs_at())
    assert safe.value[0] == pytest.approx(-0.01) and why[0].kind == "acceleration_limit"


def test_slots_keep_their_own_motion_memory():
    f = SafetyFilter(SPEC, SafetyConfig(max_translation_change=0.01))
    for _ in range(3):
        f.filter(Action([0.03, 0, 0, 0, 0, 0, 1], SPEC), obs_at(), slot=0)
    fast, _ = f.filter(Action([0.03, 0, 0, 0, 0, 0, 1], SPEC), obs_at(), slot=0)
    slow, _ = f.filter(Action([0.03, 0, 0, 0, 0, 0, 1], SPEC), obs_at(), slot=1)
    assert fast.value[0] == pytest.approx(0.03) and slow.value[0] == pytest.approx(0.01)


def test_joint_targets_follow_a_jerk_limited_trajectory():
    spec = ActionSpec(mode="joint_pos", low=[-3.0] * 2 + [0.0], high=[3.0] * 2 + [1.0], rate_hz=10)
    cfg = SafetyConfig(max_joint_step=1.0, max_joint_velocity=(1.0, 1.0), max_joint_acceleration=(2.0, 2.0),
                       max_joint_jerk=(20.0, 20.0))
    f = SafetyFilter(spec, cfg)
    q, qd = np.zeros(2), np.zeros(2)
    for _ in range(15):  # the policy jumps the target 0.8 rad; the arm is simulated as tracking perfectly
        safe, why = f.filter(Action([0.8, -0.8, 1.0], spec), Observation(
            state={"joint_pos": q.astype(np.float32), "joint_vel": qd.astype(np.float32),
                   "gripper": np.ones(1, np.float32)}))
        nq = safe.value[:2].astype(np.float64)
        qd = (nq - q) * 10
        assert np.all(np.abs(qd) <= 1.0 + 1e-3)  # on average over each tick never faster than the limit
        q = nq
    assert why == [] or why[0].kind == "joint_dynamics_limit"
    np.testing.assert_allclose(q, [0.8, -0.8], atol=1e-3)  # it gets there
    f.reset()
    first, why = f.filter(Action([0.8, -0.8, 1.0], spec), Observation(
        state={"joint_pos": np.zeros(2, np.float32), "joint_vel": np.zeros(2, np.float32),
               "gripper": np.ones(1, np.float32)}))
    assert abs(first.value[0]) < 0.8 and why[0].kind == "joint_dynamics_limit"  # from rest: a gentle start
