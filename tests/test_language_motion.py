"""RT-H language motions from end-effector deltas, on a hand-checked trajectory."""

import numpy as np
import pytest

from embodied import ActionSpec
from embodied.language_motion import (
    STOP,
    MotionLabeller,
    MotionThresholds,
    describe_motion,
    label_trajectory,
    thresholds_from_std,
)

SPEC = ActionSpec.ee_delta(max_translation=0.03, max_rotation=0.2, rate_hz=10)
TH = MotionThresholds.from_spec(SPEC)  # 9 mm and 0.06 rad per tick


def a(dx=0.0, dy=0.0, dz=0.0, rx=0.0, ry=0.0, rz=0.0, g=1.0):
    return np.array([dx, dy, dz, rx, ry, rz, g])


def test_single_directions():
    assert describe_motion(a(dx=0.02), 1.0, TH) == "move arm forward"
    assert describe_motion(a(dx=-0.02), 1.0, TH) == "move arm backward"
    assert describe_motion(a(dy=0.02), 1.0, TH) == "move arm left"
    assert describe_motion(a(dy=-0.02), 1.0, TH) == "move arm right"
    assert describe_motion(a(dz=-0.02), 1.0, TH) == "move arm down"
    assert describe_motion(a(rz=0.1), 1.0, TH) == "rotate arm left"
    assert describe_motion(a(g=0.0), 1.0, TH) == "close gripper"
    assert describe_motion(a(g=1.0), 0.0, TH) == "open gripper"


def test_small_motions_are_not_named():
    assert describe_motion(a(dx=0.008, rz=0.05), 1.0, TH) == STOP
    assert describe_motion(a(g=0.8), 1.0, TH) == STOP  # a gripper change of 0.2 is not a close


def test_combined_motions_are_ordered_by_relative_magnitude():
    # The worked example of the module docstring.
    got = describe_motion(a(dx=0.02, dy=-0.012, rz=0.1, g=0.0), 1.0, TH)
    assert got == "move arm forward and right and close gripper and rotate arm left"
    assert describe_motion(a(dz=0.01, dx=-0.03), 1.0, TH) == "move arm backward and up"


def test_hand_checked_pick_trajectory():
    # Approach forward, descend, close, lift: what a pick looks like.
    acts = np.array([a(dx=0.03)] * 4 + [a(dz=-0.03)] * 3 + [a(g=0.0)] * 2 + [a(dz=0.03, g=0.0)] * 3)
    grip = np.array([1.0] * 9 + [0.0] * 3)  # the gripper is closed from step 9 on
    labels = label_trajectory(acts, grip, TH, window=1)
    assert labels == (
        ["move arm forward"] * 4 + ["move arm down"] * 3 + ["close gripper"] * 2 + ["move arm up"] * 3
    )
    # Smoothing over 3 ticks blends the turn from forward to down at its boundary.
    smooth = label_trajectory(acts, grip, TH, window=3)
    assert smooth[2] == "move arm forward and down"
    assert smooth[0] == "move arm forward" and smooth[-1] == "move arm up"


def test_online_labeller_matches_offline():
    rng = np.random.default_rng(0)
    acts = rng.uniform(SPEC.low_array, SPEC.high_array, size=(25, 7))
    grip = rng.uniform(0, 1, size=25)
    lab = MotionLabeller(TH, window=3)
    online = []
    for x, g in zip(acts, grip):
        online += lab.push(x, g)
    assert len(online) == 23  # the last two wait for their future actions
    online += lab.flush()
    assert online == label_trajectory(acts, grip, TH, window=3)


def test_thresholds_from_dataset_std():
    acts = np.zeros((100, 7))
    acts[:, 0] = np.linspace(-0.02, 0.02, 100)
    th = thresholds_from_std(acts, k=1.0)
    assert th.translation[0] == pytest.approx(acts[:, 0].std())
    assert describe_motion(a(dx=0.9 * acts[:, 0].std()), 1.0, th) == STOP


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="7-D"):
        describe_motion(np.zeros(6), 1.0, TH)
    with pytest.raises(ValueError, match="ee_delta"):
        MotionThresholds.from_spec(ActionSpec(mode="joint_pos", low=[0] * 8, high=[1] * 8, rate_hz=5))


def test_axes_an_embodiment_cannot_move_are_never_named():
    no_rotation = ActionSpec.ee_delta(max_translation=0.01, max_rotation=0.0, rate_hz=80)
    th = MotionThresholds.from_spec(no_rotation)
    assert describe_motion(a(dx=0.005, rz=0.3), 1.0, th) == "move arm forward"
