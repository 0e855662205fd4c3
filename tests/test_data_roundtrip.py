"""Write a small dataset with the real writer, read it back with the real reader."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embodied.data import DatasetError, DatasetSpecError, DatasetWriter, open_dataset
from embodied.data.synthetic import (
    record_synthetic_episode,
    synthetic_action,
    synthetic_observation,
    synthetic_spec,
    write_synthetic_dataset,
)
from embodied.types import Correction, SpecMismatchError

LENGTH = 12


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds") / "pick", num_episodes=3, length=LENGTH)


def test_round_trip_is_bit_exact_for_state_actions_and_labels(dataset_root):
    ds = open_dataset(dataset_root)
    assert (ds.num_episodes, ds.num_frames) == (3, 3 * LENGTH)
    assert ds.tasks == ["pick up the red cube", "open the drawer"]
    assert ds.spec == synthetic_spec()
    assert ds.successes == [True, False, True]
    for i in range(3):
        ep = ds.episode(i)
        assert ep.task == ds.tasks[i % 2] and len(ep) == LENGTH
        for t in range(LENGTH):
            obs = synthetic_observation(ds.spec, t, i)
            for key, value in obs.state.items():
                np.testing.assert_array_equal(ep.state[key][t], value)
            np.testing.assert_array_equal(ep.actions[t], synthetic_action(ds.spec, t, i))
        assert ep.language_motion[:2] == ["move arm forward", "move arm left"]
        assert ep.subtask[5] == f"step 1 of {ep.task}"
        assert ep.corrections[0] == [] and ep.corrections[2] == []
        assert ep.corrections[1] == [Correction("a bit more to the left", time=0.1, payload={"dy": 0.01})]
        np.testing.assert_allclose(ep.timestamps, np.arange(LENGTH) / 10.0, atol=1e-6)
    replay = ds.episode(0).observation(3)  # a recorded frame, ready to feed a policy
    replay.check(ds.spec)
    assert replay.instruction == "pick up the red cube" and replay.timestamp == pytest.approx(0.3)


def test_video_round_trip_is_within_codec_tolerance(dataset_root):
    ds = open_dataset(dataset_root)
    ep = ds.episode(2)
    for cam in ds.camera_names:
        assert ep.images[cam].shape == (LENGTH, 32, 32, 3) and ep.images[cam].dtype == np.uint8
        original = np.stack([synthetic_observation(ds.spec, t, 2).images[cam] for t in range(LENGTH)])
        error = np.abs(ep.images[cam].astype(np.int16) - original).mean()
        assert error < 3.0, f"{cam}: mean abs error {error:.2f} on 0..255"


def test_layout_follows_lerobot_v3(dataset_root):
    info = json.loads((dataset_root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["splits"] == {"train": "0:3"}
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 36, 2)
    video = info["features"]["observation.images.front"]
    assert video["dtype"] == "video" and video["shape"] == [32, 32, 3]
    assert video["info"]["video.codec"] == "h264" and video["info"]["video.pix_fmt"] == "yuv420p"
    assert info["features"]["observation.state"]["names"][:2] == ["joint_pos.0", "joint_pos.1"]
    assert info["features"]["observation.state"]["names"][-1] == "gripper.0"

    data = pq.read_table(dataset_root / "data/chunk-000/file-001.parquet")
    non_video = {k for k, f in info["features"].items() if f["dtype"] != "video"}
    assert set(data.column_names) == non_video
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 15)
    assert data.column("index").to_pylist() == list(range(LENGTH, 2 * LENGTH))

    episodes = pq.read_table(dataset_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [(0, 12), (12, 24), (24, 36)]
    assert episodes[1]["videos/observation.images.wrist/file_index"] == 1
    assert episodes[1]["videos/observation.images.wrist/to_timestamp"] == pytest.approx(1.2)
    assert [e["success"] for e in episodes] == [True, False, True]
    assert [e["tasks"] for e in episodes] == [["pick up the red cube"], ["open the drawer"], ["pick up the red cube"]]


def test_tasks_parquet_reads_with_task_as_pandas_index(dataset_root):
    pd = pytest.importorskip("pandas")
    tasks = pd.read_parquet(dataset_root / "meta/tasks.parquet")
    assert tasks.index.name == "task"
    assert tasks.loc["open the drawer", "task_index"] == 1
    assert tasks.iloc[0].name == "pick up the red cube"


def test_stats_match_numpy_over_all_frames(dataset_root):
    ds = open_dataset(dataset_root)
    actions = np.concatenate([ds.episode(i).actions for i in range(3)])
    s = ds.stats["action"]
    np.testing.assert_array_equal(s["min"], actions.min(0))
    np.testing.assert_array_equal(s["max"], actions.max(0))
    np.testing.assert_allclose(s["mean"], actions.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(s["std"], actions.astype(np.float64).std(0), rtol=1e-9)
    assert s["count"].tolist() == [36] and (s["q01"] <= s["q99"]).all()
    image = ds.stats["observation.images.front"]
    assert image["mean"].shape == (3, 1, 1) and 0 <= image["min"].min() <= image["max"].max() <= 1
    on_disk = json.loads((dataset_root / "meta/stats.json").read_text())
    assert set(on_disk) == set(ds.stats)
    np.testing.assert_allclose(on_disk["observation.state"]["std"], ds.stats["observation.state"]["std"])
    assert set(on_disk["observation.state"]) == {"min", "max", "mean", "std", "count", "q01", "q99"}


def test_append_continues_indices_and_tasks(tmp_path):
    root = write_synthetic_dataset(tmp_path / "ds", num_episodes=2, length=5)
    with DatasetWriter(root, synthetic_spec()) as w:
        assert w.num_episodes == 2
        assert record_synthetic_episode(w, 2, 7, "stack the blocks") == 2
    ds = open_dataset(root)
    assert ds.num_episodes == 3 and ds.num_frames == 17 and ds.episode_lengths == [5, 5, 7]
    assert ds.tasks == ["pick up the red cube", "open the drawer", "stack the blocks"]
    data = pq.read_table(root / "data/chunk-000/file-002.parquet")
    assert data.column("index").to_pylist() == list(range(10, 17))
    assert set(data.column("task_index").to_pylist()) == {2}
    assert ds.stats["action"]["count"].tolist() == [17]
    np.testing.assert_array_equal(ds.episode(2).actions[6], synthetic_action(ds.spec, 6, 2))


def test_append_with_a_different_spec_is_refused(tmp_path):
    root = write_synthetic_dataset(tmp_path / "ds", num_episodes=1, length=3)
    other = synthetic_spec(size=64)
    with pytest.raises(DatasetSpecError, match="cameras") as e:
        DatasetWriter(root, other)
    assert isinstance(e.value, SpecMismatchError)
    renamed = dataclasses.replace(synthetic_spec(), name="another-arm")
    with pytest.raises(DatasetSpecError, match="name: dataset has 'synthetic-arm'"):
        DatasetWriter(root, renamed)
    assert open_dataset(root).num_episodes == 1  # untouched


def test_second_writer_on_the_same_dataset_is_refused(tmp_path):
    with DatasetWriter(tmp_path / "ds", synthetic_spec()), pytest.raises(DatasetError, match="another DatasetWriter"):
        DatasetWriter(tmp_path / "ds", synthetic_spec())
    DatasetWriter(tmp_path / "ds", synthetic_spec()).close()  # free again once closed
    assert not (tmp_path / "ds" / ".writer.lock").exists(), "a closed dataset holds only dataset files"


def test_discarded_episode_leaves_no_trace(tmp_path):
    spec = synthetic_spec()
    with DatasetWriter(tmp_path / "ds", spec) as w:
        w.start_episode("pick up the red cube")
        w.add_frame(synthetic_observation(spec, 0), synthetic_action(spec, 0))
        w.discard_episode()
        assert record_synthetic_episode(w, 0, 4, "open the drawer") == 0
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_episodes == 1 and ds.tasks == ["open the drawer"]
    assert not [p for p in (tmp_path / "ds").rglob("*.tmp")]


def test_bad_frames_are_refused_with_clear_errors(tmp_path):
    spec = synthetic_spec()
    obs, action = synthetic_observation(spec, 0), synthetic_action(spec, 0)
    with DatasetWriter(tmp_path / "ds", spec) as w:
        with pytest.raises(RuntimeError, match="start_episode"):
            w.add_frame(obs, action)
        w.start_episode("pick up the red cube")
        with pytest.raises(SpecMismatchError, match=r"expected \(32, 32, 3\)"):
            w.add_frame(dataclasses.replace(obs, images={**obs.images, "front": obs.images["front"][:16]}), action)
        with pytest.raises(SpecMismatchError, match="action has shape"):
            w.add_frame(obs, np.zeros((4, 7), np.float32))
        with pytest.raises(ValueError, match="NaN"):
            w.add_frame(obs, np.full(7, np.nan, np.float32))
        with pytest.raises(ValueError, match="JSON"):
            w.add_frame(obs, action, corrections=[Correction("left", 0.0, payload={"v": np.zeros(2)})])
        with pytest.raises(ValueError, match="no frames"):
            w.end_episode(success=True)
    with pytest.raises(ValueError, match="control rate"):
        DatasetWriter(tmp_path / "other", spec, fps=30)


def test_writer_refuses_a_non_empty_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("my files")
    with pytest.raises(DatasetError, match="not a dataset"):
        DatasetWriter(tmp_path, synthetic_spec())
    assert (tmp_path / "notes.txt").read_text() == "my files"


def test_policies_read_all_state_but_the_privileged_and_a_robot_without_it_gets_zeros(tmp_path):
    """state_indices(spec, ()) is what a policy reads by default: everything but the privileged keys. The
    writer refuses a frame without them (it would record zeros as the truth); a batch for a real robot fills them."""
    from embodied.data.format import flatten_state, state_indices

    base = synthetic_spec()
    sim = dataclasses.replace(base, state=dict(base.state) | {"goal_points": 6}, privileged=("goal_points",))
    assert state_indices(sim, ()) == list(range(15)) and state_indices(sim, ("goal_points",)) == list(range(15, 21))
    real = synthetic_observation(base, t=0)
    flat = flatten_state(real.state, sim)
    assert flat.shape == (21,) and not flat[15:].any()
    np.testing.assert_array_equal(flat[:15], flatten_state(real.state, base))
    with DatasetWriter(tmp_path / "d", sim) as w:
        w.start_episode("touch the red cube")
        with pytest.raises(SpecMismatchError, match="lacks privileged state \\['goal_points'\\]"):
            w.add_frame(real, synthetic_action(sim, 0))
        w.add_frame(synthetic_observation(sim, 0), synthetic_action(sim, 0))
        w.end_episode(success=True)
