"""Run Meta-World's scripted experts through `MetaWorldEnv` and report success per task.

Usage:
    python bench/metaworld_experts.py                      # MT50, 10 seeds per task, state only
    python bench/metaworld_experts.py --tasks MT10 --seeds 3
    python bench/metaworld_experts.py --tasks reach-v3,push-v3 --workers 2

Each episode is ``reset(seed=s)`` for s in 0..seeds-1 (the seed picks one of
the task's 50 train variations), then the expert's 7-D actions until success
or Meta-World's 500-step limit. Prints one line per task and, as its last
line, one JSON object:
{"tasks": {name: {"episodes": n, "success_rate": r}}, "mean_success": m}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")


def run_task(task: str, seeds: int) -> dict:
    """Success of the expert on `task` for seeds 0..seeds-1, plus mean episode length and wall time."""
    from embodied import registry

    start = time.perf_counter()
    env = registry.make(f"metaworld/{task}", cameras=(), depth=False)
    successes, lengths = [], []
    try:
        for seed in range(seeds):
            env.reset(seed=seed)
            expert = env.make_expert()
            expert.reset()
            steps, success = 0, False
            while True:
                _, _, terminated, truncated, info = env.step(expert.act())
                steps += 1
                success = success or bool(info["success"])
                if terminated or truncated:
                    break
            successes.append(success)
            lengths.append(steps)
    finally:
        env.close()
    return {
        "task": task,
        "episodes": len(successes),
        "success_rate": sum(successes) / len(successes),
        "mean_steps": sum(lengths) / len(lengths),
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> dict:
    from envs.metaworld.sets import resolve_tasks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="MT50", help="a set (MT10, MT50, easy, medium, hard, very_hard) or a,b,c")
    parser.add_argument("--seeds", type=int, default=10, help="episodes per task, seeds 0..N-1")
    parser.add_argument("--workers", type=int, default=1, help="processes to spread tasks over")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be at least 1")
    tasks = resolve_tasks(args.tasks)

    results: dict[str, dict] = {}
    if args.workers == 1:
        rows = (run_task(t, args.seeds) for t in tasks)
    else:
        pool = ProcessPoolExecutor(args.workers)
        rows = pool.map(run_task, tasks, [args.seeds] * len(tasks))
    for row in rows:
        results[row["task"]] = row
        print(
            f"{row['task']:<30} success {row['success_rate']:6.1%}  ({row['episodes']} episodes, "
            f"{row['mean_steps']:.0f} steps on average, {row['seconds']:.1f} s)",
            flush=True,
        )
    if args.workers > 1:
        pool.shutdown()
    summary = {
        "tasks": {t: {"episodes": r["episodes"], "success_rate": r["success_rate"]} for t, r in results.items()},
        "mean_success": sum(r["success_rate"] for r in results.values()) / len(results),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
