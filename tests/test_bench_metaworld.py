"""bench/metaworld_mdt.py end to end on a tiny configuration, and its split averages and comparison table.

The real benchmark (MT10/MT50, 50 demos, 10 episodes per task) is run by hand; here one task, two demos, two
training steps and one short evaluation episode check that every stage connects and the outputs are well formed.
"""

import importlib.util
import json
from pathlib import Path

import pytest

# Loaded under another name: imported as `metaworld` it would hide the Meta-World package.
_spec = importlib.util.spec_from_file_location("bench_metaworld", Path(__file__).parents[1] / "bench" / "metaworld_mdt.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_split_means_average_the_tasks_present_in_each_split():
    means = bench.split_means({"reach-v3": 1.0, "door-open-v3": 0.5, "push-v3": 0.2, "peg-insert-side-v3": 0.0})
    assert means == {"easy": 0.75, "medium": 0.0, "hard": 0.2, "very_hard": None}
    with pytest.raises(KeyError, match="not a Meta-World v3 task"):
        bench.split_means({"reach-v2": 1.0})


def test_comparison_table_puts_our_row_beside_the_published_ones():
    table = bench.comparison_table("MT50", 0.6, {"easy": 0.9, "medium": 0.5, "hard": 0.4, "very_hard": None})
    ours, smolvla = table.splitlines()[1:3]
    assert ours.split()[-5:] == ["60.0", "90.0", "50.0", "40.0", "–"]
    assert smolvla.split()[-6:] == ["57.3", "82.5", "41.8", "45.0", "60.0", f"{60 / 57.3:.2f}"]
    assert "arXiv:2506.01844" in table and "compares like with like" not in table
    assert "only an MT50 run compares like with like" in bench.comparison_table("MT10", 0.6, {})


@pytest.mark.slow
def test_tiny_run_collects_trains_evaluates_and_reports(tmp_path, capsys):
    result = bench.main(["--tasks", "reach-v3", "--demos", "2", "--steps", "2", "--batch-size", "4",
                         "--image-size", "32", "--episodes", "1", "--num-envs", "1", "--max-steps", "10",
                         "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result == json.loads((tmp_path / "results" / "metaworld.json").read_text())
    assert result["suite"] == "MT10" and result["settings"]["tasks"] == ["reach-v3"]
    assert result["settings"]["demos_kept"] == 2 and result["settings"]["episode_limit"] == 10
    assert result["splits"]["easy"] == result["mean_success"] and result["splits"]["hard"] is None
    assert result["ratio_vs_smolvla"] == pytest.approx(result["mean_success"] / 0.573)
    assert result["train_minutes"] > 0 and result["published"]["percent"]["SmolVLA-0.45B"]["mean"] == 57.3
    info = json.loads((tmp_path / "results" / "metaworld" / "eval_info.json").read_text())
    task = info["tasks"]["metaworld/reach-v3"]
    assert task["seeds"] == [10_000] and task["steps"][0] <= 10
