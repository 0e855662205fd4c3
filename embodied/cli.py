"""`embodied` command line: demo, collect, view, list, deploy, serve, estop, teleop, attach-locator (train and eval
own their parsers).

Every command's options come from dataclass configs (parsed by tyro), and
the config is saved next to what the command writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import tyro

from embodied.collect import CollectConfig
from embodied.demo import DemoConfig
from embodied.deploy import DeployConfig, EstopConfig, ServeConfig


def _save_config(cfg: object, path: Path) -> dict:
    from embodied.checkpoint import config_to_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    d = config_to_dict(cfg)
    path.write_text(json.dumps(d, indent=2))
    return d


def cmd_demo(cfg: DemoConfig) -> Path:
    from embodied.demo import run_demo

    return run_demo(cfg)


def cmd_collect(cfg: CollectConfig) -> None:
    from embodied.collect import collect
    from embodied.report import write_collection_report

    report_dir = cfg.out.parent / f"{cfg.out.name}_report"
    saved = _save_config(cfg, report_dir / "config.json")
    started = time.monotonic()
    stats = collect(cfg)
    already = sum(s.already for s in stats.values())
    if already:
        print(f"resumed: {already} episodes were already in {cfg.out} and were not collected again")
    if cfg.scenes_only:  # no expert ran: there is no success to report
        for s in stats.values():
            print(f"{s.task:40s} {s.attempted:6d} scenes, {sum(s.steps):7d} frames")
        print(f"scene dataset: {cfg.out} (config: {report_dir / 'config.json'})")
        return
    for s in stats.values():
        print(f"{s.task:40s} {s.succeeded:4d}/{s.attempted:<4d} {s.success_rate:6.1%}")
    print("report:", write_collection_report(report_dir, stats, cfg.out, seconds=time.monotonic() - started,
                                             config=saved))


@dataclasses.dataclass
class ViewConfig:
    """Render one episode of a dataset to MP4 (all cameras side by side, captioned)."""

    dataset: Path
    episode: int = 0
    out: Path | None = None


def cmd_view(cfg: ViewConfig) -> Path:
    from embodied.data import open_dataset, render_episode

    ds = open_dataset(cfg.dataset)
    if not 0 <= cfg.episode < ds.num_episodes:
        raise SystemExit(f"{cfg.dataset} has episodes 0..{ds.num_episodes - 1}; got --episode {cfg.episode}")
    out = cfg.out or cfg.dataset / f"episode_{cfg.episode:06d}.mp4"
    render_episode(ds.episode(cfg.episode), out)
    print(out)
    return out


@dataclasses.dataclass
class ListConfig:
    """List registered names (envs, policies, robots)."""

    kind: str | None = None
    prefix: str = ""


def cmd_list(cfg: ListConfig) -> None:
    from embodied import registry

    for name in registry.names(cfg.kind, cfg.prefix):
        e = registry.get(name)
        print(f"{e.kind:7s} {name:45s} {e.description}")


@dataclasses.dataclass
class AttachLocatorConfig:
    """Give a trained policy a trained locator: it then acts on the goal points the locator reads from its
    cameras, never on the simulator's, and carries the locator's weights in its own checkpoint."""

    policy: Path   # a run or checkpoint folder of a policy that reads goal points (MDT with hand_relative)
    locator: Path  # a run or checkpoint folder trained with --policy.stage locator
    out: Path      # the new checkpoint folder
    cameras: tuple[str, ...] = ()  # the locator's cameras whose estimates are fused (default: all)


def cmd_attach_locator(cfg: AttachLocatorConfig) -> Path:
    from embodied.checkpoint import load_policy
    from embodied.train_state import pretrained_dir

    policy = load_policy(pretrained_dir(cfg.policy))
    if not hasattr(policy, "carrying_locator"):
        raise SystemExit(f"{type(policy).__name__} cannot carry a locator (MDT can)")
    out = policy.carrying_locator(cfg.locator, cfg.cameras).save_pretrained(cfg.out)
    print(out)
    return out


# name -> (config dataclass, what runs it). Subcommands that own their own parser (train, eval)
# are handed the rest of the command line.
@dataclasses.dataclass
class TeleopConfig:
    """Record demonstrations by teleoperation (keyboard, desktop keyboard or SpaceMouse) into a dataset."""

    robot: str = "tabletop/reach-v0"  # a sim env name, a registered robot, or a robot .toml file
    dataset: Path = Path("data/teleop")
    episodes: int = 1
    device: str = "keyboard"  # keyboard (this terminal) | pynput (desktop keyboard) | spacemouse
    instruction: str | None = None  # the task recorded with each episode (default: the robot's or env's own)
    max_steps: int | None = None


def cmd_teleop(cfg: TeleopConfig) -> None:
    from embodied import registry

    registry.get("sim-twin", kind="robot")  # loads hardware's registration: a missing package is a clear error
    import importlib

    importlib.import_module("hardware.teleop").teleop_main(cfg.robot, str(cfg.dataset), cfg.episodes, cfg.device,
                                                           instruction=cfg.instruction, max_steps=cfg.max_steps)


def cmd_deploy(cfg: DeployConfig) -> None:
    from embodied.deploy import deploy

    deploy(cfg)


def cmd_serve(cfg: ServeConfig) -> None:
    from embodied.deploy import serve_robot

    serve_robot(cfg)


def cmd_estop(cfg: EstopConfig) -> None:
    from embodied.deploy import estop

    estop(cfg)


COMMANDS = {
    "demo": (DemoConfig, cmd_demo),
    "collect": (CollectConfig, cmd_collect),
    "view": (ViewConfig, cmd_view),
    "list": (ListConfig, cmd_list),
    "deploy": (DeployConfig, cmd_deploy),
    "serve": (ServeConfig, cmd_serve),
    "estop": (EstopConfig, cmd_estop),
    "teleop": (TeleopConfig, cmd_teleop),
    "attach-locator": (AttachLocatorConfig, cmd_attach_locator),
}


# Subcommands whose options depend on what is being trained or evaluated build their own parser.
PASSTHROUGH = {
    "train": ("embodied.train", "train a policy: embodied train <policy> --train.dataset ... --policy.* ..."),
    "eval": ("embodied.evaluate", "evaluate a checkpoint in simulation: embodied eval --checkpoint ... --tasks ..."),
}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        import importlib

        importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:])
        return
    if not argv or argv[0] in ("-h", "--help"):
        print("embodied train: " + PASSTHROUGH["train"][1])
        print("embodied eval:  " + PASSTHROUGH["eval"][1])
    configs = {name: cfg for name, (cfg, _) in COMMANDS.items()}
    cfg = tyro.extras.subcommand_cli_from_dict(configs, args=argv, description="embodied: train, deploy, correct.")
    for cfg_type, run in COMMANDS.values():
        if type(cfg) is cfg_type:
            run(cfg)
            return


if __name__ == "__main__":
    main()
