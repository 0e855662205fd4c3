"""Scripted experts: one plan per task family, written as a generator of
`ee_delta` actions computed from privileged sim state (object poses, the
drawer joint, the controller's current EE target).

Usage (the convention every env with an expert follows):

    obs, info = env.reset(seed=0)
    expert = env.unwrapped.make_expert()
    expert.reset()
    while not done:
        obs, r, term, trunc, info = env.step(expert.act())
        done = term or trunc

`expert.phase` names what it is doing ("approach", "grasp", "lift", ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from embodied.geometry import quat_error
from envs.tabletop.controller import TOP_DOWN, quat_from_mat
from envs.tabletop.scene import HANDLE_GAP, HANDLE_Z, PLATE_HALF_HEIGHT
from envs.tabletop.tasks import (
    MOVE_DIRECTIONS,
    MOVE_DISTANCE,
    PUSH_DIRECTIONS,
    PUSH_DISTANCE,
)

CARRY_Z = 0.16  # m: travel height of the EE site between objects
OPEN, CLOSED = 1.0, 0.0

Target = Callable[[], np.ndarray]


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


HAND_HALF_SPAN = 0.11  # m: the hand reaches this far to each side along the finger axis


def _wrap_quarter(yaw: float) -> float:
    return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def _clearance(world, xy: np.ndarray, yaw: float, exclude: set[str]) -> float:
    """Smallest gap (m) between the hand's footprint at `xy`, `yaw` and any other object or the cabinet."""
    u = np.array([-np.sin(yaw), np.cos(yaw)])  # finger axis at this yaw
    obstacles = [(world.pos(o.name)[:2], o.radius) for o in world.scene.objects if o.name not in exclude]
    obstacles.append((world.model.body_pos[world.scene.cabinet_body_id][:2], 0.11))
    gap = np.inf
    for q, r in obstacles:
        t = np.clip(np.dot(q - xy, u), -HAND_HALF_SPAN, HAND_HALF_SPAN)
        gap = min(gap, float(np.linalg.norm(q - (xy + t * u)) - r))
    return gap


def _best_yaw(world, xy: np.ndarray, candidates, exclude: set[str]) -> float:
    """The candidate gripper yaw (rad) whose hand footprint stays farthest from other things."""
    return max(candidates, key=lambda y: _clearance(world, xy, y, exclude))


def _grasp_yaw(world, name: str) -> float:
    """Gripper yaw (rad) that closes the fingers across a block's faces (any yaw fits a cylinder),
    turned so the wide hand keeps clear of neighbours."""
    xy = world.pos(name)[:2]
    if world.scene.object(name).kind == "block":
        base = _wrap_quarter(world.yaw(name))
        candidates = [base, base + np.pi / 2 if base <= 0 else base - np.pi / 2]
    else:
        candidates = [0.0, np.pi / 4, -np.pi / 4, np.pi / 2]
    return _best_yaw(world, xy, candidates, {name})


