"""Small made-up embodiments and episodes, for tests and examples (no simulator needed).

Images are smooth moving gradients, so video compression keeps them close to
the originals; state and actions are deterministic functions of (episode, t),
so a test can recompute what it wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embodied.types import ActionSpec, CameraSpec, Correction, EmbodimentSpec, Observation


def synthetic_spec(cameras: tuple[str, ...] = ("front", "wrist"), size: int = 32, rate_hz: float = 10.0,
                   name: str = "synthetic-arm") -> EmbodimentSpec:
    """A 7-joint arm with `cameras` of size x size pixels and the default ee_delta action space."""
    return EmbodimentSpec(
        name=name,
        cameras=tuple(CameraSpec(c, size, size, depth=False) for c in cameras),
        state={"joint_pos": 7, "ee_pos": 3, "ee_quat": 4, "gripper": 1},
        action=ActionSpec.ee_delta(max_translation=0.02, max_rotation=0.1, rate_hz=rate_hz),
    )


def synthetic_image(height: int, width: int, t: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a smooth colour gradient that drifts with t."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = 0.3 * t + seed
    # Under a quarter period across the image: smooth enough for yuv420p's half-resolution colour.
    r = 128 + 80 * np.sin(0.4 * np.pi * x / width + phase)
    g = 128 + 80 * np.cos(0.4 * np.pi * y / height - 0.5 * phase)
    b = np.full_like(x, 40 + (37 * seed) % 180)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def synthetic_observation(spec: EmbodimentSpec, t: int, episode: int = 0) -> Observation:
    """Frame t of a made-up episode: deterministic state with irrational-looking float32 values."""
    rng = np.random.default_rng(1000 * episode + t)
    state = {k: rng.standard_normal(d).astype(np.float32) for k, d in spec.state.items()}
    state["gripper"] = np.array([0.5 + 0.5 * np.cos(0.2 * t)], np.float32)
    images = {c.name: synthetic_image(c.height, c.width, t, seed=episode * 7 + i) for i, c in enumerate(spec.cameras)}
    return Observation(images=images, state=state, instruction=None, timestamp=t / spec.control_hz)


def synthetic_action(spec: EmbodimentSpec, t: int, episode: int = 0) -> np.ndarray:
    """(D,) float32 inside the spec's bounds."""
    rng = np.random.default_rng(10_000 + 1000 * episode + t)
    return rng.uniform(spec.action.low_array, spec.action.high_array).astype(np.float32)


def record_synthetic_episode(writer, episode: int, length: int, task: str, success: bool = True) -> int:
    """Record one made-up episode through a DatasetWriter, with labels and a correction at frame 1."""
    writer.start_episode(task)
    for t in range(length):
        corrections = [Correction("a bit more to the left", time=t / writer.fps, payload={"dy": 0.01})] if t == 1 else []
        writer.add_frame(
            synthetic_observation(writer.spec, t, episode),
            synthetic_action(writer.spec, t, episode),
            language_motion=f"move arm {'left' if t % 2 else 'forward'}",
            subtask=f"step {t // 5} of {task}",
            corrections=corrections,
        )
    return writer.end_episode(success=success)


def write_synthetic_dataset(root: str | Path, num_episodes: int = 3, length: int = 12,
                            spec: EmbodimentSpec | None = None,
                            tasks: tuple[str, ...] = ("pick up the red cube", "open the drawer"),
                            demonstrations: bool = True) -> Path:
    """A small complete dataset at `root` (episode i does tasks[i % len(tasks)]; odd episodes fail);
    demonstrations=False makes it a scene dataset (see DatasetWriter)."""
    from embodied.data.writer import DatasetWriter

    with DatasetWriter(root, spec or synthetic_spec(), demonstrations=demonstrations) as w:
        for i in range(num_episodes):
            record_synthetic_episode(w, w.num_episodes, length, tasks[i % len(tasks)], success=i % 2 == 0)
    return Path(root)


def write_located_dataset(root: str | Path, num_episodes: int = 2, length: int = 12,
                          task: str = "touch the red cube") -> Path:
    """Like `write_synthetic_dataset`, with privileged state: "goal_points" (1,) = 0.3·t, the phase by which
    the images drift, so it can be read off the frames as a simulator's object position can."""
    import dataclasses

    from embodied.data.writer import DatasetWriter

    base = synthetic_spec()
    spec = dataclasses.replace(base, state=dict(base.state) | {"goal_points": 1}, privileged=("goal_points",))
    with DatasetWriter(root, spec) as w:
        for episode in range(num_episodes):
            w.start_episode(task)
            for t in range(length):
                obs = synthetic_observation(spec, t, episode)
                obs.state["goal_points"] = np.array([0.3 * t], np.float32)
                w.add_frame(obs, synthetic_action(spec, t, episode))
            w.end_episode(success=True)
    return Path(root)
