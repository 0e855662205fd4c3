"""Evaluation of a tiny trained policy: eval_info.json, confidence intervals, videos, plot, README table."""

import json
import math
from pathlib import Path

import pytest

from embodied.data import read_mp4
from embodied.evaluate import EVAL_INFO, EvalConfig, evaluate
from embodied.stats_ci import wilson_interval
from embodied.types import SpecMismatchError

TASK = "tabletop/reach-v0"


@pytest.fixture(scope="module")
def run(tiny_bc_run):
    """Two expert demos at 32x32, and a BC policy trained on them for 3 steps (a real run folder)."""
    return tiny_bc_run


@pytest.fixture(scope="module")
def evaluation(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_out")
    cfg = EvalConfig(checkpoint=str(run), tasks=(TASK,), episodes=3, num_envs=2, seed0=10, max_steps=12, videos=1,
                     out=str(out), progress=False)
    return evaluate(cfg), out


def test_eval_info_is_well_formed(evaluation):
    info, out = evaluation
    assert json.loads((out / EVAL_INFO).read_text()) == info
    task = info["tasks"][TASK]
    assert task["episodes"] == 3 and task["seeds"] == [10, 11, 12]
    assert task["successes"] == sum(task["outcomes"]) and task["success_rate"] == task["successes"] / 3
    lo, hi = task["ci95"]
    assert 0.0 <= lo <= task["success_rate"] <= hi <= 1.0 and hi - lo > 0.3  # three episodes say little
    assert task["mean_steps"] == sum(task["steps"]) / 3 and all(1 <= s <= 12 for s in task["steps"])
    assert task["instruction"]
    assert len(task["action_digests"]) == 3 and all(len(d) == 40 for d in task["action_digests"])
    assert info["mean_success"] == task["success_rate"] and info["episodes"] == 3 and info["num_envs"] == 2
    assert info["checkpoint"].endswith("pretrained_model") and info["wall_time_s"] > 0
    assert info["config"]["episodes"] == 3 and info["config"]["seed0"] == 10
    assert (out / "success.png").stat().st_size > 1000


def test_videos_are_named_by_outcome_and_decode(evaluation):
    info, out = evaluation
    task = info["tasks"][TASK]
    assert 1 <= len(task["videos"]) <= 2  # at most one success and one failure
    for rel in task["videos"]:
        seed = int(rel.split("_seed")[1].split("_")[0])
        outcome = task["outcomes"][task["seeds"].index(seed)]
        assert rel.endswith("_success.mp4" if outcome else "_failure.mp4")
        frames = read_mp4(out / rel)
        assert frames.shape[1:] == (32, 64, 3)  # front and wrist side by side
        assert len(frames) == task["steps"][task["seeds"].index(seed)]


def test_execute_steps_says_how_many_actions_of_each_chunk_run_before_replanning(run, tmp_path):
    """The BC policy predicts 4 actions per chunk and executes all 4; evaluation may replan sooner."""
    from embodied import registry
    from embodied.checkpoint import load_policy
    from embodied.evaluate import prepare_policy
    from embodied.sim import GymEmbodiment
    from embodied.train_state import pretrained_dir

    embodiment = GymEmbodiment(registry.make(TASK, image_size=(32, 32)))
    try:
        obs = embodiment.reset(seed=0)
        policy = load_policy(pretrained_dir(run), expect_spec=embodiment.spec)
        assert [len(a.value) for a in prepare_policy(policy, 2).act_batch([obs, obs])] == [4, 4]
        assert [len(a.value) for a in prepare_policy(policy, 2, execute_steps=1).act_batch([obs, obs])] == [1, 1]
        with pytest.raises(ValueError, match="execute_steps=5 is more than the 4 actions"):
            prepare_policy(policy, 1, execute_steps=5).act_batch([obs])
    finally:
        embodiment.close()
    info = evaluate(EvalConfig(checkpoint=str(run), tasks=(TASK,), episodes=1, num_envs=1, max_steps=3, videos=0,
                               execute_steps=1, out=str(tmp_path), progress=False))
    assert info["config"]["execute_steps"] == 1
    with pytest.raises(ValueError, match="execute_steps must be >= 1"):
        evaluate(EvalConfig(checkpoint=str(run), tasks=(TASK,), execute_steps=0, out=str(tmp_path)))


def test_evaluating_twice_repeats_every_rollout_of_a_sampling_policy(run, tmp_path):
    """An untrained MDT samples its actions from noise; evaluation seeds that noise, so the same checkpoint,
    seeds and num_envs give action-for-action the same rollouts, whatever the RNGs' state before."""
    import torch

    from embodied.data import open_dataset
    from policies.mdt import MDTConfig, MDTPolicy

    data = open_dataset(Path(run).parent / "data")
    config = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1,
                       image_size=(32, 32), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16)
    folder = MDTPolicy.from_dataset_meta(config, data.spec, data.stats).save_pretrained(tmp_path / "mdt")
    digests = []
    for before in (1, 2):
        torch.manual_seed(before)
        info = evaluate(EvalConfig(checkpoint=str(folder), tasks=(TASK,), episodes=2, num_envs=2, max_steps=15,
                                   videos=0, out=str(tmp_path / f"eval{before}"), progress=False))
        digests.append(info["tasks"][TASK]["action_digests"])
    # Not the videos: x264 now and then encodes the very same frames to other bytes (on a busy 2-core
    # machine, 300 encodes of one 15-frame clip gave 4 distinct files), so their frames are no evidence either way.
    assert digests[0] == digests[1]
    assert digests[0][0] != digests[0][1]  # two seeds, two different rollouts


