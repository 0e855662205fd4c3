"""The episodes table spreads over files of 100 rows, so recording stays cheap in a large dataset."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embodied.data import DatasetError, DatasetWriter, open_dataset
from embodied.data.synthetic import record_synthetic_episode, synthetic_action, synthetic_spec, write_synthetic_dataset

SPEC = synthetic_spec(cameras=())  # no video: these tests are about the metadata


def episodes_file(root, file_index: int):
    return root / f"meta/episodes/chunk-000/file-{file_index:03d}.parquet"


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds") / "scenes", num_episodes=250, length=1, spec=SPEC)


def test_each_commit_writes_a_file_of_at_most_100_rows_that_the_rows_name(big):
    files = sorted((big / "meta/episodes").glob("chunk-*/file-*.parquet"))
    assert [f.relative_to(big).as_posix() for f in files] == [
        f"meta/episodes/chunk-000/file-00{i}.parquet" for i in range(3)]
    for i, path in enumerate(files):
        rows = pq.read_table(path).to_pylist()
        assert [r["episode_index"] for r in rows] == list(range(100 * i, min(100 * (i + 1), 250)))
        assert {(r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) for r in rows} == {(0, i)}


def test_the_reader_joins_every_file(big):
    ds = open_dataset(big)
    assert ds.num_episodes == 250 and ds.episode_lengths == [1] * 250
    assert ds.episode(187).actions[0].tolist() == synthetic_action(SPEC, 0, 187).tolist()


def copy_first(big, tmp_path, episodes: int):
    """A copy of `big` cut to its first `episodes` episodes."""
    root = shutil.copytree(big, tmp_path / "ds")
    with DatasetWriter(root, SPEC):
        pass
    info = (root / "meta/info.json")
    text = info.read_text().replace('"total_episodes": 250', f'"total_episodes": {episodes}')
    info.write_text(text.replace('"total_frames": 250', f'"total_frames": {episodes}'))
    with DatasetWriter(root, SPEC):  # removes the episodes past the cut, as after a crash
        pass
    return root


def test_a_commit_killed_before_info_json_leaves_no_row_behind(big, tmp_path):
    root = copy_first(big, tmp_path, 100)
    # What a writer killed between writing episode 100's row (the first of a new file) and its commit leaves:
    stale = pq.read_table(episodes_file(root, 0)).slice(99, 1)
    pq.write_table(stale.set_column(0, "episode_index", pa.array([100], pa.int64())), episodes_file(root, 1))
    with DatasetWriter(root, SPEC) as w:
        assert not episodes_file(root, 1).exists(), "the uncommitted row's file was not removed"
        assert record_synthetic_episode(w, 100, 2, "pick up the red cube") == 100
    ds = open_dataset(root)
    assert ds.num_episodes == 101 and ds.episode_lengths[-1] == 2


def test_a_dataset_with_all_rows_in_one_file_still_reads_and_appends(big, tmp_path):
    """Datasets written before the split hold every row in file-000, and LeRobot may write them so too."""
    root = copy_first(big, tmp_path, 150)
    table = pa.concat_tables([pq.read_table(episodes_file(root, i)) for i in (0, 1)])
    table = table.set_column(table.schema.get_field_index("meta/episodes/file_index"), "meta/episodes/file_index",
                             pa.array([0] * 150, pa.int64()))
    pq.write_table(table, episodes_file(root, 0))
    episodes_file(root, 1).unlink()
    with DatasetWriter(root, SPEC) as w:
        record_synthetic_episode(w, 150, 1, "open the drawer")
    assert pq.read_table(episodes_file(root, 0)).num_rows == 150
    assert pq.read_table(episodes_file(root, 1)).column("episode_index").to_pylist() == [150]
    assert open_dataset(root).num_episodes == 151


def test_a_missing_episodes_file_is_named(big, tmp_path):
    root = shutil.copytree(big, tmp_path / "ds")
    episodes_file(root, 1).unlink()
    with pytest.raises(DatasetError, match=r"meta/episodes: info.json says 250 episodes but the episodes tables "
                                           r"hold 150 rows"):
        open_dataset(root)
