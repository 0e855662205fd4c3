"""How much reading where the objects are relative to the hand is worth, apart from finding them.

    python bench/hand_relative.py                                  # six block families, 50 demos each
    python bench/hand_relative.py --families pick,push --steps 1000 --episodes 10

A diagnostic, not a policy a robot could run: BC reads the simulator's exact
object positions (the tabletop's privileged `goal_points`: the named object
and where it must go), so that what it learns depends on how it reads them,
not on finding them in pixels. Per family, on the same 50 expert
demonstrations and the same steps, three state-only BC policies:

- absolute: the arm's state (joints, their velocities, the hand's pose, the
  gripper) and goal_points as world coordinates (`state_keys`), what MDT's
  state token reads;
- hand-relative: the arm's state and goal_points minus the hand's position
  (`BCConfig.hand_relative`), what MDT's `lift_points` tokens estimate from
  depth;
- offsets only: the gripper's opening and those offsets, no joints, no hand
  pose. The expert turns the hand to each layout's block and neighbours, so
  with the arm's state beside the offsets 50 demonstrations can be told apart
  by the arm alone, and the network can fit each demonstration's trajectory
  from it instead of learning from the offsets what carries over to a new
  layout. In scratch runs on stack (one training seed each, 50 unseen
  episodes) the gripper with the offsets scored 94% (94% with a second seed),
  with the hand's position added 90%, with its orientation (`ee_quat`) added
  42%.

With `--point-noise`, offsets only is also evaluated with each episode's
goal_points moved by a fixed random offset (TabletopConfig.goal_points_noise,
the std per axis in metres): a perception system's error, held for the
episode. That says how precisely a policy that finds the objects in pixels
must place them before reading them well is what limits it.

All train 15 000 steps and replan every 5 actions of their 10-action chunks
(on stack, 3 000 steps and whole chunks scored 3% of 30 unseen episodes, 15 000
steps 20%, 15 000 steps replanning every 5 actions 43%: the defaults are what
the policy needs, not what is quick; `--steps 30000` on all six families (one
training seed) gave means of 47% absolute and 60% hand-relative against 50% and
62% at 15 000, so more steps do not help). All are evaluated on the same unseen
seeds (from 10000). Prints a table and, as its LAST line, one JSON object: per
family each variant's success rate and the ratio of offsets only to absolute,
the means, and the settings. It writes bench/results/hand_relative.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BLOCK_FAMILIES = ("pick", "place", "push", "stack", "put-in-drawer", "move-next-to")
ARM = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper")
EVAL_SEED0 = 10_000


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(BLOCK_FAMILIES))
    ap.add_argument("--demos", type=int, default=50, help="expert demonstrations per family")
    ap.add_argument("--steps", type=int, default=15_000, help="training steps per policy")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--execute-steps", type=int, default=5,
                    help="actions of each 10-action chunk executed before replanning (0: all 10)")
    ap.add_argument("--episodes", type=int, default=50, help="evaluation episodes per family (unseen seeds)")
    ap.add_argument("--point-noise", default="0.005,0.01,0.02",
                    help="comma-separated stds (m) of the per-episode goal_points error offsets only is also "
                         "evaluated under ('' for none)")
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench_hand_relative")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from embodied.collect import CollectConfig, collect
    from embodied.evaluate import EvalConfig, evaluate
    from embodied.train import TrainConfig, train_to
    from policies.bc.configuration import BCConfig

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    try:
        sigmas = [float(v) for v in args.point_noise.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--point-noise takes comma-separated stds in metres (e.g. 0.01,0.02), got {args.point_noise!r}")
    if any(not v > 0 for v in sigmas):
        ap.error(f"--point-noise stds must be > 0 m, got {sigmas}")
    unknown = sorted(set(families) - set(BLOCK_FAMILIES))
    if unknown:
        ap.error(f"not block families: {unknown}; choose from {BLOCK_FAMILIES}")
    if args.demos > EVAL_SEED0:
        ap.error(f"--demos {args.demos} would reach the evaluation seeds (from {EVAL_SEED0})")
    common = {"cameras": (), "language": "concat", "n_action_steps": args.execute_steps or None}
    variants = {"absolute": BCConfig(state_keys=(*ARM, "goal_points"), **common),
                "hand_relative": BCConfig(state_keys=ARM, hand_relative=("goal_points",), **common),
                "offsets_only": BCConfig(state_keys=("gripper",), hand_relative=("goal_points",), **common)}

    def success(checkpoint: Path, task: str, out: Path, **env_kwargs) -> float:
        info = evaluate(EvalConfig(checkpoint=str(checkpoint), tasks=(task,), episodes=args.episodes,
                                   seed0=EVAL_SEED0, cameras=(), videos=0, env_kwargs=env_kwargs, out=str(out)))
        return info["tasks"][task]["success_rate"]

    rates: dict[str, dict[str, float]] = {}
    noisy: dict[str, dict[str, float]] = {}  # family -> std (m, as text) -> offsets only's success under it
    minutes: dict[str, float] = {}
    t0 = time.perf_counter()
    for fam in families:
        task = f"tabletop/{fam}-v0"
        data = args.work / fam / "data"
        if not (data / "meta" / "info.json").exists():
            collect(CollectConfig(tasks=(task,), episodes_per_task=args.demos, cameras=(), out=data))
        rates[fam], runs = {}, {}
        for name, cfg in variants.items():
            run = runs[name] = f"{name}_{args.demos}demos_b{args.batch_size}_x{args.execute_steps or 'all'}"
            minutes[f"{fam}/{name}"] = train_to(TrainConfig(
                dataset=(str(data),), policy="bc", steps=args.steps, batch_size=args.batch_size,
                output_dir=str(args.work / fam / "runs"), name=run, save_every=args.steps,
                log_every=max(1, args.steps // 50)), cfg)
            rates[fam][name] = success(args.work / fam / "runs" / run, task, args.work / fam / f"eval_{name}")
        only = args.work / fam / "runs" / runs["offsets_only"]
        noisy[fam] = {f"{v:g}": success(only, task, args.work / fam / f"eval_noise{v:g}", goal_points_noise=v)
                      for v in sigmas}

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    print(f"\n{'family':16s}" + "".join(f"{name:>16s}" for name in variants) + f"{'ratio':>8s}"
          + "".join(f"{f'±{100 * v:g} cm':>10s}" for v in sigmas))
    for fam, r in rates.items():
        q = ratio(r["offsets_only"], r["absolute"])
        print(f"{fam:16s}" + "".join(f"{r[name]:16.0%}" for name in variants)
              + f"{q if q is not None else float('nan'):8.2f}" + "".join(f"{v:10.0%}" for v in noisy[fam].values()))
    mean = {name: sum(r[name] for r in rates.values()) / len(rates) for name in variants}
    result = {"families": {fam: {**r, "ratio": ratio(r["offsets_only"], r["absolute"])} for fam, r in rates.items()},
              **{f"mean_{name}": m for name, m in mean.items()},
              "ratio": ratio(mean["offsets_only"], mean["absolute"]),
              "point_noise": {"stds_m": sigmas, "families": noisy,
                              "mean": {f"{v:g}": sum(r[f"{v:g}"] for r in noisy.values()) / len(noisy)
                                       for v in sigmas}},
              "train_minutes": minutes, "wall_minutes": (time.perf_counter() - t0) / 60,
              "settings": {"demos_per_family": args.demos, "steps": args.steps, "batch_size": args.batch_size,
                           "execute_steps": args.execute_steps or variants["absolute"].action_horizon,
                           "episodes_per_family": args.episodes, "eval_seed0": EVAL_SEED0, "policy": "bc",
                           "state": {name: {"state_keys": list(cfg.state_keys), "hand_relative": list(cfg.hand_relative)}
                                     for name, cfg in variants.items()},
                           "cpu_count": os.cpu_count()}}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "hand_relative.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
