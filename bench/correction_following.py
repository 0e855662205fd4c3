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

Comparison in the same run: the uncorrected policy (ratio of obeyed trials
against the share of uncorrected trials that happen to move that way anyway).
Last line: one JSON object with `obeyed_rate` and `mean_move_m`.

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "outputs" / "demo" / "runs" / "mdt"))
    ap.add_argument("--task", default="tabletop/reach-v0")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed0", type=int, default=3000)
    ap.add_argument("--lead", type=int, default=3, help="ticks of the task before the correction")
    ap.add_argument("--window", type=int, default=8, help="ticks measured after the correction")
    ap.add_argument("--min-move", type=float, default=0.02, help="metres beyond the uncorrected motion")
    args = ap.parse_args()

    from embodied import registry
    from embodied.checkpoint import load_policy
    from embodied.evaluate import EvalConfig, checkpoint_spec, env_options
    from embodied.runner import Runner
    from embodied.sim import GymEmbodiment
    from embodied.train_state import pretrained_dir
    from embodied.types import Correction

    _, trained = checkpoint_spec(args.checkpoint)
    opts = env_options(EvalConfig(checkpoint=args.checkpoint, tasks=(args.task,)), trained)
    env = GymEmbodiment(registry.make(args.task, **opts))
    policy = load_policy(pretrained_dir(args.checkpoint), expect_spec=env.spec)
    policy = policy.eval() if hasattr(policy, "eval") else policy
    hold = getattr(getattr(policy, "config", None), "correction_hold_steps", args.window)
    steps = args.lead + args.window
    moves, base_moves = {m: [] for m in MOTIONS}, {m: [] for m in MOTIONS}
    for i in range(args.seeds):
        seed = args.seed0 + i
        base = ee_track(Runner, env, policy, seed, steps, {})
        for text, direction in MOTIONS.items():
            d = np.asarray(direction, np.float64)
            corr = Correction(text, time=float(args.lead), source="simulated", payload={"language_motion": text})
            track = ee_track(Runner, env, policy, seed, steps, {args.lead: corr})
            end = min(len(track), len(base)) - 1
            if end <= args.lead:
                continue  # the episode ended (success) before the correction
            moves[text].append(float((track[end] - track[args.lead]) @ d))
            base_moves[text].append(float((base[end] - base[args.lead]) @ d))
    env.close()
    print(f"checkpoint {args.checkpoint}; task {args.task}; correction after {args.lead} ticks, held {hold} ticks, "
          f"measured over {args.window}")
    print(f"{'correction':22s}{'moved m':>10s}{'uncorrected m':>15s}{'obeyed':>9s}")
    obeyed, total, diffs, base_hits = 0, 0, [], 0
    for text in MOTIONS:
        m, b = np.array(moves[text]), np.array(base_moves[text])
        ok = int(np.sum(m - b > args.min_move))
        obeyed += ok
        total += len(m)
        base_hits += int(np.sum(b > args.min_move))
        diffs += list(m - b)
        print(f"{text:22s}{m.mean():10.3f}{b.mean():15.3f}{ok:5d}/{len(m)}")
    rate = obeyed / total if total else 0.0
    base_rate = base_hits / total if total else 0.0
    print(f"obeyed {obeyed}/{total} = {rate:.0%}; the uncorrected policy moves >{args.min_move} m that way in "
          f"{base_rate:.0%} of the same trials")
    print(json.dumps({"obeyed_rate": rate, "trials": total, "mean_move_m": float(np.mean(diffs)) if diffs else 0.0,
                      "uncorrected_rate": base_rate, "min_move_m": args.min_move, "task": args.task,
                      "hold_steps": hold, "checkpoint": args.checkpoint}))


if __name__ == "__main__":
    main()
