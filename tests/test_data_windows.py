"""Training windows: shapes, edge padding and masks."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.data import open_dataset
from embodied.data.synthetic import write_synthetic_dataset

LENGTH = 6


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return open_dataset(write_synthetic_dataset(tmp_path_factory.mktemp("w") / "ds", num_episodes=2, length=LENGTH))


def test_one_window_per_frame_with_the_documented_shapes(ds):
    windows = list(ds.windows(obs_horizon=3, action_horizon=4))
    assert len(windows) == ds.num_frames
    w = windows[LENGTH + 2]  # episode 1, frame 2
    assert (w["episode_index"], w["frame_index"], w["task"]) == (1, 2, "open the drawer")
    assert w["observation.state"].shape == (3, 15) and w["observation.state"].dtype == np.float32
    assert w["observation.images.front"].shape == (3, 32, 32, 3) and w["observation.images.wrist"].dtype == np.uint8
    assert w["action"].shape == (4, 7) and w["obs_mask"].shape == (3,) and w["action_mask"].shape == (4,)
    assert w["language_motion"] == "move arm forward" and w["subtask"] == "step 0 of open the drawer"
    ep = ds.episode(1)
    np.testing.assert_array_equal(w["action"], ep.actions[2:6])
    np.testing.assert_array_equal(w["observation.state"][:, :7], ep.state["joint_pos"][0:3])
    assert "future.state" not in w


def test_episode_edges_repeat_the_edge_frame_and_are_masked(ds):
    ep = ds.episode(0)
    first, last = [w for w in ds.windows(3, 4, episodes=[0]) if w["frame_index"] in (0, LENGTH - 2)]
    assert first["obs_mask"].tolist() == [False, False, True]
    np.testing.assert_array_equal(first["observation.images.front"], np.repeat(ep.images["front"][:1], 3, axis=0))
    assert last["action_mask"].tolist() == [True, True, False, False]
    np.testing.assert_array_equal(last["action"][2:], np.repeat(ep.actions[-1:], 2, axis=0))


def test_camera_choice_and_future_frames(ds):
    windows = list(ds.windows(cameras=["wrist"], future_offset=2, episodes=[1]))
    assert len(windows) == LENGTH
    assert "observation.images.front" not in windows[0] and "future.images.front" not in windows[0]
    ep = ds.episode(1)
    np.testing.assert_array_equal(windows[1]["future.images.wrist"], ep.images["wrist"][3])
    np.testing.assert_array_equal(windows[-1]["future.images.wrist"], ep.images["wrist"][-1])  # clamped
    assert windows[0]["observation.state"].shape == (1, 15) and windows[0]["action"].shape == (1, 7)


def test_bad_horizons_are_refused(ds):
    with pytest.raises(ValueError, match="horizons"):
        ds.windows(obs_horizon=0)
    with pytest.raises(KeyError, match="no camera 'top'"):
        ds.windows(cameras=["top"])
    with pytest.raises(IndexError, match="has 2 episodes"):
        ds.windows(episodes=[5])


def test_goal_frame_is_the_episode_last_frame(tmp_path):
    from embodied.data import open_dataset
    from embodied.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "ds", 2, 6)
    ds = open_dataset(tmp_path / "ds")
    ep = ds.episode(0)
    windows = list(ds.windows(1, 2, episodes=[0], goal_frame=True))
    cam = ds.spec.camera_names[0]
    for w in windows:
        np.testing.assert_array_equal(w[f"goal.images.{cam}"], ep.images[cam][-1])
    assert "goal.state" in windows[0] and "goal.images." + cam not in next(iter(ds.windows(1, 1, episodes=[0])))
