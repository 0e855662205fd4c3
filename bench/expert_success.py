"""Success rate of the scripted tabletop experts, per task family.

    python bench/expert_success.py                       # 50 seeds x every family
    python bench/expert_success.py --seeds 10 --families pick,stack --workers 2

Runs state-only envs (no rendering) in a process pool, shows a tqdm bar,
prints a table, and prints as its LAST line one JSON object:
{"families": {"pick": {"episodes": 50, "success_rate": 0.98, "mean_steps": 61.2}, ...},
 "min_success_rate": ..., "seeds": [first, end)}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def run_episodes(jobs: list[tuple[str, int]], robot: str, workers: int):
    """Yield (task, seed, RecordedEpisode, interventions): the experts through the one runner
    (safety filter included), in worker processes, exactly as `embodied collect` runs them."""
    from embodied.collect import run_jobs

    yield from run_jobs(jobs, {"cameras": (), "robot": robot}, workers)


def main(argv: list[str] | None = None) -> dict:
    from envs.tabletop.registration import FAMILIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=50, help="episodes per family (seeds first .. first+N-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--families", default="all", help=f"comma-separated subset of {','.join(FAMILIES)}")
    p.add_argument("--robot", default="panda", help="panda | ur5e | iiwa")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    args = p.parse_args(argv)

    families = list(FAMILIES) if args.families == "all" else [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        p.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(f"tabletop/{f}-v0", s) for f in families for s in seeds]

    from tqdm import tqdm

    results: dict[str, list[tuple[bool, int]]] = {f: [] for f in families}
    t0 = time.perf_counter()
    for task, _seed, episode, _interventions in tqdm(
        run_episodes(jobs, args.robot, max(1, args.workers)), total=len(jobs), desc="expert episodes"
    ):
        results[task.split("/")[1].removesuffix("-v0")].append((episode.success, len(episode)))
    elapsed = time.perf_counter() - t0

    table = {}
    print(f"\n{'family':<16}{'episodes':>9}{'success':>9}{'mean steps':>12}")
    for f in families:
        oks = [ok for ok, _ in results[f]]
        steps = [st for _, st in results[f]]
        row = {
            "episodes": len(oks),
            "success_rate": round(sum(oks) / len(oks), 4),
            "mean_steps": round(sum(steps) / len(steps), 1),
        }
        table[f] = row
        print(f"{f:<16}{row['episodes']:>9}{row['success_rate']:>9.2f}{row['mean_steps']:>12.1f}")
    total_steps = sum(st for f in families for _, st in results[f])
    print(
        f"{len(jobs)} episodes, {total_steps} env steps in {elapsed:.1f} s with {args.workers} workers ({args.robot})"
    )
    summary = {
        "families": table,
        "min_success_rate": min(r["success_rate"] for r in table.values()),
        "seeds": [seeds.start, seeds.stop],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