class TabletopExpert:
    """Privileged scripted policy for one `TabletopEnv` episode (ee_delta control only)."""

    def __init__(self, env):
        if env.config.control_mode != "ee_delta":
            raise ValueError("the tabletop experts emit ee_delta actions; make the env with control_mode='ee_delta'")
        self.env = env
        self.phase = "idle"
        self._plan: Iterator[np.ndarray] | None = None
        self._grip = OPEN
        self._yaw = 0.0

    def reset(self) -> None:
        """Start a new plan for the episode the env was just reset to."""
        self.world = self.env.world
        self.params = self.env.goal.params
        self._grip = OPEN
        self._yaw = 0.0
        self.phase = "start"
        self._plan = getattr(self, "_plan_" + self.env.config.task.replace("-", "_"))()

    def act(self) -> np.ndarray:
        """The next action, float32 (7,), within the env's action bounds."""
        if self._plan is None:
            raise RuntimeError("call expert.reset() after env.reset() and before act()")
        try:
            return next(self._plan)
        except StopIteration:
            self.phase = "done"
            return self._action(np.zeros(3), np.zeros(3))

    # ---------------------------------------------------------------- primitives
    def _action(self, dpos: np.ndarray, drot: np.ndarray) -> np.ndarray:
        return np.concatenate([dpos, drot, [self._grip]]).astype(np.float32)

    def _move(
        self,
        target: Target | np.ndarray,
        phase: str,
        tol: float = 0.008,
        speed: float | None = None,
        max_ticks: int = 60,
    ) -> Iterator[np.ndarray]:
        """Drive the EE site to `target` (m, world; re-evaluated each tick) holding the yaw in `self._yaw`."""
        self.phase = phase
        ctrl = self.env.controller
        t_max = self.env.config.max_translation if speed is None else speed
        r_max = self.env.config.max_rotation
        want_quat = quat_from_mat(_rot_z(self._yaw) @ TOP_DOWN)
        for _ in range(max_ticks):
            goal = np.asarray(target() if callable(target) else target, float)
            dpos = goal - ctrl.target_pos
            drot = quat_error(want_quat, ctrl.target_quat)
            reached = np.linalg.norm(goal - self.world.ee_pos()) < tol
            aligned = np.linalg.norm(quat_error(want_quat, quat_from_mat(self.world.ee_mat()))) < 0.05
            if reached and aligned and np.linalg.norm(dpos) < 1e-3:
                return
            dpos *= min(1.0, t_max / max(np.abs(dpos).max(), 1e-12))
            drot *= min(1.0, r_max / max(np.abs(drot).max(), 1e-12))
            yield self._action(dpos, drot)

    def _hold(self, grip: float, ticks: int, phase: str) -> Iterator[np.ndarray]:
        self.phase = phase
        self._grip = grip
        for _ in range(ticks):
            yield self._action(np.zeros(3), np.zeros(3))

    def _over(self, name: str, z: float) -> Target:
        return lambda: np.array([*self.world.pos(name)[:2], z])

    def _pick(self, name: str, lift_z: float = CARRY_Z, attempts: int = 3) -> Iterator[np.ndarray]:
        """Grasp `name` from above and lift it; retries if it slips out."""
        w = self.world
        half = w.scene.object(name).half_height
        for _ in range(attempts):
            self._grip = OPEN
            self._yaw = _grasp_yaw(w, name)
            yield from self._move(
                lambda: np.array([*w.pos(name)[:2], max(w.ee_pos()[2], w.pos(name)[2] + 0.1)]), "approach", tol=0.02
            )
            yield from self._move(self._over(name, w.pos(name)[2] + 0.08), "align", tol=0.01)
            grasp_z = max(w.pos(name)[2] - 0.3 * half, 0.016)
            yield from self._move(self._over(name, grasp_z), "descend", tol=0.006, speed=0.02)
            yield from self._hold(CLOSED, 6, "grasp")
            yield from self._move(w.ee_pos() + np.array([0, 0, lift_z - w.ee_pos()[2]]), "lift", tol=0.02)
            if w.grasped(name):
                return
        self.phase = "gave up"

    def _place(
        self, name: str, spot: Target, bottom_z: Callable[[], float], drop: float = 0.012
    ) -> Iterator[np.ndarray]:
        """Carry the held `name` over `spot` (x, y) and let go with its bottom `drop` m above `bottom_z()`."""
        w = self.world
        half = w.scene.object(name).half_height
        offset = w.pos(name) - w.ee_pos()  # where the object hangs relative to the EE site
        carry = max(CARRY_Z, bottom_z() + 2 * half + 0.08)
        # Turn the hand a quarter if that keeps it clearer of whatever stands near the spot.
        quarter = self._yaw - np.pi / 2 if self._yaw > 0 else self._yaw + np.pi / 2
        self._yaw = _best_yaw(w, spot()[:2], [self._yaw, quarter], {name})
        yield from self._move(lambda: np.array([*(spot()[:2] - offset[:2]), carry]), "carry", tol=0.02)
        release_z = lambda: bottom_z() + half + drop - offset[2]
        yield from self._move(lambda: np.array([*(spot()[:2] - offset[:2]), release_z() + 0.05]), "align", tol=0.008)
        yield from self._move(
            lambda: np.array([*(spot()[:2] - offset[:2]), release_z()]), "lower", tol=0.006, speed=0.015
        )
        yield from self._hold(OPEN, 5, "release")
        yield from self._move(w.ee_pos() + np.array([0, 0, 0.08]), "retreat", tol=0.02)

    def _pick_and_place(self, name, spot, bottom_z, drop=0.012):
        w = self.world
        for _ in range(3):
            yield from self._pick(name)
            if not w.grasped(name):
                continue
            yield from self._place(name, spot, bottom_z, drop)
            return

    # --------------------------------------------------------------- per family
    def _plan_pick(self):
        yield from self._pick(self.params["object"], lift_z=0.2)

    def _plan_place(self):
        x, c = self.params["object"], self.params["container"]
        w = self.world
        if c == "bowl":
            yield from self._pick_and_place(x, lambda: w.pos("bowl"), lambda: w.pos("bowl")[2] + 0.008, drop=0.02)
        else:
            yield from self._pick_and_place(
                x, lambda: w.pos("plate"), lambda: w.pos("plate")[2] + 2 * PLATE_HALF_HEIGHT
            )

    def _plan_stack(self):
        a, b = self.params["top"], self.params["bottom"]
        yield from self._stack(a, b)

    def _stack(self, a, b):
        w = self.world
        hb = w.scene.object(b).half_height
        yield from self._pick_and_place(a, lambda: w.pos(b), lambda: w.pos(b)[2] + hb, drop=0.008)

    def _plan_push(self):
        w = self.world
        x = self.params["object"]
        d = np.array([*PUSH_DIRECTIONS[self.params["direction"]], 0.0])
        o = w.scene.object(x)
        start = w.pos(x)
        z = max(0.018, min(o.half_height, 0.025))
        behind = start - d * (0.03 + 0.045)
        self._grip = CLOSED
        self._yaw = 0.0
        yield from self._move(np.array([behind[0], behind[1], 0.12]), "approach", tol=0.015)
        yield from self._move(np.array([behind[0], behind[1], z]), "lower", tol=0.008, speed=0.02)
        end = start + d * (PUSH_DISTANCE + 0.005 - 0.03)
        yield from self._move(np.array([end[0], end[1], z]), "push", tol=0.008, speed=0.015)
        yield from self._move(np.array([end[0], end[1], z]) - d * 0.04, "back off", tol=0.015)
        yield from self._move(np.array([end[0], end[1], 0.15]) - d * 0.04, "retreat", tol=0.02)

    def _hook_point(self) -> np.ndarray:
        """EE position between the drawer front and its handle bar (m, world)."""
        w = self.world
        c = w.data.xpos[w.scene.drawer_body_id]
        return np.array([w.drawer_front_x() - HANDLE_GAP / 2, c[1], HANDLE_Z])

    def _hook_handle(self):
        """Closed fingers down behind the handle bar, from above; returns the hook point."""
        self._grip = CLOSED
        self._yaw = 0.0
        hook = self._hook_point()
        yield from self._move(hook + [0, 0, 0.12], "approach", tol=0.015)
        yield from self._move(hook, "lower", tol=0.008, speed=0.02)
        return hook

    def _plan_open_drawer(self, target: float = 0.145):
        w = self.world
        hook = yield from self._hook_handle()
        pull = hook - [target - w.drawer_opening() + 0.005, 0, 0]
        yield from self._move(pull, "pull", tol=0.008, speed=0.02)
        yield from self._move(w.ee_pos() + [0, 0, 0.1], "retreat", tol=0.02)

    def _plan_close_drawer(self):
        w = self.world
        hook = yield from self._hook_handle()
        push = hook + [w.drawer_opening() + 0.01, 0, 0]
        yield from self._move(push, "push", tol=0.008, speed=0.02)
        yield from self._move(w.ee_pos() + [-0.03, 0, 0.1], "retreat", tol=0.02)

    def _into_drawer(self, x):
        w = self.world
        yield from self._pick_and_place(x, lambda: w.drawer_center(), lambda: w.drawer_center()[2], drop=0.015)

    def _plan_put_in_drawer(self):
        yield from self._into_drawer(self.params["object"])

    def _plan_reach(self):
        w = self.world
        x = self.params["object"]
        half = w.scene.object(x).half_height
        self._yaw = _grasp_yaw(w, x)
        yield from self._move(self._over(x, w.pos(x)[2] + 0.1), "approach", tol=0.015)
        yield from self._move(self._over(x, w.pos(x)[2] + half + 0.005), "touch", tol=0.006, speed=0.015)

    def _plan_move(self):
        d = np.array(MOVE_DIRECTIONS[self.params["direction"]][0], float)
        goal = self.world.ee_pos() + d * MOVE_DISTANCE
        yield from self._move(goal, "move", tol=0.008, speed=0.02)

    def _plan_move_next_to(self):
        a = self.params["object"]
        spot3 = np.array([*self.params["target"][:2], 0.0])  # the goal's spot: what goal_points names
        yield from self._pick_and_place(a, lambda: spot3, lambda: 0.0, drop=0.008)

    def _plan_drawer_store(self):
        w = self.world
        x = self.params["object"]
        yield from self._plan_open_drawer()
        yield from self._into_drawer(x)
        if w.drawer_opening() < 0.02:
            return
        yield from self._plan_close_drawer()

    def _plan_bowl_all(self):
        w = self.world
        offsets = [np.array([np.cos(a), np.sin(a), 0.0]) * 0.032 for a in (0.0, 2.1, 4.2)]
        for i, b in enumerate(self.params["order"]):
            if w.in_bowl(b):
                continue
            off = offsets[i % len(offsets)]
            yield from self._pick_and_place(
                b, lambda off=off: w.pos("bowl") + off, lambda: w.pos("bowl")[2] + 0.008, drop=0.02
            )

    def _plan_stack_three(self):
        p = self.params
        yield from self._stack(p["middle"], p["bottom"])
        yield from self._stack(p["top"], p["middle"])


def make_expert(env) -> TabletopExpert:
    return TabletopExpert(env)
