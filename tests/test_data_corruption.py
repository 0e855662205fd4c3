"""Damaged files give a DatasetError that names the file and says what to do."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embodied.data import DatasetError, DatasetWriter, open_dataset, read_mp4
from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("pristine") / "ds", num_episodes=3, length=6)


@pytest.fixture
def root(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "ds")


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_data_parquet_names_the_file(root):
    bad = root / "data/chunk-000/file-001.parquet"
    truncate(bad)
    ds = open_dataset(root)  # metadata is fine; episode files are read on demand
    ds.episode(0)
    with pytest.raises(DatasetError, match="file-001.parquet") as e:
        ds.episode(1)
    assert e.value.path == bad and "restore it from a backup" in str(e.value)
    assert [p.path for p in ds.verify()] == [bad]


def test_garbage_mp4_names_the_file(root):
    bad = root / "videos/observation.images.wrist/chunk-000/file-002.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DatasetError, match="observation.images.wrist/chunk-000/file-002.mp4") as e:
        open_dataset(root).episode(2)
    assert e.value.path == bad and "re-record" in str(e.value)
    with pytest.raises(DatasetError, match="file-002.mp4"):
        read_mp4(bad)


def test_truncated_mp4_names_the_file(root):
    bad = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    truncate(bad, 0.6)
    with pytest.raises(DatasetError, match="file-000.mp4"):
        open_dataset(root).episode(0, cameras=["front"])


def test_broken_info_json_names_the_file(root):
    truncate(root / "meta/info.json", 0.5)
    with pytest.raises(DatasetError, match="meta/info.json: is not valid JSON") as e:
        open_dataset(root)
    assert "restore it" in str(e.value)
    with pytest.raises(DatasetError, match="meta/info.json"):
        DatasetWriter(root, synthetic_spec())


def test_broken_episodes_table_and_tasks_name_their_files(root, tmp_path):
    truncate(root / "meta/episodes/chunk-000/file-000.parquet")
    with pytest.raises(DatasetError, match="meta/episodes/chunk-000/file-000.parquet"):
        open_dataset(root)
    other = write_synthetic_dataset(tmp_path / "other", num_episodes=1, length=3)
    (other / "meta/tasks.parquet").unlink()
    with pytest.raises(DatasetError, match="meta/tasks.parquet: file is missing"):
        open_dataset(other)


def test_missing_folder_or_non_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="not a dataset"):
        open_dataset(tmp_path)
