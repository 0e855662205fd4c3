"""The main job: collect expert demos -> train a policy -> evaluate it -> report.

`embodied demo` (and `make demo`) runs this on its built-in default: the
scripted experts of a few single-step tabletop families record a dataset,
MDT-small trains on it with the one training loop, the trained policy is
evaluated on fresh seeds in parallel envs, and `report.md` puts the expert
table, the loss curve, the success table (95% intervals) and rollout videos
in one place. Every stage shows progress; each writes its own folder under
`out`, so a stage's output can be inspected or reused:

    out/data/            LeRobotDataset v3.0 (stage 1)
    out/runs/<policy>/   training run: config, metrics, plots, checkpoints (stage 2)
    out/eval/            eval_info.json, success.png, videos (stage 3)
    out/report.md        the report (stage 4)

`--checkpoint PATH` skips training and evaluates that checkpoint instead
(the report says which one it used).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from embodied.collect import CollectConfig

# Three single-step families, so that MDT-small trained for ~12 minutes on a 2-core CPU learns
# something measurable (the last full run's figures: bench/results/demo.json, shown in the README).
DEMO_TASKS = ("tabletop/reach-v0", "tabletop/open-drawer-v0", "tabletop/close-drawer-v0")


@dataclasses.dataclass
class DemoConfig:
    """The built-in default job. The dataset goes to <out>/data (collect.out is ignored here).

    train_steps/batch_size/policy_image_size: the training run (MDT-small by default).
    eval_episodes: fresh seeds per task for evaluation (after the demo seeds).
    checkpoint: evaluate this checkpoint (a run or pretrained folder) instead of training.
    """

    out: Path = Path("outputs/demo")
    collect: CollectConfig = dataclasses.field(
        default_factory=lambda: CollectConfig(tasks=DEMO_TASKS, episodes_per_task=30)
    )
    policy: str = "mdt"
    train_steps: int = 3000
    batch_size: int = 32
    policy_image_size: tuple[int, int] = (64, 64)
    eval_episodes: int = 10
    num_envs: int = 2
    checkpoint: Path | None = None
    videos: int = 1


def _policy_config(name: str, image_size: tuple[int, int]) -> Any:
    from embodied.train import load_policy_class

    cfg = load_policy_class(name).config_class()
    if "image_size" in {f.name for f in dataclasses.fields(cfg)}:
        cfg = dataclasses.replace(cfg, image_size=tuple(image_size))
    return cfg


def run_demo(cfg: DemoConfig) -> Path:
    """Run the four stages; returns the path of report.md."""
    from embodied.checkpoint import config_to_dict
    from embodied.collect import collect
    from embodied.evaluate import EvalConfig, evaluate
    from embodied.report import write_demo_report
    from embodied.train import TrainConfig, train

    out = cfg.out
    data = out / "data"
    if (data / "meta").exists():
        raise SystemExit(f"{data} already holds a dataset; pass --out to a new folder or delete {out} first")
    ccfg = dataclasses.replace(cfg.collect, out=data)
    out.mkdir(parents=True, exist_ok=True)
    saved = config_to_dict(dataclasses.replace(cfg, collect=ccfg))
    (out / "config.json").write_text(json.dumps(saved, indent=2))
    timings: dict[str, float] = {}

    print("[1/4] collecting expert demonstrations", flush=True)
    t = time.monotonic()
    stats = collect(ccfg)
    timings["collect_s"] = time.monotonic() - t

    run: Path | None = None
    if cfg.checkpoint is None:
        print(f"[2/4] training {cfg.policy} for {cfg.train_steps} steps", flush=True)
        t = time.monotonic()
        run = train(
            TrainConfig(dataset=(str(data),), policy=cfg.policy, steps=cfg.train_steps, batch_size=cfg.batch_size,
                        output_dir=str(out / "runs"), name=cfg.policy, save_every=cfg.train_steps,
                        log_every=max(1, cfg.train_steps // 50)),
            _policy_config(cfg.policy, cfg.policy_image_size),
        )
        timings["train_s"] = time.monotonic() - t
        checkpoint = run
    else:
        print(f"[2/4] skipping training: evaluating {cfg.checkpoint}", flush=True)
        checkpoint = cfg.checkpoint

    print("[3/4] evaluating on fresh seeds", flush=True)
    t = time.monotonic()
    first_unseen = ccfg.first_unused_seed(len(stats))
    info = evaluate(EvalConfig(checkpoint=str(checkpoint), tasks=tuple(stats), episodes=cfg.eval_episodes,
                               num_envs=cfg.num_envs, seed0=first_unseen, out=str(out / "eval"),
                               videos=cfg.videos, image_size=(ccfg.image_size, ccfg.image_size)))
    timings["eval_s"] = time.monotonic() - t

    print("[4/4] writing the report", flush=True)
    report = write_demo_report(out, stats=stats, dataset_root=data, run_dir=run, checkpoint=Path(checkpoint),
                               eval_info=info, timings=timings, config=saved)
    print(f"report: {report}")
    return report
