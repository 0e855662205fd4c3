"""Collect scripted-expert demonstrations into a dataset, in parallel; or scenes, for perception.

Each worker process owns its environments and runs the one `Runner` (safety
filter and language-motion labelling included) with the env's privileged
expert as the policy, recording into memory. The parent process owns the
single `DatasetWriter` and publishes finished episodes in a fixed order, so
a run with the same config writes the same dataset whatever the number of
workers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from embodied import registry


@dataclasses.dataclass
class CollectConfig:
    """tasks: registered env names, or a suite prefix such as "tabletop/" for all of it.
    episodes_per_task: demonstrations attempted per task (see `task_seeds`).
    cameras: camera names to record (None: the env's default cameras).
    workers: parallel environment processes. keep_failures: also write
    episodes where the expert failed (flagged success=False).
    goals_per_layout: > 1 demonstrates each scene with that many goals
    (consecutive seeds share a layout; tabletop envs), so that a policy must
    read the instruction to tell them apart. It trades distinct scenes for
    instructions: for the same number of demos there are n times fewer scenes.
    distinct_scenes: each task gets its own block of seeds (task k of n:
    seed + k*episodes_per_task ..). Envs of one suite draw the same layout
    from the same seed, so without it nine tabletop families on seeds 0..49
    show the same few scenes nine times over; with it, 450 scenes.
    scenes_only: record scenes, not demonstrations. Each seed is reset and
    recorded for `scene_frames` ticks of a held random action (the first
    frame is the scene as an episode starts), into a dataset flagged as
    not demonstrations (`DatasetWriter(demonstrations=False)`): training
    reads its images, instructions and privileged state (MDT's
    localisation), and never imitates its actions. Rendering scenes costs
    a reset each, far less than a demonstration, and shows a policy many
    more layouts than its demonstrations do.
    depth: also record each camera's depth image and calibration per frame
    (`DatasetWriter(depth=True)`), which MDT's `lift_points` reads.

    Collecting into a dataset that exists resumes it: every episode records
    its env and seed, and the (env, seed) pairs already there are not run
    again, so a killed collection restarted with the same config ends with
    the dataset an uninterrupted one writes. (Seeds whose expert failed were
    not recorded and run again; they fail again, only costing time.)"""

    tasks: tuple[str, ...] = ("tabletop/",)
    episodes_per_task: int = 5
    out: Path = Path("outputs/demo/data")
    workers: int = 2
    seed: int = 0
    cameras: tuple[str, ...] | None = None
    image_size: int = 128
    keep_failures: bool = False
    goals_per_layout: int = 1
    distinct_scenes: bool = True
    scenes_only: bool = False
    scene_frames: int = 1
    depth: bool = False

    def task_seeds(self, k: int) -> range:
        """Seeds of the demonstrations attempted for the k-th task (in `resolve_tasks` order)."""
        start = self.seed + (k * self.episodes_per_task if self.distinct_scenes else 0)
        return range(start, start + self.episodes_per_task)

    def first_unused_seed(self, n_tasks: int) -> int:
        """The lowest seed above every demonstration's seed: where evaluation on unseen scenes can start."""
        return self.task_seeds(n_tasks - 1).stop if n_tasks else self.seed


@dataclasses.dataclass
class TaskStats:
    task: str
    attempted: int = 0
    succeeded: int = 0
    steps: list[int] = dataclasses.field(default_factory=list)
    interventions: int = 0
    episode_indices: list[int] = dataclasses.field(default_factory=list)  # where its episodes went in the dataset
    already: int = 0  # its episodes the dataset held before this collection (a resumed one), not run again

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attempted if self.attempted else 0.0


def resolve_tasks(patterns: tuple[str, ...]) -> list[str]:
    """Expand suite prefixes ("tabletop/") into registered env names; keep exact names."""
    out: list[str] = []
    for p in patterns:
        if p.endswith("/"):
            found = registry.names("env", prefix=p)
            if not found:
                raise ValueError(f"no registered env starts with {p!r}; run `embodied list` to see them")
            out.extend(found)
        else:
            registry.get(p, "env")
            out.append(p)
    return list(dict.fromkeys(out))


def env_kwargs(cfg: CollectConfig) -> dict[str, Any]:
    """Options every sim env in this repository takes: `cameras` and `image_size` (h, w)."""
    kwargs: dict[str, Any] = {"image_size": (cfg.image_size, cfg.image_size)}
    if cfg.cameras is not None:
        kwargs["cameras"] = tuple(cfg.cameras)
    if cfg.goals_per_layout != 1:  # only envs that share scenes between seeds take it (tabletop)
        kwargs["goals_per_layout"] = cfg.goals_per_layout
    return kwargs


# --- worker side -------------------------------------------------------------

_WORKER_ENVS: dict[str, Any] = {}
_WORKER_KWARGS: dict[str, Any] = {}
_WORKER_SCENE_FRAMES: list[int | None] = [None]  # ticks per scene, or None: demonstrations


def _init_worker(kwargs: dict[str, Any], frames: int | None = None) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    _WORKER_KWARGS.clear()  # a collection in this process must not inherit the last one's cameras or sizes
    _WORKER_KWARGS.update(kwargs)
    _WORKER_SCENE_FRAMES[0] = frames


def _close_worker_envs() -> None:
    while _WORKER_ENVS:
        _WORKER_ENVS.popitem()[1].close()


def _run_one(job: tuple[str, int]) -> tuple[str, int, Any, int]:
    """Run the expert (or, for a scene, a held random action) for (task, seed);
    returns (task, seed, RecordedEpisode, interventions)."""
    from embodied.episode import EpisodeBuffer
    from embodied.expert import ExpertPolicy, RandomPolicy
    from embodied.runner import Runner, RunnerConfig
    from embodied.sim import make_embodiment

    task, seed = job
    emb = _WORKER_ENVS.get(task)
    if emb is None:
        emb = _WORKER_ENVS[task] = make_embodiment(task, **_WORKER_KWARGS)
    frames = _WORKER_SCENE_FRAMES[0]
    if frames is None:
        runner = Runner(emb, ExpertPolicy(emb), recorder=EpisodeBuffer())
    else:
        runner = Runner(emb, RandomPolicy(emb.spec, seed, hold_steps=frames), recorder=EpisodeBuffer(),
                        config=RunnerConfig(max_steps=frames))
    result = runner.run_episode(seed=seed)
    episode = result.recorded
    episode.meta.update(seed=seed, env=task, spec=emb.spec)
    return task, seed, episode, result.interventions


def run_jobs(jobs: list[tuple[str, int]], kwargs: dict[str, Any], workers: int,
             scene_frames: int | None = None) -> Iterator[tuple[str, int, Any, int]]:
    """Yield finished episodes in job order, from `workers` processes (1 = in this process);
    scene_frames: record scenes of that many ticks instead of expert demonstrations."""
    if workers <= 1:
        _init_worker(kwargs, scene_frames)
        try:
            for job in jobs:
                yield _run_one(job)
        finally:  # the envs were made with this call's kwargs: none may serve the next collection
            _close_worker_envs()
        return
    # spawn, not fork: MuJoCo's EGL contexts do not survive a fork.
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(kwargs, scene_frames)) as pool:
        yield from pool.imap(_run_one, jobs, chunksize=1)


