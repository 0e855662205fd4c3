"""Expert demonstrations: parallel collection writes the same dataset as serial."""

import dataclasses

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


def test_scenes_shared_between_goals_are_demonstrated_once_per_goal(tmp_path):
    """goals_per_layout=2: demos 0 and 1 start from one scene and name different things to touch; demo 2 starts
    from another scene. The scenes are compared by depth, which the dataset stores losslessly (millimetres): the
    video frames of one scene may differ by a few grey levels where x264 encodes two clips differently (CI once
    saw a mean of 2.1 between two encodings of one scene; two scenes here differ by about 51)."""
    from embodied.data import open_dataset

    collect(CollectConfig(tasks=("tabletop/reach-v0",), episodes_per_task=4, goals_per_layout=2, cameras=("front",),
                          image_size=32, out=tmp_path / "d", workers=1, depth=True), progress=False)
    data = open_dataset(tmp_path / "d")
    first = [data.episode(i) for i in range(4)]
    assert first[0].task != first[1].task
    depth = [e.depth["front"][0] for e in first]
    np.testing.assert_array_equal(depth[0], depth[1])
    assert np.abs(depth[0] - depth[2]).mean() > 0.01  # metres: another scene


def test_collections_in_one_process_do_not_inherit_each_others_env_options(tmp_path):
    """workers=1 runs the experts in this process: the second collection must get its own cameras, image size
    and one goal per scene, not the envs and options the first one left behind."""
    from embodied.data import open_dataset

    collect(CollectConfig(tasks=("tabletop/reach-v0",), episodes_per_task=2, goals_per_layout=2, cameras=("front",),
                          image_size=32, out=tmp_path / "a", workers=1), progress=False)
    collect(CollectConfig(tasks=("tabletop/reach-v0",), episodes_per_task=2, image_size=48, out=tmp_path / "b",
                          workers=1), progress=False)
    data = open_dataset(tmp_path / "b")
    assert data.spec.camera_names == ("front", "wrist")
    assert data.episode(0).images["wrist"].shape[1:] == (48, 48, 3)
    first = [data.episode(i).images["front"][0].astype(int) for i in range(2)]
    assert np.abs(first[0] - first[1]).mean() > 1.0  # two scenes, not one scene with two goals


def test_each_task_is_demonstrated_in_scenes_of_its_own(tmp_path):
    """One seed gives pick and reach the same table; distinct_scenes (the default) gives every task its own seeds,
    so a two-task dataset of one demo each shows two scenes, not one."""
    from embodied.data import open_dataset

    tasks = ("tabletop/pick-v0", "tabletop/reach-v0")
    shared = CollectConfig(tasks=tasks, episodes_per_task=1, cameras=("front",), image_size=32, workers=1,
                           distinct_scenes=False, out=tmp_path / "shared")
    own = CollectConfig(tasks=tasks, episodes_per_task=1, cameras=("front",), image_size=32, workers=1,
                        out=tmp_path / "own")
    assert [own.task_seeds(k) for k in range(2)] == [range(1), range(1, 2)] and own.first_unused_seed(2) == 2
    assert shared.task_seeds(1) == range(1) and shared.first_unused_seed(2) == 1
    difference = {}
    for cfg in (shared, own):
        collect(cfg, progress=False)
        data = open_dataset(cfg.out)
        a, b = (data.episode(i).images["front"][0].astype(int) for i in range(2))
        difference[cfg.out.name] = np.abs(a - b).mean()
    assert difference["shared"] < 1.0 < difference["own"]


def test_scenes_only_records_many_layouts_for_perception_and_no_demonstrations(tmp_path):
    """scenes_only: each seed is reset and recorded for scene_frames ticks of a held random action, whatever the
    expert would do; the dataset says its actions are not demonstrations, and keeps instructions and the
    privileged goal_points (where the named object is) that a localisation loss learns from."""
    from embodied.data import open_dataset

    cfg = CollectConfig(tasks=("tabletop/reach-v0",), episodes_per_task=3, cameras=("front",), image_size=32,
                        workers=1, seed=500, scenes_only=True, scene_frames=3, out=tmp_path / "scenes")
    stats = collect(cfg, progress=False)
    data = open_dataset(cfg.out)
    assert not data.demonstrations and data.episode_lengths == [3, 3, 3]
    assert stats["tabletop/reach-v0"].episode_indices == [0, 1, 2]
    episodes = [data.episode(i) for i in range(3)]
    assert all(ep.task.strip() for ep in episodes)  # e.g. "touch the red can"
    assert len({tuple(ep.state["goal_points"][0].round(3)) for ep in episodes}) == 3  # three layouts
    ee = episodes[0].state["ee_pos"]
    assert np.linalg.norm(ee[-1] - ee[0]) > 1e-3  # the held random action moved the arm
    first = [ep.images["front"][0].astype(int) for ep in episodes]
    assert np.abs(first[0] - first[1]).mean() > 1.0
    with pytest.raises(ValueError, match="scene_frames must be >= 1"):
        collect(CollectConfig(tasks=("tabletop/reach-v0",), scenes_only=True, scene_frames=0), progress=False)


