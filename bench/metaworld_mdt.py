"""One multi-task, language-conditioned MDT on Meta-World MT10 or MT50, beside the published VLAs.

    python bench/metaworld_mdt.py                          # MT10: 50 demos/task, 10 episodes/task
    python bench/metaworld_mdt.py --suite mt50 --steps 60000
    python bench/metaworld_mdt.py --tasks reach-v3 --demos 2 --steps 3 --episodes 1 --results /tmp/mw   # smoke run

1. Collects `--demos` scripted-expert demonstrations per task (seeds 0..demos-1,
   failed ones dropped) with Meta-World's default cameras, corner and
   gripperPOV, at `--image-size` pixels.
2. Trains ONE MDT on all tasks at once, conditioned on the tasks' instructions,
   seeing the images and only the arm's own state (hand position, gripper),
   as the published protocol gives its models (`--state-keys`).
3. Evaluates it in the published protocol: v3 tasks, `--episodes` per task on
   seeds from 10000, the env's own 500-step limit, success at any step (the
   env terminates on success).
4. Prints per-task success, the difficulty-split averages (easy / medium /
   hard / very_hard, over the suite's tasks of each split) and a table beside
   the published MT50 figures, and as its LAST line one JSON object, also saved
   to <results>/<name>.json; eval_info.json goes to <results>/<name>/, where
   name is "metaworld" for MT10 and "metaworld_mt50" for MT50.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED0 = 10_000
EPISODE_LIMIT = 500  # Meta-World's max_path_length: the env truncates there, as the published protocol does
SUITES = {"mt10": ("MT10", "metaworld"), "mt50": ("MT50", "metaworld_mt50")}  # --suite: (set name, results name)
SMOLVLA = "SmolVLA-0.45B"
# MT50 success (%), mean and by split, as reported in the Meta-World table of Shukor et al. 2025, "SmolVLA"
# (arXiv:2506.01844); the other rows are baselines from that table, quoted here by their average only.
PUBLISHED = {
    SMOLVLA: {"mean": 57.3, "easy": 82.5, "medium": 41.8, "hard": 45.0, "very_hard": 60.0},
    "π0": {"mean": 47.9},
    "TinyVLA-1.3B": {"mean": 31.6},
    "Diffusion Policy (multi-task)": {"mean": 10.5},
}
SOURCE = "SmolVLA paper (Shukor et al. 2025, arXiv:2506.01844), Meta-World table"


def split_means(success: dict[str, float]) -> dict[str, float | None]:
    """Mean success rate per difficulty split over the tasks of `success` ({"reach-v3": 0.9, ...}) in that split.

    A split with none of the tasks is None (MT10 has no very_hard task).
    """
    from envs.metaworld.sets import DIFFICULTY_SPLITS, difficulty

    by_split: dict[str, list[float]] = {s: [] for s in DIFFICULTY_SPLITS}
    for task, rate in success.items():
        by_split[difficulty(task)].append(rate)
    return {s: sum(r) / len(r) if r else None for s, r in by_split.items()}


def comparison_table(suite: str, mean: float, splits: dict[str, float | None]) -> str:
    """Our row and the published MT50 rows, in percent; the last column is our mean over that row's mean."""
    cols = ("mean", "easy", "medium", "hard", "very_hard")
    ours = {"mean": 100 * mean} | {s: None if v is None else 100 * v for s, v in splits.items()}
    lines = [f"{'method':32s}" + "".join(f"{c:>10s}" for c in cols) + f"{'ours/it':>9s}"]
    for name, r in [(f"MDT-small, ours ({suite})", ours), *PUBLISHED.items()]:
        cells = "".join(f"{r[c]:10.1f}" if r.get(c) is not None else f"{'–':>10s}" for c in cols)
        ratio = f"{ours['mean'] / r['mean']:9.2f}" if r is not ours else f"{'':9s}"
        lines.append(f"{name:32s}{cells}{ratio}")
    lines.append(f"published rows: MT50, from the {SOURCE}")
    if suite != "MT50":
        lines.append(f"note: ours is {suite}, theirs MT50; only an MT50 run compares like with like")
    return "\n".join(lines)


def collect_demos(tasks: tuple[str, ...], demos: int, image_size: int, out: Path) -> int:
    """Scripted-expert demos of `tasks` into dataset `out`; returns the episodes kept. A complete dataset is
    reused and one a killed run left half-written is resumed (collect skips the episodes it holds)."""
    from embodied.collect import CollectConfig, collect

    collect(CollectConfig(tasks=tuple(f"metaworld/{t}" for t in tasks), episodes_per_task=demos, out=out,
                          image_size=image_size))
    return json.loads((out / "meta" / "info.json").read_text())["total_episodes"]


