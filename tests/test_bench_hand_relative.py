"""bench/hand_relative.py end to end on a tiny setting: real demos, three BC policies, real evaluation, and the
figures it prints are the ones it writes and the README table is made from."""

import json

import pytest


def test_a_tiny_run_trains_the_three_readings_and_reports_them_side_by_side(tmp_path, capsys, monkeypatch, one_thread,
                                                                          bench_module):
    bench = bench_module("hand_relative")
    result = bench.main(["--families", "pick", "--demos", "2", "--steps", "2", "--batch-size", "8",
                         "--episodes", "2", "--point-noise", "0.02", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    pick = result["families"]["pick"]
    assert set(pick) == {"absolute", "hand_relative", "offsets_only", "ratio"}
    assert all(0.0 <= pick[k] <= 1.0 for k in ("absolute", "hand_relative", "offsets_only"))
    noise = result["point_noise"]  # offsets only again, each episode's points off by a fixed 2 cm (std) error
    assert noise["stds_m"] == [0.02] and 0.0 <= noise["families"]["pick"]["0.02"] == noise["mean"]["0.02"] <= 1.0
    assert (tmp_path / "work" / "pick" / "eval_noise0.02" / "eval_info.json").is_file()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads((tmp_path / "results" / "hand_relative.json").read_text()) == result
    runs = {p.name for p in (tmp_path / "work" / "pick" / "runs").iterdir()}
    assert runs == {"absolute_2demos_b8_x5", "hand_relative_2demos_b8_x5", "offsets_only_2demos_b8_x5"}  # replan every 5

    def policy_config(run):
        return json.loads((tmp_path / "work" / "pick" / "runs" / run / "config.json").read_text())["policy"]

    relative, only = policy_config("hand_relative_2demos_b8_x5"), policy_config("offsets_only_2demos_b8_x5")
    assert relative["hand_relative"] == only["hand_relative"] == ["goal_points"]
    assert "goal_points" not in relative["state_keys"] and "joint_pos" in relative["state_keys"]
    assert only["state_keys"] == ["gripper"]  # the arm's state left out
    assert relative["n_action_steps"] == 5 and result["settings"]["execute_steps"] == 5

    readme_tables = bench_module("readme_tables")
    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path / "results")
    table = readme_tables.hand_relative()
    assert table.startswith("| family | absolute | hand-relative | offsets only | ratio | offsets only, ±2 cm |")
    assert f"| pick | {pick['absolute']:.0%} | {pick['hand_relative']:.0%} | {pick['offsets_only']:.0%} |" in table
    assert f"mean **{noise['mean']['0.02']:.1%}** at ±2 cm" in table


def test_it_refuses_families_it_does_not_measure(bench_module):
    with pytest.raises(SystemExit):
        bench_module("hand_relative").main(["--families", "open-drawer"])
    with pytest.raises(SystemExit):
        bench_module("hand_relative").main(["--point-noise", "-0.01"])