def test_a_checkpoint_for_another_embodiment_is_refused(run, tmp_path):
    cfg = EvalConfig(checkpoint=str(run), tasks=(TASK,), episodes=1, num_envs=1, image_size=(48, 48),
                     out=str(tmp_path), progress=False)
    with pytest.raises(SpecMismatchError, match="camera 'front' is 48x48, .* expects 32x32"):
        evaluate(cfg)
    assert not (tmp_path / EVAL_INFO).exists()


def test_readme_table_is_generated_from_eval_info(evaluation, bench_module):
    readme_tables = bench_module("readme_tables")
    info, _ = evaluation
    table = readme_tables.eval_table(info)
    rate = info["tasks"][TASK]["success_rate"]
    lo, hi = info["tasks"][TASK]["ci95"]
    assert f"| {TASK} | 3 | {rate:.0%} | {lo:.0%}–{hi:.0%} |" in table
    assert f"**{info['mean_success']:.1%}**" in table


def test_readme_blocks_are_filled_when_empty_and_replaced_when_stale(monkeypatch, bench_module):
    readme_tables = bench_module("readme_tables")
    monkeypatch.setattr(readme_tables, "TABLES", {"speed": lambda: "| a |\n| 1 |", "unmeasured": lambda: None})
    text = ("# R\n<!-- BEGIN:speed -->\n<!-- END:speed -->\nmiddle\n<!-- BEGIN:unmeasured -->\nold words\n"
            "<!-- END:unmeasured -->\n")
    once = readme_tables.render(text)
    assert "<!-- BEGIN:speed -->\n| a |\n| 1 |\n<!-- END:speed -->\nmiddle" in once
    assert "old words" in once  # a benchmark not run yet leaves its block as it is
    assert readme_tables.render(once) == once
    stale = once.replace("| 1 |", "| 0 |")
    assert readme_tables.render(stale) == once


def test_wilson_interval_matches_known_values():
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(40, 50)
    assert lo < 0.8 < hi and math.isclose(hi - lo, 0.2179, abs_tol=1e-3)
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(3, 2)