def test_the_collect_command_reports_scenes_as_scenes(tmp_path, capsys):
    """`embodied collect --scenes-only`: no expert ran, so it reports scenes and frames, not a 0% success."""
    from embodied.cli import main
    from embodied.data import open_dataset

    main(["collect", "--tasks", "tabletop/reach-v0", "--episodes-per-task", "2", "--workers", "1", "--image-size",
          "32", "--scenes-only", "--scene-frames", "2", "--out", str(tmp_path / "scenes")])
    printed = capsys.readouterr().out
    assert "2 scenes,       4 frames" in printed and "%" not in printed
    assert not open_dataset(tmp_path / "scenes").demonstrations


def test_a_killed_collection_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    """`embodied collect` killed with SIGKILL part-way, then run again with the same arguments: the episodes it
    had committed are kept and not rendered again, and the dataset ends with the same scenes, in the same order,
    as a collection that was never interrupted."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from embodied.data import open_dataset

    args = ["--tasks", "tabletop/reach-v0", "tabletop/push-v0", "--episodes-per-task", "4", "--scenes-only",
            "--cameras", "front", "--image-size", "32", "--workers", "1"]
    root = tmp_path / "resumed"
    command = [sys.executable, "-m", "embodied.cli", "collect", *args, "--out", str(root)]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    info = root / "meta" / "info.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if info.exists() and json.loads(info.read_text())["total_episodes"] >= 3:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = open_dataset(root).episode_sources
    assert 3 <= len(kept) < 8, "the kill should land part-way through the eight scenes"

    done = subprocess.run(command, check=False, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed: {len(kept)} episodes were already in {root}" in done.stdout
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "embodied.cli", "collect", *args, "--out", str(straight)], cwd=repo,
                   check=True, capture_output=True, timeout=300)
    a, b = open_dataset(root), open_dataset(straight)
    expected = [(env, seed) for env, seeds in (("tabletop/reach-v0", range(4)), ("tabletop/push-v0", range(4, 8)))
                for seed in seeds]
    assert a.episode_sources == b.episode_sources == expected
    assert a.verify() == []
    for i in range(len(expected)):
        np.testing.assert_array_equal(a.episode(i).state["goal_points"], b.episode(i).state["goal_points"])
        assert a.episode_task(i) == b.episode_task(i)


def test_collecting_again_adds_nothing_and_a_dataset_without_provenance_is_refused(tmp_path):
    """The second run of one config finds every demonstration recorded; a dataset whose episodes do not say
    which env and seed made them (recorded by hand) cannot be resumed, since nothing tells what would repeat."""
    from embodied.data import DatasetError, open_dataset
    from embodied.data.synthetic import write_synthetic_dataset

    cfg = CollectConfig(tasks=("tabletop/reach-v0",), episodes_per_task=2, cameras=("front",), image_size=32,
                        workers=1, out=tmp_path / "demos")
    first = collect(cfg, progress=False)["tabletop/reach-v0"]
    again = collect(cfg, progress=False)["tabletop/reach-v0"]
    assert (first.attempted, first.already) == (2, 0)
    assert (again.attempted, again.already) == (0, first.succeeded)
    assert open_dataset(cfg.out).episode_sources == [("tabletop/reach-v0", 0), ("tabletop/reach-v0", 1)][
        :first.succeeded]

    by_hand = write_synthetic_dataset(tmp_path / "by_hand", num_episodes=2)
    assert open_dataset(by_hand).episode_sources == [(None, None), (None, None)]
    with pytest.raises(DatasetError, match="do not record their env and seed"):
        collect(dataclasses.replace(cfg, out=by_hand), progress=False)
