"""Expert demonstrations: parallel collection writes the same dataset as serial."""

import numpy as np
import pytest

from embodied.collect import CollectConfig, collect, resolve_tasks


def test_suite_prefix_expands_to_every_family():
    tasks = resolve_tasks(("tabletop/",))
    assert "tabletop/pick-v0" in tasks and len(tasks) >= 10
    with pytest.raises(ValueError, match="embodied list"):
        resolve_tasks(("nosuchsuite/",))


@pytest.mark.slow
def test_parallel_collection_matches_serial(tmp_path):
    from embodied.data import open_dataset

    base = {"tasks": ("tabletop/pick-v0", "tabletop/push-v0"), "episodes_per_task": 2, "cameras": ("front",),
            "image_size": 64}
    serial = collect(CollectConfig(out=tmp_path / "serial", workers=1, **base), progress=False)
    parallel = collect(CollectConfig(out=tmp_path / "parallel", workers=2, **base), progress=False)
    assert {t: s.succeeded for t, s in serial.items()} == {t: s.succeeded for t, s in parallel.items()}
    a, b = open_dataset(tmp_path / "serial"), open_dataset(tmp_path / "parallel")
    assert a.num_episodes == b.num_episodes == sum(s.succeeded for s in serial.values()) >= 3
    for i in range(a.num_episodes):
        ea, eb = a.episode(i), b.episode(i)
        assert ea.task == eb.task
        np.testing.assert_array_equal(ea.actions, eb.actions)
        assert ea.language_motion == eb.language_motion
        assert all(ea.language_motion) and all(ea.subtask)
