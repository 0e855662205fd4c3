"""Deploy parity: one trained policy, run directly in simulation and through the robot server on the sim twin.

Direct: `embodied.evaluate` (parallel envs, the runner, batched inference).
Served: `embodied.deploy.RobotServerProcess` starts the robot server for the
sim twin in its own process, laying out the same task; the policy's process
drives it over ZeroMQ through a `RemoteRobot` with the one runner, in real
time (the twin's physics does not wait for the policy). Both use the same
layout seeds, so each episode starts from the same scene.

Prints per task the successes of both, Wilson 95 % intervals, the ratio
served/direct and Fisher's exact test of "same success rate"; also the
link's stale-action drops and the server's watchdog trips (both should be
0: the link must not change what the policy does). Last line: one JSON object.

    MUJOCO_GL=egl python bench/deploy_parity.py --checkpoint outputs/demo/runs/mdt [--episodes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _shown(path: str) -> str:
    """The checkpoint path relative to the repository when it is inside it (results are committed)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_outcomes(checkpoint: str, family: str, seeds: list[int], log_dir: Path) -> tuple[list[bool], dict]:
    """Success per seed through the robot server on the sim twin, and the link's counters."""
    from tqdm import tqdm

    from embodied.checkpoint import load_policy
    from embodied.deploy import RobotServerProcess
    from embodied.runner import EpisodeJob, Runner
    from embodied.train_state import pretrained_dir

    server = RobotServerProcess("sim-twin", free_port(), task=family, log=log_dir / f"server_{family}.log")
    try:
        robot = server.connect()
        policy = load_policy(pretrained_dir(checkpoint), expect_spec=robot.spec)
        if hasattr(policy, "eval"):
            policy = policy.eval()
        bar = tqdm(total=len(seeds), desc=f"served {family}", unit="ep")
        results = Runner(robot, policy).run_episodes([EpisodeJob(seed=s) for s in seeds],
                                                      on_result=lambda *_: bar.update())
        bar.close()
        status = robot.status()
        counters = {"dropped": robot.dropped, "watchdog_trips": int(status["watchdog_trips"]),
                    "mean_steps": float(np.mean([r.steps for r in results]))}
        robot.close()
        return [r.success for r in results], counters
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "outputs" / "demo" / "runs" / "mdt"))
    ap.add_argument("--families", default="open-drawer,close-drawer")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed0", type=int, default=2000)
    args = ap.parse_args()

    from scipy.stats import fisher_exact

    from embodied.evaluate import EvalConfig, evaluate
    from embodied.stats_ci import wilson_interval

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    seeds = list(range(args.seed0, args.seed0 + args.episodes))
    work = Path(tempfile.mkdtemp(prefix="deploy_parity_"))
    t = time.monotonic()
    direct = evaluate(EvalConfig(checkpoint=args.checkpoint, tasks=tuple(f"tabletop/{f}-v0" for f in families),
                                 episodes=args.episodes, num_envs=2, seed0=args.seed0, out=str(work / "direct"),
                                 videos=0))
    direct_s = time.monotonic() - t
    rows, served_all, direct_all, counters = [], [], [], {}
    t = time.monotonic()
    for f in families:
        d = [bool(x) for x in direct["tasks"][f"tabletop/{f}-v0"]["outcomes"]]
        s, counters[f] = served_outcomes(args.checkpoint, f, seeds, work)
        direct_all += d
        served_all += s
        rows.append((f, d, s))
    served_s = time.monotonic() - t

    def fmt(xs: list[bool]) -> str:
        lo, hi = wilson_interval(sum(xs), len(xs))
        return f"{sum(xs):3d}/{len(xs):<3d} ({100 * lo:3.0f}-{100 * hi:3.0f}%)"

    print(f"\ncheckpoint {args.checkpoint}; seeds {seeds[0]}..{seeds[-1]}")
    print(f"{'task':16s}{'direct':>20s}{'served (twin)':>22s}{'ratio':>8s}{'Fisher p':>10s}{'drops':>7s}{'trips':>7s}")
    for f, d, s in rows:
        ratio = (sum(s) / sum(d)) if sum(d) else float("nan")
        p = fisher_exact([[sum(d), len(d) - sum(d)], [sum(s), len(s) - sum(s)]])[1]
        print(f"{f:16s}{fmt(d):>20s}{fmt(s):>22s}{ratio:8.2f}{p:10.2f}{counters[f]['dropped']:7d}"
              f"{counters[f]['watchdog_trips']:7d}")
    p_all = fisher_exact([[sum(direct_all), len(direct_all) - sum(direct_all)],
                          [sum(served_all), len(served_all) - sum(served_all)]])[1]
    d_rate, s_rate = float(np.mean(direct_all)), float(np.mean(served_all))
    print(f"{'all':16s}{fmt(direct_all):>20s}{fmt(served_all):>22s}{s_rate / d_rate if d_rate else float('nan'):8.2f}"
          f"{p_all:10.2f}")
    print(f"direct: {direct_s:.0f} s (2 parallel envs, as fast as the CPU goes); served: {served_s:.0f} s (real time)")
    print(json.dumps({"direct_success": d_rate, "served_success": s_rate,
                      "ratio": round(s_rate / d_rate, 3) if d_rate else None, "fisher_p": round(float(p_all), 3),
                      "episodes_per_task": args.episodes, "families": families,
                      "dropped": sum(c["dropped"] for c in counters.values()),
                      "watchdog_trips": sum(c["watchdog_trips"] for c in counters.values()),
                      "checkpoint": _shown(args.checkpoint)}))


if __name__ == "__main__":
    main()