def test_success_note_says_the_settings_overrides_and_the_fit_on_demo_seeds(tmp_path, monkeypatch, bench_module):
    readme_tables = bench_module("readme_tables")
    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    (tmp_path / "success").mkdir()
    task = {"success_rate": 0.3, "ci95": [0.2, 0.4]}
    (tmp_path / "success" / "eval_info.json").write_text(json.dumps({"tasks": {"tabletop/reach-v0": task}}))
    result = {"mean_success": 0.3, "ablation_mean_success": None, "random_mean_success": 0.02,
              "ratio_vs_ablation": None, "train_minutes": {"full": 12.0},
              "demo_seed_success": {"episodes_per_task": 10, "mean_success": 1.0, "tasks": {"tabletop/reach-v0": 1.0}},
              "settings": {"policy_overrides": {"goal_film": True}, "demos_per_task": 50, "episodes_per_task": 50,
                           "steps": 1500, "batch_size": 32, "image_size": 64, "device": "cpu", "cpu_count": 2}}
    (tmp_path / "success.json").write_text(json.dumps(result))
    result["heading"] = {"tabletop/reach-v0": {"demo": {"mean_cosine": 0.98, "straight": 0.9, "seeds": 30},
                                               "unseen": {"mean_cosine": 0.31, "straight": 0.2, "seeds": 30}}}
    (tmp_path / "success.json").write_text(json.dumps(result))
    note = readme_tables.success()
    assert "heads for the goal's object with a mean cosine of 0.98 on its demonstrations' seeds and 0.31" in note
    assert "| tabletop/reach-v0 | 30% | 20%–40% | – | – |" in note
    assert "MDT-small with `goal_film=true`" in note
    assert "On 10 of its own demonstrations' seeds per task (same scenes and goals) it succeeds 100%" in note
    result["heading"]["tabletop/reach-v0"]["demo"] |= {"localisation_cm": 4.5, "mean_guess_cm": 19.9}
    result["heading"]["tabletop/reach-v0"]["unseen"] |= {"localisation_cm": 15.1, "mean_guess_cm": 19.8}
    result["settings"]["rendered_scenes_per_task"] = 2000
    (tmp_path / "success.json").write_text(json.dumps(result))
    note = readme_tables.success()
    assert "50 demos and 2000 rendered scenes without demonstrations (for perception only) and 50 evaluation" in note
    assert "within 4.5 cm on its demonstrations' seeds and 15.1 cm on unseen ones (always guessing the mean" in note
    result["perception"] = {"steps": 100, "localisation_cm": {"tabletop/reach-v0": 5.0},
                            "mean_guess_cm": {"tabletop/reach-v0": 20.0}}
    (tmp_path / "success.json").write_text(json.dumps(result))
    assert "mean) and 50 evaluation" in readme_tables.success() and "heat maps" not in readme_tables.success()
    result["perception"]["pointing_px_median"] = {"tabletop/reach-v0": {"front": 1.5, "wrist": 2.25}}
    (tmp_path / "success.json").write_text(json.dumps(result))
    assert "its goal heat maps point at it within a median of 1.5 px (front) and 2.2 px (wrist)) and 50" in \
        readme_tables.success()
    result["perception"] = {"stage": "locator", "steps": 6000, "localisation_cm": {"tabletop/reach-v0": 3.0},
                            "localisation_median_cm": {"tabletop/reach-v0": 0.9},
                            "mean_guess_cm": {"tabletop/reach-v0": 20.9}}
    result["settings"]["camera_size"] = 128
    (tmp_path / "success.json").write_text(json.dumps(result))
    note = readme_tables.success()
    assert "a locator trained 6000 steps at 128 px" in note and "perception stage" not in note
    assert "a mean 3.0 cm (median 0.9 cm) from where it is, against 20.9 cm" in note
    del result["perception"]
    del result["demo_seed_success"], result["settings"]["policy_overrides"], result["heading"]
    (tmp_path / "success.json").write_text(json.dumps(result))
    assert "own demonstrations" not in readme_tables.success() and "with `" not in readme_tables.success()
    assert "heads for" not in readme_tables.success()


def test_heading_gives_one_cosine_per_seed_and_repeats(run, bench_module):
    """bench/heading.py: where a policy's first chunk goes, against where the goal's object is."""
    heading_cosines = bench_module("heading").heading_cosines
    summary = bench_module("heading").summary
    cosines = heading_cosines(str(run), TASK, range(10_000, 10_003))
    assert len(cosines) == 3 and all(-1.0 <= c <= 1.0 for c in cosines)
    assert heading_cosines(str(run), TASK, range(10_000, 10_003)) == cosines  # same seeds, same noise
    s = summary(cosines)
    assert s["seeds"] == 3 and s["mean_cosine"] == pytest.approx(sum(cosines) / 3)


