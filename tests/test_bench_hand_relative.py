"""bench/hand_relative.py end to end on a tiny setting: real demos, two BC policies, real evaluation, and the
figures it prints are the ones it writes and the README table is made from."""

import json

import pytest


def test_a_tiny_run_trains_both_readings_and_reports_them_side_by_side(tmp_path, capsys, one_thread, bench_module):
    bench = bench_module("hand_relative")
    result = bench.main(["--families", "pick", "--demos", "2", "--steps", "2", "--batch-size", "8",
                         "--episodes", "2", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    pick = result["families"]["pick"]
    assert set(pick) == {"absolute", "hand_relative", "ratio"}
    assert all(0.0 <= pick[k] <= 1.0 for k in ("absolute", "hand_relative"))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads((tmp_path / "results" / "hand_relative.json").read_text()) == result
    runs = {p.name for p in (tmp_path / "work" / "pick" / "runs").iterdir()}
    assert runs == {"absolute_2demos_b8_x5", "hand_relative_2demos_b8_x5"}  # replanning every 5 actions
    config = json.loads((tmp_path / "work" / "pick" / "runs" / "hand_relative_2demos_b8_x5" / "config.json").read_text())
    assert config["policy"]["hand_relative"] == ["goal_points"] and "goal_points" not in config["policy"]["state_keys"]
    assert config["policy"]["n_action_steps"] == 5 and result["settings"]["execute_steps"] == 5


def test_it_refuses_families_it_does_not_measure(bench_module):
    with pytest.raises(SystemExit):
        bench_module("hand_relative").main(["--families", "open-drawer"])
