"""Success of MDT-small on the single-step tabletop families, with and without MGF + CLA.

    python bench/success.py                       # the issue's protocol: 50 demos/task, 50 episodes/task
    python bench/success.py --demos 20 --episodes 20 --steps 1500 --families reach,open-drawer
    python bench/success.py --scenes 2000 --policy localisation_weight=1.0   # + rendered scenes for perception
    python bench/success.py --scenes 3000 --pretrain-steps 4000 --policy goal_film=true   # + perception stage
    python bench/success.py --camera-size 128 --scenes 1000 --locator-steps 4000 \
        --policy 'state_keys=["gripper"]' --policy 'hand_relative=["goal_points"]' \
        --policy hand_relative_noise=0.005 --policy random_shift=0   # + a locator the policies act on

1. Collects `--demos` expert demonstrations per family, each family on its
   own seeds (so its own scenes: CollectConfig.distinct_scenes). With
   `--scenes N`, also renders N scenes per family with no demonstration
   (CollectConfig.scenes_only, seeds from 100000): training reads their
   images, instructions and privileged state, never imitates their
   actions. They are data the peers' protocol does not have, and the JSON
   states how many.
2. With `--pretrain-steps N`, first trains MDT's perception stage
   (MDTConfig.stage="perception": camera CNNs + language-goal MLP learn to
   place the named object, no actions) for N steps on the same data, and
   starts every policy below from it (perception_init).
   Trains MDT-small twice with the one training loop: full (MGF + CLA) and the
   ablation without them, same data, same steps, same seed; with `--scratch`
   also the full model without the perception stage, to show what it adds.
   With `--locator-steps N`, first trains a locator (MDTConfig.stage="locator", policies/mdt/locator.py)
   for N steps on the demonstrations and scenes at `--camera-size`; the policies train on the
   demonstrations and the simulator's goal points, and each is evaluated carrying the locator
   (`<run>_located`), so that it acts on the points the locator reads from RGB-D.
3. Evaluates both on `--episodes` unseen seeds per task (from seed 10000) in
   parallel envs, and a uniformly random policy as the floor; and the full
   model on `--demo-seed-episodes` of its own demonstrations' seeds, so that
   a gap between fitting and generalising shows; and where the full model's
   first chunk heads, on `--heading-seeds` demo and unseen seeds per task
   (bench/heading.py: a low-noise view of the same gap).
4. Prints a per-task table side by side (full, ablation, random, and the
   full/ablation ratio) and, as its LAST line, one JSON object with
   `mean_success`, `ablation_mean_success`, `random_mean_success`, the
   training time and the settings. eval_info.json files go to
   bench/results/success/ (full) and bench/results/success_ablation/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SINGLE_STEP = ("pick", "place", "push", "stack", "open-drawer", "close-drawer", "put-in-drawer", "reach",
               "move-next-to")
EVAL_SEED0 = 10_000
LOCATOR_LR = 1e-3  # a convolutional net from scratch: its first run, at the policies' 3e-4, had found nothing by step 750
SCENE_SEED0 = 100_000  # rendered perception scenes: far above every demonstration and evaluation seed


def random_policy_success(task: str, episodes: int) -> float:
    """Floor: uniformly random actions on the same evaluation seeds (state-only env)."""
    from embodied import registry

    env = registry.make(task, cameras=())
    rng = np.random.default_rng(0)
    ok = 0
    for i in range(episodes):
        env.reset(seed=EVAL_SEED0 + i)
        while True:
            a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
            _, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
        ok += bool(info["success"])
    env.close()
    return ok / episodes


def carry_locator(policy_run: Path, locator_run: Path, cameras: tuple[str, ...] = ()) -> Path:
    """The trained policy at `policy_run` carrying the locator at `locator_run` read through `cameras`
    (MDTPolicy.carrying_locator), saved beside it as `<policy_run>_located`."""
    from embodied.train_state import pretrained_dir
    from policies.mdt.policy import MDTPolicy

    out = policy_run.with_name(policy_run.name + "_located")
    MDTPolicy.from_pretrained(pretrained_dir(policy_run)).carrying_locator(locator_run, cameras).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demos", type=int, default=50, help="expert demonstrations per family")
    ap.add_argument("--goals-per-layout", type=int, default=1,
                    help="demonstrate each scene with this many goals (see CollectConfig.goals_per_layout)")
    ap.add_argument("--episodes", type=int, default=50, help="evaluation episodes per family")
    ap.add_argument("--steps", type=int, default=20_000, help="training steps per model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=64, help="image size the policy sees (pixels)")
    ap.add_argument("--camera-size", type=int, default=None,
                    help="size the cameras render and the data keeps (pixels; default: --image-size). Larger "
                         "than --image-size for a locator (--locator-steps), which reads the full frames")
    ap.add_argument("--scenes", type=int, default=0,
                    help="rendered scenes per family without demonstrations, for perception (0: none)")
    ap.add_argument("--scene-frames", type=int, default=1,
                    help="ticks recorded per rendered scene, the arm moving on a held random action after the first")
    ap.add_argument("--scene-share", type=float, default=None,
                    help="share of each batch from the rendered scenes (TrainConfig.scene_share; default: in "
                         "proportion to their frames)")
    ap.add_argument("--pretrain-steps", type=int, default=0,
                    help="steps of MDT's perception stage before the policies, which start from it (0: none)")
    ap.add_argument("--locator-steps", type=int, default=0,
                    help="train a locator (policies/mdt/locator.py) this many steps on the data and scenes, and "
                         "let every policy read the goal's points from it instead of the simulator")
    ap.add_argument("--locator-cameras", nargs="*", default=[],
                    help="the locator's cameras the policies read it through (default: all, fused by certainty)")
    ap.add_argument("--scratch", action="store_true",
                    help="with --pretrain-steps: also train and evaluate the full model without the perception stage")
    ap.add_argument("--families", default=",".join(SINGLE_STEP))
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench_success")
    ap.add_argument("--num-envs", type=int, default=2)
    ap.add_argument("--execute-steps", type=int, default=None,
                    help="actions of each chunk executed before replanning in evaluation (default: the policy's)")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--cache-frames", choices=("memory", "disk"), default="memory",
                    help="keep each run's decoded frames in RAM, or memory-mapped under the run folder, so that a "
                         "resumed run does not decode them again (minutes for thousands of scenes at 128 px)")
    ap.add_argument("--demo-seed-episodes", type=int, default=10,
                    help="also evaluate the full model on this many of its own demonstrations' seeds per task: "
                         "how well it fits what it saw, beside how well it generalises (0: skip)")
    ap.add_argument("--heading-seeds", type=int, default=30,
                    help="seeds per task (demo and unseen) for the first-chunk heading check (0: skip)")
    ap.add_argument("--policy", action="append", default=[], metavar="FIELD=VALUE",
                    help="override an MDTConfig field, e.g. --policy goal_film=true --policy cnn_widths=[32,64,64] "
                         "(VALUE is JSON, else a string); runs are named after the overrides")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="folder for success.json and the eval_info.json folders (default: bench/results)")
    args = ap.parse_args(argv)

    import torch
    from heading import heading_cosines, localisation_errors, pointing_errors, summary  # bench/, its own folder

    from embodied.collect import CollectConfig, collect
    from embodied.evaluate import EvalConfig, evaluate
    from embodied.train import TrainConfig, config_overrides, load_policy_class, train_to
    from policies.mdt.configuration import PERCEPTION_TRAINING_FIELDS

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the training loop takes the GPU when there is one

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(SINGLE_STEP))
    if unknown:
        ap.error(f"not single-step families: {unknown}; choose from {SINGLE_STEP}")
    tasks = tuple(f"tabletop/{f}-v0" for f in families)
    base = load_policy_class("mdt").config_class()
    if any(p.startswith("image_size=") for p in args.policy):
        ap.error("--policy image_size=...: use --image-size, which also sets the size demos are rendered at")
    try:
        overrides = config_overrides(base, args.policy)
    except ValueError as e:
        ap.error(f"--policy {e}")
    base = dataclasses.replace(base, image_size=(args.image_size, args.image_size), **overrides)
    data = args.work / "data"
    camera_size = args.camera_size or args.image_size
    ccfg = CollectConfig(tasks=tasks, episodes_per_task=args.demos, goals_per_layout=args.goals_per_layout,
                         image_size=camera_size, out=data, depth=base.lift_points or args.locator_steps > 0)
    if ccfg.first_unused_seed(len(tasks)) > EVAL_SEED0:
        ap.error(f"{args.demos} demos x {len(tasks)} families would use evaluation seeds (from {EVAL_SEED0})")
    if SCENE_SEED0 < EVAL_SEED0 + max(args.episodes, args.heading_seeds):
        ap.error(f"evaluation seeds from {EVAL_SEED0} would reach the rendered scenes' seeds ({SCENE_SEED0})")
    scenes = args.work / "scenes"
    scfg = dataclasses.replace(ccfg, episodes_per_task=args.scenes, seed=SCENE_SEED0, scenes_only=True,
                               scene_frames=args.scene_frames, out=scenes)
    from embodied import registry

    probe = registry.make(tasks[0], image_size=(camera_size, camera_size))
    state_keys = list(probe.embodiment_spec.state)  # data recorded before the env gained a state key is stale
    probe.close()
    wanted = {"tasks": list(tasks), "demos": args.demos, "goals_per_layout": args.goals_per_layout,
              "image_size": camera_size, "distinct_scenes": ccfg.distinct_scenes, "scenes": args.scenes,
              "scene_frames": args.scene_frames, "state_keys": state_keys}
    if ccfg.depth:  # only then, so that data recorded without depth still serves every other policy
        wanted["depth"] = True
    wanted["episode_sources"] = True  # data recorded before episodes kept their env and seed cannot be resumed
    made = args.work / "data_settings.json"
    if not made.exists() or json.loads(made.read_text()) != wanted:
        shutil.rmtree(args.work, ignore_errors=True)  # runs trained on other data are stale too
        args.work.mkdir(parents=True)
        made.write_text(json.dumps(wanted))
    # Cameras render at the policy's size: nothing to resize per step, and llvmpipe draws a quarter of the pixels.
    # A run killed while collecting resumes here: the episodes already recorded are not made again.
    collect(ccfg)
    if args.scenes:
        collect(scfg)
    datasets = (str(data), str(scenes)) if args.scenes else (str(data),)

    if args.scratch and not args.pretrain_steps:
        ap.error("--scratch compares against the perception stage: give --pretrain-steps too")

    # With a locator, the policies imitate on the demonstrations alone (the scenes hold no actions, and the
    # goal points they read are the simulator's while training); the locator reads the scenes.
    policy_datasets = (str(data),) if args.locator_steps else datasets

    def run_dir_of(name: str, *more: str, overrides: list[str] = args.policy, reads=datasets) -> Path:
        # Named by batch size, the one setting here a run cannot resume across; more --steps resumes it.
        scenes_tag = [f"scenes{args.scenes}x{args.scene_frames}"] if str(scenes) in reads else []
        return (args.work / "runs" / "_".join([f"{name}_b{args.batch_size}", *scenes_tag,
                                               *more, *overrides]).replace("/", "-"))

    def train_run(run_dir: Path, steps: int, policy_cfg, share: float | None, reads=datasets, **loop) -> float:
        return train_to(TrainConfig(dataset=reads, policy="mdt", steps=steps, batch_size=args.batch_size, **loop,
                                    scene_share=share, output_dir=str(run_dir.parent), name=run_dir.name,
                                    save_every=max(1, steps // 20), log_every=max(1, steps // 100),
                                    cache_frames=args.cache_frames), policy_cfg)

    minutes, run_dirs, perception = {}, {}, None
    if args.locator_steps:
        if args.pretrain_steps:
            ap.error("--locator-steps and --pretrain-steps: the locator replaces the perception stage; give one")
        if "goal_points" not in base.hand_relative:
            ap.error("--locator-steps: the policy must read the goal points the locator gives "
                     "(--policy 'hand_relative=[\"goal_points\"]')")
        locator_cfg = load_policy_class("mdt").config_class(stage="locator", language_tokens=True, random_shift=0,
                                                             image_size=(camera_size, camera_size))
        run_dirs["locator"] = run_dir_of("locator", overrides=[])
        minutes["locator"] = train_run(run_dirs["locator"], args.locator_steps, locator_cfg, None, lr=LOCATOR_LR)
    variants = {"full": base}
    if args.pretrain_steps:
        # Perception reads every frame alike (no demonstrations needed): no scene share.
        # Named by the settings it reads only, so that policies differing in the rest share one perception stage.
        reads = [p for p in args.policy if p.split("=")[0].replace("-", "_") in PERCEPTION_TRAINING_FIELDS]
        pre_dir = run_dirs["perception"] = run_dir_of("perception", overrides=reads)
        minutes["perception"] = train_run(pre_dir, args.pretrain_steps, dataclasses.replace(base, stage="perception"),
                                          None)
        variants = {"full": dataclasses.replace(base, perception_init=str(pre_dir))}
        if args.scratch:
            variants["scratch"] = base
    if not args.no_ablation:
        variants["ablation"] = dataclasses.replace(variants["full"], use_mgf=False, use_cla=False)
    share_tag = [f"share{args.scene_share:g}"] if args.scene_share is not None else []
    infos = {}
    for name, policy_cfg in variants.items():
        pre_tag = [f"pre{args.pretrain_steps}"] if policy_cfg.perception_init else []
        run_dir = run_dirs[name] = run_dir_of(name, *share_tag, *pre_tag, reads=policy_datasets)
        minutes[name] = train_run(run_dir, args.steps, policy_cfg, args.scene_share, reads=policy_datasets)
        if args.locator_steps:  # acts on the locator's points: the composed checkpoint is what is evaluated
            run_dir = run_dirs[name] = carry_locator(run_dir, run_dirs["locator"], tuple(args.locator_cameras))
        out = args.results / ("success" if name == "full" else f"success_{name}")
        infos[name] = evaluate(EvalConfig(checkpoint=str(run_dir), tasks=tasks, episodes=args.episodes,
                                          num_envs=args.num_envs, seed0=EVAL_SEED0, out=str(out), videos=1,
                                          device=device, execute_steps=args.execute_steps))
    floor = {t: random_policy_success(t, args.episodes) for t in tasks}
    seen = None
    # Seed s of a demo-seed run is that demo's scene and goal only when each scene had one goal.
    if args.demo_seed_episodes > 0 and args.goals_per_layout == 1:
        n = min(args.demo_seed_episodes, args.demos)
        rates = {t: evaluate(EvalConfig(checkpoint=str(run_dirs["full"]), tasks=(t,), episodes=n,
                                        num_envs=args.num_envs, seed0=ccfg.task_seeds(k).start,
                                        out=str(args.work / "eval_demo_seeds" / t.replace("/", "_")), videos=0,
                                        device=device, execute_steps=args.execute_steps))["tasks"][t]["success_rate"]
                 for k, t in enumerate(tasks)}
        seen = {"episodes_per_task": n, "mean_success": float(np.mean(list(rates.values()))), "tasks": rates}
    heading = None
    if args.heading_seeds > 0:
        n = args.heading_seeds
        ckpt = str(run_dirs["full"])
        heading = {t: {split: summary(heading_cosines(ckpt, t, seeds), localisation_errors(ckpt, t, seeds))
                       for split, seeds in (("demo", ccfg.task_seeds(k)[:n]),
                                            ("unseen", range(EVAL_SEED0, EVAL_SEED0 + n)))}
                   for k, t in enumerate(tasks)}
    if args.locator_steps:
        # How far the locator alone places the named object from where it is, on unseen scenes' first frames (cm).
        seeds = range(EVAL_SEED0, EVAL_SEED0 + max(args.heading_seeds, 10))
        located = {t: localisation_errors(str(run_dirs["full"]), t, seeds) for t in tasks}  # read as the policy reads it
        perception = {"stage": "locator", "steps": args.locator_steps, "unseen_seeds_per_task": len(seeds),
                      "localisation_cm": {t: 100 * float(np.mean(v["error"])) for t, v in located.items()},
                      "localisation_median_cm": {t: 100 * float(np.median(v["error"])) for t, v in located.items()},
                      "mean_guess_cm": {t: 100 * float(np.mean(v["mean_guess"])) for t, v in located.items()}}
    if args.pretrain_steps:
        # How well the perception stage alone places the named object on unseen scenes (cm), before any imitation.
        seeds = range(EVAL_SEED0, EVAL_SEED0 + max(args.heading_seeds, 10))
        located = {t: localisation_errors(str(run_dirs["perception"]), t, seeds) for t in tasks}
        perception = {"steps": args.pretrain_steps, "unseen_seeds_per_task": len(seeds),
                      "localisation_cm": {t: 100 * float(np.mean(v["error"])) for t, v in located.items()},
                      "mean_guess_cm": {t: 100 * float(np.mean(v["mean_guess"])) for t, v in located.items()}}
        pointed = {t: pointing_errors(str(run_dirs["perception"]), t, seeds) for t in tasks}
        if all(pointed.values()):  # goal_heatmaps: how far each camera's heat map points from the object (px)
            perception["pointing_px_median"] = {t: {cam: float(np.median(e)) for cam, e in v.items() if e}
                                                for t, v in pointed.items()}

    def rate(name: str, t: str) -> float:
        return infos[name]["tasks"][t]["success_rate"] if name in infos else float("nan")

    print(f"\n{'task':28s}{'MDT':>8s}{'no MGF/CLA':>12s}{'scratch':>9s}{'random':>8s}{'ratio':>8s}{'demo seeds':>12s}"
          f"{'heading demo/unseen':>21s}{'located (cm)':>14s}")
    for t in tasks:
        full, abl = rate("full", t), rate("ablation", t)
        ratio = full / abl if abl else (float("nan") if full == 0 else float("inf"))
        head = f"{heading[t]['demo']['mean_cosine']:.2f} / {heading[t]['unseen']['mean_cosine']:.2f}" if heading else "-"
        where = f"{perception['localisation_cm'][t]:.1f}" if perception else "-"
        print(f"{t:28s}{full:8.0%}{abl:12.0%}{rate('scratch', t):9.0%}{floor[t]:8.0%}{ratio:8.2f}"
              f"{seen['tasks'][t] if seen else float('nan'):12.0%}{head:>21s}{where:>14s}")
    result = {
        "mean_success": infos["full"]["mean_success"],
        "ablation_mean_success": infos["ablation"]["mean_success"] if "ablation" in infos else None,
        "random_mean_success": float(np.mean(list(floor.values()))),
        "ratio_vs_ablation": (infos["full"]["mean_success"] / infos["ablation"]["mean_success"]
                              if "ablation" in infos and infos["ablation"]["mean_success"] else None),
        "scratch_mean_success": infos["scratch"]["mean_success"] if "scratch" in infos else None,
        "perception": perception,
        "demo_seed_success": seen,
        "heading": heading,
        "train_minutes": minutes,
        "settings": {"policy_overrides": overrides, "demos_per_task": args.demos, "goals_per_layout": args.goals_per_layout,
                     "rendered_scenes_per_task": args.scenes, "frames_per_scene": args.scene_frames,
                     "scene_share": args.scene_share, "pretrain_steps": args.pretrain_steps,
                     "locator_steps": args.locator_steps, "locator_cameras": args.locator_cameras,
                     "camera_size": camera_size,
                     "episodes_per_task": args.episodes, "steps": args.steps,
                     "execute_steps": args.execute_steps,
                     "batch_size": args.batch_size, "image_size": args.image_size, "tasks": list(tasks),
                     "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "cpu_count": os.cpu_count()},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "success.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