def test_localisation_errors_say_where_the_policy_places_the_object(run, tmp_path, bench_module):
    """For an MDT with a localisation head: per seed, how far from the goal's object it places it, beside the
    error of always guessing the training data's mean position; a policy without the head gives None."""
    import dataclasses

    from embodied.data import open_dataset
    from policies.mdt import MDTConfig, MDTPolicy

    localisation_errors = bench_module("heading").localisation_errors
    summary = bench_module("heading").summary
    assert localisation_errors(str(run), TASK, range(10_000, 10_002)) is None  # BC has no localisation head
    data = open_dataset(run.parent / "data")
    config = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1,
                       image_size=(32, 32), localisation_weight=1.0)
    policy = MDTPolicy.from_dataset_meta(config, data.spec, data.stats)
    policy.save_pretrained(tmp_path / "mdt")
    located = localisation_errors(str(tmp_path / "mdt"), TASK, range(10_000, 10_002))
    assert len(located["error"]) == len(located["mean_guess"]) == 2
    assert all(0.0 < e < 2.0 for e in located["error"] + located["mean_guess"])  # metres, on a 1 m table
    s = summary([0.5, 0.5], located)
    assert s["localisation_cm"] == pytest.approx(50 * sum(located["error"]))
    with pytest.raises(ValueError, match="no localisation head"):
        MDTPolicy.from_dataset_meta(dataclasses.replace(config, localisation_weight=0.0), data.spec,
                                    data.stats).locate({})


def test_pointing_errors_say_how_far_the_heat_maps_point_from_the_object(run, tmp_path, bench_module):
    """For an MDT with goal heat maps: per camera, the pixel distance from its map's point to the goal's
    object in that image, over the seeds where the object is in view; None without heat maps."""
    from embodied.data import open_dataset
    from policies.mdt import MDTConfig, MDTPolicy

    pointing_errors = bench_module("heading").pointing_errors
    assert pointing_errors(str(run), TASK, range(10_000, 10_002)) is None  # BC has no heat maps
    data = open_dataset(run.parent / "data")
    config = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1,
                       image_size=(32, 32), goal_film=True, goal_heatmaps=True, random_shift=0)
    MDTPolicy.from_dataset_meta(config, data.spec, data.stats).save_pretrained(tmp_path / "mdt")
    pointed = pointing_errors(str(tmp_path / "mdt"), TASK, range(10_000, 10_003))
    assert set(pointed) == set(data.spec.camera_names) and len(pointed["front"]) == 3  # the table is in view
    assert all(0.0 <= e < 32 * 2**0.5 for errors in pointed.values() for e in errors)  # within the 32 px image


def test_grounding_says_whether_the_heat_map_picks_the_named_object_or_its_same_colour_twin(run, tmp_path,
                                                                                           bench_module):
    """For an MDT with goal heat maps: per camera and seed, whether the scene holds another object of the named
    one's colour (a twin, which only its shape tells apart) and whether the map points at the named one."""
    from embodied.data import open_dataset
    from policies.mdt import MDTConfig, MDTPolicy

    heading = bench_module("heading")
    assert heading.grounding(str(run), "tabletop/pick-v0", range(10_000, 10_002)) is None  # BC has no heat maps
    data = open_dataset(run.parent / "data")
    config = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1,
                       image_size=(32, 32), goal_film=True, goal_heatmaps=True, random_shift=0)
    MDTPolicy.from_dataset_meta(config, data.spec, data.stats).save_pretrained(tmp_path / "mdt")
    rows = heading.grounding(str(tmp_path / "mdt"), "tabletop/pick-v0", range(10_000, 10_003))
    # Seed 10000 asks for the green cube beside a green cylinder; 10001's cyan cube and 10002's orange
    # cylinder have no twin. The front camera sees the whole table.
    assert [twin for twin, _ in rows["front"]] == [True, False, False]
    assert all(isinstance(on, bool) for cam_rows in rows.values() for _, on in cam_rows)
    assert heading.grounding(str(tmp_path / "mdt"), "tabletop/open-drawer-v0", range(10_000, 10_002)) is None

    summary = heading.grounding_summary({"front": [(True, False), (True, True), (False, True)], "wrist": [(False, False)]})
    assert summary["front"] == {"twin": 0.5, "twin_seeds": 2, "single": 1.0, "single_seeds": 1}
    assert summary["wrist"] == {"twin": None, "twin_seeds": 0, "single": 0.0, "single_seeds": 1}