# --- parent side ---------------------------------------------------------------


def recorded_sources(root: Path) -> set[tuple[str, int]]:
    """The (env, seed) of every episode in the dataset at `root` (empty when there is none)."""
    from embodied.data import DatasetError, open_dataset
    from embodied.data import format as fmt

    if not (Path(root) / fmt.INFO_PATH).exists():
        return set()
    sources = open_dataset(root).episode_sources
    unknown = sum(env is None or seed is None for env, seed in sources)
    if unknown:
        raise DatasetError(f"{root} holds {unknown} episodes that do not record their env and seed (recorded by hand, "
                           "or before datasets kept them), so a collection cannot tell which it would repeat; "
                           "collect into a new folder (--out)", root)
    return {(str(env), int(seed)) for env, seed in sources}


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, TaskStats]:
    """Run the experts and write successful episodes to `cfg.out` (or, with `scenes_only`, every scene).
    Returns per-task stats."""
    from embodied.data import DatasetWriter

    if cfg.scene_frames < 1:
        raise ValueError(f"scene_frames must be >= 1 (ticks recorded per scene), got {cfg.scene_frames}")
    tasks = resolve_tasks(cfg.tasks)
    recorded = recorded_sources(cfg.out)
    wanted = [(t, seed) for k, t in enumerate(tasks) for seed in cfg.task_seeds(k)]
    jobs = [job for job in wanted if job not in recorded]
    stats = {t: TaskStats(t, already=sum((t, seed) in recorded for seed in cfg.task_seeds(k)))
             for k, t in enumerate(tasks)}
    writer = None
    bar = tqdm(total=len(wanted), initial=len(wanted) - len(jobs), unit="ep", disable=not progress,
               desc=("rendering scenes" if cfg.scenes_only else "collecting") + (" (resumed)" if recorded else ""))
    frames = cfg.scene_frames if cfg.scenes_only else None
    try:
        # Nothing left to do (a finished collection run again) starts no worker processes.
        for task, _seed, episode, interventions in (run_jobs(jobs, env_kwargs(cfg), cfg.workers, frames)
                                                    if jobs else ()):
            s = stats[task]
            s.attempted += 1
            s.succeeded += int(episode.success)
            s.steps.append(len(episode))
            s.interventions += interventions
            if episode.success or cfg.keep_failures or cfg.scenes_only:
                if writer is None:
                    spec = episode.meta["spec"]
                    writer = DatasetWriter(cfg.out, spec, fps=spec.control_hz, robot_type=spec.name,
                                           demonstrations=not cfg.scenes_only, depth=cfg.depth)
                s.episode_indices.append(episode.write_to(writer))
            if cfg.scenes_only:  # a scene has no goal to reach
                bar.set_postfix(task=task.split("/")[-1])
            else:
                bar.set_postfix(task=task.split("/")[-1], success=f"{sum(x.succeeded for x in stats.values())}/"
                                                                  f"{sum(x.attempted for x in stats.values())}")
            bar.update()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return stats
