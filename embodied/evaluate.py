"""Evaluate a trained policy: N seeded episodes per task in parallel envs, success with 95% CIs, videos.

    from embodied.evaluate import EvalConfig, evaluate
    info = evaluate(EvalConfig(checkpoint="runs/mdt-...", tasks=("tabletop/",), episodes=50, num_envs=4))

or `python -m embodied.evaluate --checkpoint runs/mdt-... --tasks tabletop/ --episodes 50`.

Episode i of every task runs with seed `seed0 + i` whatever the number of
envs, through the one `Runner` (safety filter included) driving a
`VectorEmbodiment`; the policy answers all envs that need a new chunk in one
batched call. The output folder holds

    eval_info.json     per task: episodes, successes, success_rate, ci95 [lo, hi] (Wilson), mean_steps,
                       per-episode seeds/outcomes/steps/action_digests, videos; plus mean_success, config,
                       checkpoint, wall time. Two evaluations acted identically where their action digests
                       match (the videos are lossy H.264, and x264 does not always give the same bytes twice)
    success.png        success rate per task with the 95% intervals
    videos/<task>_seed<k>_<success|failure>.mp4   a few rollouts per task, every camera side by side
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from embodied.types import EmbodimentSpec, Observation

EVAL_INFO = "eval_info.json"
FORMAT = 1


@dataclasses.dataclass
class EvalConfig:
    """What to evaluate and how.

    checkpoint: a pretrained-policy folder, a checkpoint step folder or a
    training run folder (its last checkpoint). tasks: registered env names or
    suite prefixes ("tabletop/"). episodes: per task, seeds seed0 ..
    seed0+episodes-1. num_envs: parallel env processes (per task).
    max_steps: cap on control ticks per episode (None: the env's own limit).
    videos: rollouts saved per task and outcome (that many successes and
    that many failures, the first to finish). image_size (h, w) and cameras:
    env options (None: what the checkpoint was trained on). env_kwargs: any
    other env options. device: where the policy runs ("cpu", "cuda").
    execute_steps: actions of each predicted chunk executed before the
    policy replans (None: what its config says, e.g. MDT's execute_steps):
    replanning more often trades speed for closed-loop precision, with no
    retraining.
    """

    checkpoint: str = ""
    tasks: tuple[str, ...] = ("tabletop/",)
    episodes: int = 10
    num_envs: int = 2
    seed0: int = 0
    max_steps: int | None = None
    videos: int = 1
    out: str = "outputs/eval"
    image_size: tuple[int, int] | None = None
    cameras: tuple[str, ...] | None = None
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str = "cpu"
    execute_steps: int | None = None
    progress: bool = True

    def check(self) -> None:
        if not self.checkpoint:
            raise ValueError("no checkpoint given: pass --checkpoint PATH (a run folder or a pretrained_model folder)")
        if self.episodes < 1 or self.num_envs < 1 or self.videos < 0:
            raise ValueError(f"need episodes >= 1, num_envs >= 1 and videos >= 0; got {self.episodes}, "
                             f"{self.num_envs}, {self.videos}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None (the env's limit), got {self.max_steps}")
        if self.execute_steps is not None and self.execute_steps < 1:
            raise ValueError(f"execute_steps must be >= 1 or None (the policy's own), got {self.execute_steps}")


# ----------------------------------------------------------------------------- videos


def side_by_side(obs: Observation) -> np.ndarray:
    """(H, sum of W, 3) uint8: every camera image of `obs` left to right (shorter ones padded at the bottom)."""
    images = [obs.images[c] for c in sorted(obs.images)]
    if not images:
        raise ValueError("the observation has no camera images to make a video of; evaluate with cameras")
    h = max(i.shape[0] for i in images)
    return np.concatenate([np.pad(i, ((0, h - i.shape[0]), (0, 0), (0, 0))) for i in images], axis=1)


class _VideoQuota:
    """How many more success and failure videos a task still wants."""

    def __init__(self, per_outcome: int):
        self.left = {True: per_outcome, False: per_outcome}

    def open(self) -> bool:
        return any(v > 0 for v in self.left.values())

    def take(self, success: bool) -> bool:
        if self.left[success] <= 0:
            return False
        self.left[success] -= 1
        return True


class _VideoRecorder:
    """A runner recorder keeping one slot's frames while its task still wants a video.

    end_episode returns the (T, H, W', 3) frames when the quota takes this
    outcome, else None.
    """

    def __init__(self, quota: _VideoQuota):
        self.quota = quota
        self.frames: list[np.ndarray] | None = None

    def start_episode(self, task: str) -> None:
        self.frames = [] if self.quota.open() else None

    def add_frame(self, obs: Observation, action: np.ndarray, **_: Any) -> None:
        if self.frames is not None:
            self.frames.append(side_by_side(obs))

    def end_episode(self, success: bool) -> np.ndarray | None:
        frames, self.frames = self.frames, None
        if not frames or not self.quota.take(bool(success)):
            return None
        return np.stack(frames)

    def discard_episode(self) -> None:
        self.frames = None


# ----------------------------------------------------------------------------- policy and envs


def checkpoint_spec(checkpoint: str | Path) -> tuple[Path, EmbodimentSpec]:
    """(pretrained folder, the EmbodimentSpec it was trained on) of a run, step or pretrained folder."""
    from embodied.checkpoint import SPEC_FILE, CheckpointError
    from embodied.train_state import pretrained_dir, read_json

    folder = pretrained_dir(checkpoint)
    try:
        spec = EmbodimentSpec.from_dict(read_json(folder / SPEC_FILE))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(folder / SPEC_FILE, f"not a valid embodiment spec ({e})") from e
    return folder, spec


def env_options(cfg: EvalConfig, trained: EmbodimentSpec) -> dict[str, Any]:
    """Env kwargs: the checkpoint's cameras and image size unless the config names others."""
    opts: dict[str, Any] = {}
    cameras = cfg.cameras if cfg.cameras is not None else trained.camera_names
    opts["cameras"] = tuple(cameras)
    if cfg.image_size is not None:
        opts["image_size"] = tuple(cfg.image_size)
    elif trained.cameras:
        opts["image_size"] = (trained.cameras[0].height, trained.cameras[0].width)
    return opts | dict(cfg.env_kwargs)


def prepare_policy(policy: Any, num_envs: int, execute_steps: int | None = None) -> Any:
    """The policy as the runner should drive it: with act_batch for several envs when it can be batched.

    execute_steps: actions of each chunk to execute before replanning (None: the policy's own setting);
    only a policy driven through `BatchedPolicy` can be given another.
    """
    batchable = hasattr(policy, "predict") and hasattr(policy, "data_requirements")
    batched = (not hasattr(policy, "act_batch") and batchable
               and int(policy.data_requirements().get("obs_horizon", 1)) == 1)
    if execute_steps is not None and not batched:
        raise ValueError(f"execute_steps={execute_steps}: {type(policy).__name__} chooses its own replanning here "
                         "(it has its own act_batch, or no predict(), or looks at more than one frame); "
                         "leave execute_steps unset or change it in the policy's config")
    if hasattr(policy, "act_batch"):
        return policy
    if batched:
        from embodied.batching import BatchedPolicy

        return BatchedPolicy(policy, execute_steps)
    if num_envs > 1:
        raise ValueError(f"{type(policy).__name__} cannot act for several envs at once (it has no act_batch, or it "
                         "needs more than one frame of history): evaluate it with num_envs=1")
    return policy


# ----------------------------------------------------------------------------- evaluation


def seed_sampling(seed: int) -> None:
    """Seed the global RNGs a policy samples from (numpy's, and torch's when it is loaded), so that a task's
    rollouts repeat: the same checkpoint, seeds and num_envs give the same episodes, whatever ran before."""
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the evaluation `config` describes; writes eval_info.json, success.png and videos; returns the info."""
    from tqdm import tqdm

    from embodied.checkpoint import load_policy
    from embodied.collect import resolve_tasks
    from embodied.data import write_mp4
    from embodied.runner import EpisodeJob, Runner, RunnerConfig
    from embodied.stats_ci import wilson_interval
    from embodied.vector import VectorEmbodiment

    cfg = config
    cfg.check()
    started = time.monotonic()
    folder, trained = checkpoint_spec(cfg.checkpoint)
    tasks = resolve_tasks(tuple(cfg.tasks))
    out = Path(cfg.out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    options = env_options(cfg, trained)
    num_envs = min(cfg.num_envs, cfg.episodes)
    jobs = [EpisodeJob(seed=cfg.seed0 + i) for i in range(cfg.episodes)]
    policy, per_task = None, {}
    bar = tqdm(total=len(tasks) * cfg.episodes, desc="evaluating", unit="ep", disable=not cfg.progress)
    wins = 0
    try:
        for task in tasks:
            with VectorEmbodiment(task, num_envs, options) as envs:
                if policy is None:
                    policy = load_policy(folder, expect_spec=envs.spec)
                    if hasattr(policy, "to"):
                        policy = policy.to(cfg.device).eval()
                    driven = prepare_policy(policy, num_envs, cfg.execute_steps)
                quota = _VideoQuota(cfg.videos)
                recorders = [_VideoRecorder(quota) for _ in range(num_envs)]
                runner = Runner(envs, driven, recorder=recorders,
                                config=RunnerConfig(max_steps=cfg.max_steps, label_motions=False))
                videos: list[str] = []

                def done(job: int, result: Any, task: str = task, videos: list[str] = videos) -> None:
                    nonlocal wins
                    wins += int(result.success)
                    if result.recorded is not None:
                        name = f"{_slug(task)}_seed{result.seed}_{'success' if result.success else 'failure'}.mp4"
                        write_mp4(out / "videos" / name, result.recorded, fps=envs.spec.control_hz)
                        videos.append(f"videos/{name}")
                    bar.set_postfix(task=task.split("/")[-1], success=f"{wins}/{bar.n + 1}")
                    bar.update()

                seed_sampling(cfg.seed0)  # after loading: a task's rollouts never depend on what ran before
                results = runner.run_episodes(jobs, on_result=done)
            successes = sum(r.success for r in results)
            lo, hi = wilson_interval(successes, len(results))
            per_task[task] = {
                "episodes": len(results),
                "successes": successes,
                "success_rate": successes / len(results),
                "ci95": [lo, hi],
                "mean_steps": float(np.mean([r.steps for r in results])),
                "instruction": results[0].instruction,
                "seeds": [r.seed for r in results],
                "outcomes": [bool(r.success) for r in results],
                "steps": [r.steps for r in results],
                "action_digests": [r.action_digest for r in results],
                "videos": sorted(videos),
            }
    finally:
        bar.close()
    info = {
        "format": FORMAT,
        "checkpoint": str(folder),
        "embodiment": trained.name,
        "tasks": per_task,
        "mean_success": float(np.mean([t["success_rate"] for t in per_task.values()])),
        "episodes": sum(t["episodes"] for t in per_task.values()),
        "num_envs": num_envs,
        "wall_time_s": time.monotonic() - started,
        "config": _jsonable(dataclasses.asdict(cfg)),
    }
    (out / EVAL_INFO).write_text(json.dumps(info, indent=1))
    plot_success(info, out / "success.png")
    return info


def _slug(task: str) -> str:
    return task.replace("/", "_")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def plot_success(info: dict[str, Any], path: str | Path) -> Path:
    """Bar plot of success rate per task with 95% CI error bars, and the mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(info["tasks"])
    rates = np.array([info["tasks"][n]["success_rate"] for n in names])
    ci = np.array([info["tasks"][n]["ci95"] for n in names]).reshape(-1, 2)
    err = np.stack([rates - ci[:, 0], ci[:, 1] - rates])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.5))
    x = np.arange(len(names))
    ax.bar(x, rates, yerr=err, capsize=3, color="tab:blue", alpha=0.8)
    ax.axhline(info["mean_success"], color="tab:red", ls="--", lw=1, label=f"mean {info['mean_success']:.0%}")
    ax.set_xticks(x, [n.split("/")[-1] for n in names], rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% CI)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m embodied.evaluate --checkpoint PATH [--tasks ...] [--episodes N] [--num-envs B] ...`."""
    import tyro

    cfg = tyro.cli(EvalConfig, args=argv)
    info = evaluate(cfg)
    for task, r in info["tasks"].items():
        lo, hi = r["ci95"]
        print(f"{task:40s} {r['successes']:3d}/{r['episodes']:<3d} {r['success_rate']:6.1%}  "
              f"[{lo:.1%}, {hi:.1%}]  {r['mean_steps']:.0f} steps")
    print(f"mean success {info['mean_success']:.1%} over {len(info['tasks'])} tasks -> {Path(cfg.out) / EVAL_INFO}")
    return info


if __name__ == "__main__":
    main()
