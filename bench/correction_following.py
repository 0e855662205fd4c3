"""Correction following: does a trained policy obey a language motion given live ("move arm left")?

For each seed and each of six language motions (forward, backward, left,
right, up, down), the checkpoint runs a tabletop episode through the one
runner; after `--lead` ticks a correction with that motion arrives on a
correction channel (exactly as one typed in the web page does), and the
policy follows it for its hold period. The figure is the end effector's
displacement along the commanded direction over the `--window` ticks after
the correction, against the same seed with no correction (the policy's own
motion): their difference is what the words did. A trial counts as obeyed
when the difference exceeds `--min-move` (2 cm).

Comparison in the same run: `--baseline`, a second checkpoint (e.g. the same
training without the "move" family of language-motion episodes), with the
ratio of the two obeyed rates. Last line: one JSON object with `obeyed_rate`
and `mean_move_m` (and the baseline's).

    MUJOCO_GL=egl python bench/correction_following.py --checkpoint outputs/demo/runs/mdt [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MOTIONS = {"move arm forward": (1, 0, 0), "move arm backward": (-1, 0, 0), "move arm left": (0, 1, 0),
           "move arm right": (0, -1, 0), "move arm up": (0, 0, 1), "move arm down": (0, 0, -1)}


def ee_track(runner_cls, env, policy, seed: int, steps: int, schedule: dict) -> np.ndarray:
    """(T, 3) end-effector positions (T <= steps, one per tick) of one episode prefix with the scheduled corrections."""
    from embodied.channels import ScheduledChannel
    from embodied.episode import EpisodeBuffer
    from embodied.runner import RunnerConfig

    buf = EpisodeBuffer()
    runner = runner_cls(env, policy, recorder=buf, channels=[ScheduledChannel(schedule)],
                        config=RunnerConfig(max_steps=steps, label_motions=False))
    frames = runner.run_episode(seed=seed).recorded.frames
    return np.array([f.obs.state["ee_pos"] for f in frames], np.float64)


def measure(checkpoint: str, task: str, seeds: list[int], lead: int, window: int, min_move: float) -> dict:
    """Per motion: displacement along it after the correction, and without one, over `window` ticks."""
    from embodied import registry
    from embodied.checkpoint import load_policy
    from embodied.evaluate import EvalConfig, checkpoint_spec, env_options
    from embodied.runner import Runner
    from embodied.sim import GymEmbodiment
    from embodied.train_state import pretrained_dir
    from embodied.types import Correction

    _, trained = checkpoint_spec(checkpoint)
    opts = env_options(EvalConfig(checkpoint=checkpoint, tasks=(task,)), trained)
    env = GymEmbodiment(registry.make(task, **opts))
    policy = load_policy(pretrained_dir(checkpoint), expect_spec=env.spec)
    policy = policy.eval() if hasattr(policy, "eval") else policy
    steps = lead + window
    moves, base_moves = {m: [] for m in MOTIONS}, {m: [] for m in MOTIONS}
    for seed in seeds:
        base = ee_track(Runner, env, policy, seed, steps, {})
        for text, direction in MOTIONS.items():
            d = np.asarray(direction, np.float64)
            corr = Correction(text, time=float(lead), source="simulated", payload={"language_motion": text})
            track = ee_track(Runner, env, policy, seed, steps, {lead: corr})
            end = min(len(track), len(base)) - 1
            if end <= lead:
                continue  # the episode ended (success) before the correction
            moves[text].append(float((track[end] - track[lead]) @ d))
            base_moves[text].append(float((base[end] - base[lead]) @ d))
    env.close()
    per = {}
    for text in MOTIONS:
        m, b = np.array(moves[text]), np.array(base_moves[text])
        per[text] = {"moved_m": float(m.mean()), "uncorrected_m": float(b.mean()),
                     "obeyed": int(np.sum(m - b > min_move)), "trials": len(m)}
    total = sum(r["trials"] for r in per.values())
    diffs = [x - y for t in MOTIONS for x, y in zip(moves[t], base_moves[t])]
    return {"per_motion": per, "obeyed_rate": sum(r["obeyed"] for r in per.values()) / max(1, total),
            "trials": total, "mean_move_m": float(np.mean(diffs)) if diffs else 0.0,
            "hold_steps": getattr(getattr(policy, "config", None), "correction_hold_steps", window)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "outputs" / "demo" / "runs" / "mdt"))
    ap.add_argument("--baseline", default=None, help="a second checkpoint to compare in the same run "
                                                     "(e.g. one trained without the 'move' family)")
    ap.add_argument("--task", default="tabletop/reach-v0")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed0", type=int, default=3000)
    ap.add_argument("--lead", type=int, default=3, help="ticks of the task before the correction")
    ap.add_argument("--window", type=int, default=8, help="ticks measured after the correction")
    ap.add_argument("--min-move", type=float, default=0.02, help="metres beyond the uncorrected motion")
    args = ap.parse_args()

    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    runs = {"checkpoint": measure(args.checkpoint, args.task, seeds, args.lead, args.window, args.min_move)}
    if args.baseline:
        runs["baseline"] = measure(args.baseline, args.task, seeds, args.lead, args.window, args.min_move)
    print(f"task {args.task}; seeds {seeds[0]}..{seeds[-1]}; correction after {args.lead} ticks, measured over "
          f"{args.window}; obeyed = moved > {args.min_move} m further that way than without the correction")
    for name, r in runs.items():
        path = args.checkpoint if name == "checkpoint" else args.baseline
        print(f"\n{name}: {path}")
        print(f"{'correction':22s}{'moved m':>10s}{'uncorrected m':>15s}{'obeyed':>9s}")
        for text, p in r["per_motion"].items():
            print(f"{text:22s}{p['moved_m']:10.3f}{p['uncorrected_m']:15.3f}{p['obeyed']:5d}/{p['trials']}")
        print(f"obeyed {r['obeyed_rate']:.0%} of {r['trials']} trials; mean extra move {100 * r['mean_move_m']:.1f} cm")
    out = {"obeyed_rate": runs["checkpoint"]["obeyed_rate"], "mean_move_m": runs["checkpoint"]["mean_move_m"],
           "trials": runs["checkpoint"]["trials"], "task": args.task, "min_move_m": args.min_move,
           "checkpoint": _shown(args.checkpoint)}
    if args.baseline:
        b = runs["baseline"]["obeyed_rate"]
        print(f"\nratio of obeyed rates (checkpoint / baseline): "
              f"{runs['checkpoint']['obeyed_rate'] / b if b else float('inf'):.2f}")
        out |= {"baseline_obeyed_rate": b, "baseline_mean_move_m": runs["baseline"]["mean_move_m"],
                "baseline": _shown(args.baseline)}
    print(json.dumps(out))


def _shown(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    main()