def train_mdt(data: Path, runs: Path, name: str, steps: int, batch_size: int, image_size: int,
              state_keys: tuple[str, ...]) -> float:
    """Train (or resume to `steps`) the MDT run runs/name on `data`; returns its total training time in minutes."""
    from embodied.train import TrainConfig, load_policy_class, train_to

    policy_cfg = load_policy_class("mdt").config_class()
    policy_cfg = dataclasses.replace(policy_cfg, image_size=(image_size, image_size), state_keys=state_keys)
    return train_to(TrainConfig(dataset=(str(data),), policy="mdt", steps=steps, batch_size=batch_size,
                                output_dir=str(runs), name=name, save_every=max(1, steps // 20),
                                log_every=max(1, steps // 100)), policy_cfg)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=sorted(SUITES), default="mt10")
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the suite, for quick checks")
    ap.add_argument("--demos", type=int, default=50, help="scripted-expert demonstrations per task")
    ap.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    ap.add_argument("--steps", type=int, default=30_000, help="training steps")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=64, help="camera and policy image size (pixels)")
    ap.add_argument("--num-envs", type=int, default=2, help="parallel evaluation envs")
    ap.add_argument("--state-keys", default="ee_pos,gripper",
                    help="state entries the policy reads; the default is the published protocol's proprioception "
                         "(LeRobot's agent_pos: hand position and gripper); 'all' adds Meta-World's own 39-d "
                         "observation, whose object and goal poses no image-based peer is given")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="cap on steps per evaluation episode, for smoke runs only (default: the env's 500)")
    ap.add_argument("--work", type=Path, default=None, help="data and runs (default outputs/bench_<name>)")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)

    import torch

    from embodied.evaluate import EvalConfig, evaluate
    from envs.metaworld.sets import difficulty, get_set

    set_name, name = SUITES[args.suite]
    tasks = get_set(set_name)
    if args.tasks:
        subset = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        if not subset or set(subset) - set(tasks):
            ap.error(f"--tasks {args.tasks!r}: not a subset of {set_name} {tasks}")
        tasks = subset
    work = args.work or ROOT / "outputs" / f"bench_{name}"
    device = "cuda" if torch.cuda.is_available() else "cpu"

    # Folder names carry what the data and the run depend on, so changing a setting never reuses stale ones.
    digest = hashlib.sha1(",".join(tasks).encode()).hexdigest()[:6]
    tag = set_name if tasks == get_set(set_name) else f"{len(tasks)}tasks-{digest}"
    data = work / f"data_{tag}_{args.demos}demos_{args.image_size}px"
    state_keys = () if args.state_keys == "all" else tuple(k.strip() for k in args.state_keys.split(",") if k.strip())
    run = f"mdt_{data.name.removeprefix('data_')}_b{args.batch_size}_state-{'+'.join(state_keys) or 'all'}"
    kept = collect_demos(tasks, args.demos, args.image_size, data)
    minutes = train_mdt(data, work / "runs", run, args.steps, args.batch_size, args.image_size, state_keys)
    info = evaluate(EvalConfig(checkpoint=str(work / "runs" / run), tasks=tuple(f"metaworld/{t}" for t in tasks),
                               episodes=args.episodes, num_envs=args.num_envs, seed0=EVAL_SEED0,
                               max_steps=args.max_steps, out=str(args.results / name), videos=1, device=device))

    success = {t.removeprefix("metaworld/"): r["success_rate"] for t, r in info["tasks"].items()}
    splits = split_means(success)
    print(f"\n{'task':32s}{'split':>10s}{'success':>9s}")
    for task, rate in success.items():
        print(f"{task:32s}{difficulty(task):>10s}{rate:9.0%}")
    print("\n" + comparison_table(set_name, info["mean_success"], splits) + "\n")
    result = {
        "suite": set_name,
        "mean_success": info["mean_success"],
        "splits": splits,
        "ratio_vs_smolvla": 100 * info["mean_success"] / PUBLISHED[SMOLVLA]["mean"],
        "train_minutes": minutes,
        "published": {"suite": "MT50", "source": SOURCE, "percent": PUBLISHED},  # so README tables need no copy
        "settings": {"demos": args.demos, "demos_kept": kept, "episodes": args.episodes,
                     "episode_limit": args.max_steps or EPISODE_LIMIT, "steps": args.steps,
                     "batch_size": args.batch_size, "image_size": args.image_size, "tasks": list(tasks),
                     "state_keys": list(state_keys) or "all",
                     "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "cpu_count": os.cpu_count()},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
