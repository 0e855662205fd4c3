"""Per-episode randomisation: colours, lights, table tone, cabinet placement,
drawer opening and non-overlapping object poses. Writes model/data fields
only (no recompilation). Lengths in metres, angles in radians.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import mujoco
import numpy as np

from envs.tabletop.scene import _FURNITURE_TONES, _TABLE_TONES, PALETTE, Scene

# Where object centres may go (world x, y ranges), before the cabinet's side is excluded.
X_RANGE = (0.33, 0.64)
Y_RANGE = (-0.36, 0.36)
CABINET_X_RANGE = (0.60, 0.64)
CABINET_ABS_Y_RANGE = (0.28, 0.32)
CABINET_HALF_WIDTH = 0.11
HAND_HALF_SPAN = 0.115  # half the gripper's width across its fingers, plus a margin


def clear_of_cabinet(cabinet_xy: tuple[float, float], y: float) -> bool:
    """Whether a gripper working low over world y (m) stays clear of the cabinet.

    Everything the hand goes down to (objects, spots, the bowl) must satisfy it:
    the hand is as wide as the cabinet wall is high.
    """
    return float(np.sign(cabinet_xy[1]) * y) < abs(cabinet_xy[1]) - CABINET_HALF_WIDTH - HAND_HALF_SPAN


GAP = 0.045  # free space between object footprints: room for open fingers


@dataclasses.dataclass
class Layout:
    """One episode's scene: colour name per object, (x, y, yaw) per object, cabinet (x, y), drawer opening (m)."""

    colours: dict[str, str]
    poses: dict[str, tuple[float, float, float]]
    cabinet_xy: tuple[float, float]
    drawer_opening: float


class LayoutError(RuntimeError):
    pass


def sample_layout(
    rng: np.random.Generator,
    scene: Scene,
    drawer_opening: float,
    accept: Callable[[Layout], bool] | None = None,
    tries: int = 5000,
) -> Layout:
    """Sample colours and free poses until `accept(layout)` (a task's extra condition) holds.

    Every seed must give a scene: the cap only stops a task whose condition cannot hold. It was 400,
    and push's seed 102878 (one in about 3000 seeds) needs more; a higher cap changes no layout that
    fewer tries found, since the draws up to the first accepted one are the same."""
    blocks = [o for o in scene.objects if o.kind == "block"]
    cylinders = [o for o in scene.objects if o.kind == "cylinder"]
    names = list(PALETTE)
    for _ in range(tries):
        colours = {}
        for group in (blocks, cylinders):
            picks = rng.choice(len(names), size=len(group), replace=False)
            colours.update({o.name: names[i] for o, i in zip(group, picks)})
        side = rng.choice([-1.0, 1.0])
        cab = (float(rng.uniform(*CABINET_X_RANGE)), float(side * rng.uniform(*CABINET_ABS_Y_RANGE)))
        poses = _sample_poses(rng, scene, cab)
        if poses is None:
            continue
        layout = Layout(colours, poses, cab, drawer_opening)
        if accept is None or accept(layout):
            return layout
    raise LayoutError(f"could not place the objects for this task in {tries} tries; the table is too crowded")


def _sample_poses(rng, scene: Scene, cab: tuple[float, float]) -> dict | None:
    placed: list[tuple[float, float, float]] = []  # x, y, radius
    poses = {}
    for o in scene.objects:  # large ones (bowl, plate) come first in scene order
        for _ in range(60):
            x, y = rng.uniform(*X_RANGE), rng.uniform(*Y_RANGE)
            if not clear_of_cabinet(cab, y):
                continue
            if all(np.hypot(x - px, y - py) > o.radius + pr + GAP for px, py, pr in placed):
                break
        else:
            return None
        placed.append((x, y, o.radius))
        poses[o.name] = (float(x), float(y), float(rng.uniform(-np.pi, np.pi)))
    return poses


def apply_layout(
    scene: Scene, model: mujoco.MjModel, data: mujoco.MjData, layout: Layout, rng: np.random.Generator
) -> None:
    """Write the layout into the model and data, randomise lights and tones, then mj_forward."""
    for o in scene.objects:
        x, y, yaw = layout.poses[o.name]
        adr = o.qpos_adr
        data.qpos[adr : adr + 3] = (x, y, o.half_height if o.kind in ("block", "cylinder") else 0.0)
        data.qpos[adr + 3 : adr + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        data.qvel[o.qvel_adr : o.qvel_adr + 6] = 0.0
        if o.name in layout.colours:
            for g in o.geom_ids:
                model.geom_rgba[g] = PALETTE[layout.colours[o.name]]
        else:
            tone = _FURNITURE_TONES[rng.integers(len(_FURNITURE_TONES))]
            for g in o.geom_ids:
                model.geom_rgba[g, :3] = tone
    model.body_pos[scene.cabinet_body_id, :2] = layout.cabinet_xy
    data.qpos[scene.drawer_qpos_adr] = layout.drawer_opening
    model.geom_rgba[scene.table_geom_id, :3] = _TABLE_TONES[rng.integers(len(_TABLE_TONES))]
    for lid in scene.light_ids:
        d = rng.normal(size=3) * 0.4 + np.array([0.0, 0.0, -1.0])
        model.light_dir[lid] = d / np.linalg.norm(d)
        model.light_diffuse[lid] = rng.uniform(0.3, 0.6)
    model.vis.headlight.ambient[:] = rng.uniform(0.25, 0.45)
    mujoco.mj_forward(model, data)
