"""The language-conditioned task families: goal sampling, templated
instructions (several paraphrases each), sub-task stages and success
predicates computed from physics state.

A family object is stateless; `Task.sample` returns a `Goal` for one
episode. Success is checked every tick on the privileged `World` view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from envs.tabletop.layout import X_RANGE, Y_RANGE, Layout, clear_of_cabinet
from envs.tabletop.registration import FAMILIES, LONG_HORIZON_FAMILIES, SINGLE_STEP_FAMILIES
from envs.tabletop.scene import DRAWER_TRAVEL, Scene
from envs.tabletop.world import World

# Episode limits in control ticks (10 Hz).
MAX_STEPS: dict[str, int] = {f: 120 for f in SINGLE_STEP_FAMILIES} | {f: 400 for f in LONG_HORIZON_FAMILIES}

PUSH_DIRECTIONS: dict[str, tuple[float, float]] = {"left": (0, 1), "right": (0, -1), "forward": (1, 0), "back": (-1, 0)}
_PUSH_WORDS = {"left": "to the left", "right": "to the right", "forward": "forward", "back": "back toward you"}
PUSH_DISTANCE = 0.10  # how far the expert pushes (m); success needs 0.07 along the direction
OPEN_ENOUGH = 0.12  # drawer opening (m) that counts as open
CLOSED_ENOUGH = 0.01  # and as closed
NEXT_TO_RANGE = (0.04, 0.12)  # centre distance (m) that counts as "next to"
NEXT_TO_OFFSET = 0.075  # where the expert puts the object, from the reference's centre
MOVE_DISTANCE = 0.10  # how far the expert moves the arm in the "move" family (m); success needs 0.08 along it
# Where a "move" episode may start and end (m, world): anywhere a task might leave the arm, clear of the table.
MOVE_BOX = ((0.30, -0.28, 0.10), (0.66, 0.28, 0.38))

# The "move" family: RT-H language motions (the labeller's own words first) and the ways a person says them.
MOVE_DIRECTIONS: dict[str, tuple[tuple[float, float, float], tuple[str, ...]]] = {
    "forward": ((1, 0, 0), ("move arm forward", "move forward", "go forward", "a bit further forward")),
    "backward": ((-1, 0, 0), ("move arm backward", "move back", "go backward", "a bit back toward you")),
    "left": ((0, 1, 0), ("move arm left", "move left", "go left", "a bit more to the left")),
    "right": ((0, -1, 0), ("move arm right", "move right", "go right", "a bit more to the right")),
    "up": ((0, 0, 1), ("move arm up", "move up", "go up", "a bit higher")),
    "down": ((0, 0, -1), ("move arm down", "move down", "go down", "a bit lower")),
}

_NOUNS = {"block": ("block", "cube"), "cylinder": ("cylinder", "can")}


@dataclasses.dataclass
class Stage:
    """One sub-task: its instruction and the predicate that says it is done."""

    instruction: str
    done: Callable[[World], bool]


@dataclasses.dataclass
class Goal:
    """One episode's task: instruction, stages (one for single-step tasks) and success."""

    family: str
    instruction: str
    stages: list[Stage]
    success: Callable[[World], bool]
    params: dict[str, Any]  # what the expert needs: object names, direction, container, ...

    def subtask(self, world: World) -> str:
        for st in self.stages:
            if not st.done(world):
                return st.instruction
        return self.stages[-1].instruction


GOAL_POINTS_DIM = 6  # two points, flattened


def subject_object(goal: Goal) -> str | None:
    """The name of the object the goal acts on (the top block of a stack; for tasks of several steps, their
    first object), or None when it acts on no object (the drawer tasks, a language motion)."""
    p = goal.params
    return p.get("object") or p.get("top") or (p["order"][0] if p.get("order") else None)


def goal_points(goal: Goal, world: World) -> np.ndarray:
    """(6,) float32 metres, world frame: where the thing the goal acts on is now, then where it must end up.

    The subject is the goal's object (the top block of a stack; for tasks of
    several steps, their first object), the drawer front for the drawer
    tasks, the hand for a language motion; the destination is the container,
    the block beneath, the drawer, for a push the spot on the table
    PUSH_DISTANCE along its direction from where the object started (fixed
    for the episode: how far is left to push is then in the state), for a
    move next to the free spot beside the reference object where the expert
    sets it down (chosen at reset from all the objects, which the state does
    not show), else the subject itself. Privileged state: a policy may learn to
    predict it from pixels (MDT's `localisation_weight`), never read it.
    """
    p = goal.params
    name = subject_object(goal)
    drawer = goal.family in ("open-drawer", "close-drawer")
    subject = world.pos(name) if name else world.drawer_front() if drawer else world.ee_pos()
    other = p.get("container") or p.get("bottom")
    if "target" in p:  # a push or a move next to: a spot on the table, fixed when the episode starts
        destination = np.asarray(p["target"], float)
    elif other:
        destination = world.pos(other)
    elif goal.family in ("put-in-drawer", "drawer-store"):
        destination = world.drawer_center()
    else:
        destination = subject
    return np.concatenate([subject, destination]).astype(np.float32)


def describe(layout: Layout, scene: Scene, name: str, rng: np.random.Generator | None = None) -> str:
    """'the red block' (or a synonym of the noun when `rng` is given)."""
    kind = scene.object(name).kind
    if kind in ("bowl", "plate"):
        return f"the {kind}"
    nouns = _NOUNS[kind]
    noun = nouns[rng.integers(len(nouns))] if rng is not None else nouns[0]
    return f"the {layout.colours[name]} {noun}"


def _small(scene: Scene) -> list[str]:
    return [o.name for o in scene.objects if o.kind in ("block", "cylinder")]


def _blocks(scene: Scene) -> list[str]:
    return [o.name for o in scene.objects if o.kind == "block"]


def _pick(rng, options):
    return options[rng.integers(len(options))]


class Task:
    """One family. Subclasses set `family`, `templates` and implement `_goal`."""

    family = ""
    templates: tuple[str, ...] = ()
    # The goal picks among things in the scene (an object, a place, a direction), so one scene can be
    # demonstrated with several goals (TabletopConfig.goals_per_layout).
    chooses_goal = True

    def __init__(self, scene: Scene):
        self.scene = scene

    @property
    def long_horizon(self) -> bool:
        return self.family in LONG_HORIZON_FAMILIES

    @property
    def max_steps(self) -> int:
        return MAX_STEPS[self.family]

    def drawer_opening(self, rng: np.random.Generator) -> float:
        return 0.0

    def sample(self, rng: np.random.Generator, layout: Layout, start: dict[str, np.ndarray]) -> Goal | None:
        """A goal for this layout, or None if the layout does not suit the task."""
        return self._goal(rng, layout, start)

    def _goal(self, rng, layout, start) -> Goal | None:
        raise NotImplementedError

    def _say(self, rng, **words) -> str:
        return _pick(rng, self.templates).format(**words)

    def _single(self, rng, instruction_words: dict, success, params) -> Goal:
        text = self._say(rng, **instruction_words)
        return Goal(self.family, text, [Stage(text, success)], success, params)


class Pick(Task):
    family = "pick"
    templates = ("pick up {obj}", "grab {obj}", "lift {obj} off the table", "take {obj} from the table")

    def _goal(self, rng, layout, start):
        x = _pick(rng, _small(self.scene))
        half = self.scene.object(x).half_height

        def success(w: World) -> bool:
            return w.grasped(x) and w.pos(x)[2] - half > 0.05

        return self._single(rng, {"obj": describe(layout, self.scene, x, rng)}, success, {"object": x})


class Place(Task):
    family = "place"
    _bowl = ("put {obj} in the bowl", "place {obj} into the bowl", "drop {obj} in the bowl")
    _plate = ("put {obj} on the plate", "place {obj} onto the plate", "set {obj} down on the plate")

    def _goal(self, rng, layout, start):
        x = _pick(rng, _small(self.scene))
        container = _pick(rng, ["bowl", "plate"])
        inside = (lambda w: w.in_bowl(x)) if container == "bowl" else (lambda w: w.on_plate(x))

        def success(w: World) -> bool:
            return inside(w) and w.settled(x)

        text = _pick(rng, self._bowl if container == "bowl" else self._plate).format(
            obj=describe(layout, self.scene, x, rng)
        )
        return Goal(self.family, text, [Stage(text, success)], success, {"object": x, "container": container})


def _segment_clear(p0, p1, others, clearance) -> bool:
    d = p1 - p0
    for q, r in others:
        t = np.clip(np.dot(q - p0, d) / np.dot(d, d), 0.0, 1.0)
        if np.linalg.norm(q - (p0 + t * d)) < r + clearance:
            return False
    return True


def _others(layout: Layout, scene: Scene, exclude: set[str]) -> list[tuple[np.ndarray, float]]:
    return [(np.array(layout.poses[o.name][:2]), o.radius) for o in scene.objects if o.name not in exclude]


class Push(Task):
    family = "push"
    templates = ("push {obj} {dir}", "slide {obj} {dir}", "nudge {obj} {dir}", "shove {obj} {dir}")

    def _goal(self, rng, layout, start):
        x = _pick(rng, _small(self.scene))
        name = _pick(rng, list(PUSH_DIRECTIONS))
        d = np.array(PUSH_DIRECTIONS[name], float)
        p = np.array(layout.poses[x][:2])
        r = self.scene.object(x).radius
        end = p + d * (PUSH_DISTANCE + 0.03)
        if not (0.28 < end[0] < 0.72 and -0.42 < end[1] < 0.42 and clear_of_cabinet(layout.cabinet_xy, end[1])):
            return None
        # The fingers start behind the object and the object travels ahead: keep that corridor clear.
        if not _segment_clear(p - d * 0.09, end, _others(layout, self.scene, {x}), r + 0.03):
            return None
        half = self.scene.object(x).half_height

        def success(w: World) -> bool:
            delta = w.pos(x)[:2] - start[x][:2]
            along = float(delta @ d)
            lateral = abs(float(delta @ np.array([-d[1], d[0]])))
            return along >= 0.07 and lateral <= 0.05 and abs(w.pos(x)[2] - half) < 0.01 and w.settled(x)

        words = {"obj": describe(layout, self.scene, x, rng), "dir": _PUSH_WORDS[name]}
        target = [*(p + d * PUSH_DISTANCE).tolist(), half]  # where the expert's push leaves the object (m)
        return self._single(rng, words, success, {"object": x, "direction": name, "target": target})


class Stack(Task):
    family = "stack"
    templates = ("stack {a} on {b}", "put {a} on top of {b}", "place {a} onto {b}")

    def _goal(self, rng, layout, start):
        a, b = rng.choice(_blocks(self.scene), size=2, replace=False)
        a, b = str(a), str(b)

        def success(w: World) -> bool:
            return w.on_top_of(a, b) and w.settled(a)

        words = {"a": describe(layout, self.scene, a, rng), "b": describe(layout, self.scene, b, rng)}
        return self._single(rng, words, success, {"top": a, "bottom": b})


class OpenDrawer(Task):
    family = "open-drawer"
    chooses_goal = False  # one drawer: a second goal would repeat the first demo
    templates = ("open the drawer", "pull the drawer open", "slide the drawer out", "pull out the drawer")

    def _goal(self, rng, layout, start):
        return self._single(rng, {}, lambda w: w.drawer_opening() >= OPEN_ENOUGH, {})


class CloseDrawer(Task):
    family = "close-drawer"
    chooses_goal = False  # one drawer: a second goal would repeat the first demo
    templates = ("close the drawer", "push the drawer shut", "slide the drawer closed", "shut the drawer")

    def drawer_opening(self, rng):
        return float(rng.uniform(0.08, DRAWER_TRAVEL))

    def _goal(self, rng, layout, start):
        return self._single(rng, {}, lambda w: w.drawer_opening() <= CLOSED_ENOUGH, {})


class PutInDrawer(Task):
    family = "put-in-drawer"
    templates = ("put {obj} in the drawer", "place {obj} inside the drawer", "store {obj} in the drawer")

    def drawer_opening(self, rng):
        return DRAWER_TRAVEL

    def _goal(self, rng, layout, start):
        x = _pick(rng, _small(self.scene))

        def success(w: World) -> bool:
            return w.in_drawer(x) and w.settled(x)

        return self._single(rng, {"obj": describe(layout, self.scene, x, rng)}, success, {"object": x})


class Reach(Task):
    family = "reach"
    templates = ("touch {obj}", "reach for {obj}", "move your gripper to {obj}", "put your hand on {obj}")

    def _goal(self, rng, layout, start):
        x = _pick(rng, _small(self.scene))
        half = self.scene.object(x).half_height

        def success(w: World) -> bool:
            return w.robot_touches(x) or np.linalg.norm(w.ee_pos() - w.pos(x)) < half + 0.02

        return self._single(rng, {"obj": describe(layout, self.scene, x, rng)}, success, {"object": x})


class Move(Task):
    """Move the arm about 10 cm in a named direction: episodes whose instruction is a language motion.

    A correction such as "move arm left" reaches an MDT policy as its
    instruction for a while (YAY-style), in the middle of some task, with the
    arm anywhere. Labelled motions inside task demos cover the directions
    those tasks happen to use; these episodes cover all six evenly, from a
    start pose drawn anywhere in `MOVE_BOX` (params["start_ee"], which the
    env moves the arm to). Half the instructions are the labeller's own
    phrase, half how a person would say it.
    """

    family = "move"

    def _goal(self, rng, layout, start):
        name = _pick(rng, list(MOVE_DIRECTIONS))
        direction, phrases = MOVE_DIRECTIONS[name]
        d = np.array(direction, float)
        low, high = np.array(MOVE_BOX[0]), np.array(MOVE_BOX[1])
        # leave room to move that way: start at least MOVE_DISTANCE from the box's side it heads for
        start_ee = rng.uniform(low + np.maximum(-d, 0) * MOVE_DISTANCE, high - np.maximum(d, 0) * MOVE_DISTANCE)
        text = phrases[0] if rng.random() < 0.5 else _pick(rng, phrases[1:])
        origin: list[np.ndarray] = []  # the end effector where the episode starts (set on the reset's first check)

        def success(w: World) -> bool:
            if not origin:
                origin.append(w.ee_pos().copy())
            delta = w.ee_pos() - origin[0]
            return float(delta @ d) >= MOVE_DISTANCE - 0.02 and float(np.linalg.norm(delta - (delta @ d) * d)) < 0.03

        return Goal(self.family, text, [Stage(text, success)], success, {"direction": name, "start_ee": start_ee})


def free_spot_next_to(
    layout_or_positions: dict[str, np.ndarray], scene: Scene, obj: str, ref: str, cabinet_xy: tuple[float, float]
) -> np.ndarray | None:
    """A table spot NEXT_TO_OFFSET from `ref` where `obj` fits, clear of every other object (or None)."""
    p = np.asarray(layout_or_positions[ref][:2], float)
    r = scene.object(obj).radius
    for k in range(8):
        a = np.pi / 2 * (k % 4) + (np.pi / 4 if k >= 4 else 0.0) + np.pi  # toward the robot first
        spot = p + NEXT_TO_OFFSET * np.array([np.cos(a), np.sin(a)])
        if not (X_RANGE[0] - 0.03 < spot[0] < X_RANGE[1] and Y_RANGE[0] < spot[1] < Y_RANGE[1]):
            continue
        if not clear_of_cabinet(cabinet_xy, spot[1]):
            continue
        ok = all(
            np.linalg.norm(np.asarray(layout_or_positions[o.name][:2]) - spot) > r + o.radius + 0.035
            for o in scene.objects
            if o.name not in (obj, ref)
        )
        if ok:
            return spot
    return None


class MoveNextTo(Task):
    family = "move-next-to"
    templates = ("move {a} next to {b}", "put {a} beside {b}", "place {a} near {b}", "bring {a} over to {b}")

    def _goal(self, rng, layout, start):
        a, b = (str(v) for v in rng.choice(_small(self.scene), size=2, replace=False))
        pa, pb = np.array(layout.poses[a][:2]), np.array(layout.poses[b][:2])
        if np.linalg.norm(pa - pb) < 0.2:
            return None
        spot = free_spot_next_to(layout.poses, self.scene, a, b, layout.cabinet_xy)
        if spot is None:
            return None
        half = self.scene.object(a).half_height

        def success(w: World) -> bool:
            dist = np.linalg.norm(w.pos(a)[:2] - w.pos(b)[:2])
            b_moved = np.linalg.norm(w.pos(b)[:2] - start[b][:2])
            return (
                NEXT_TO_RANGE[0] <= dist <= NEXT_TO_RANGE[1]
                and abs(w.pos(a)[2] - half) < 0.01
                and b_moved < 0.03
                and w.settled(a)
            )

        words = {"a": describe(layout, self.scene, a, rng), "b": describe(layout, self.scene, b, rng)}
        target = [*spot.tolist(), half]  # the free spot beside b where the expert sets a down (m)
        return self._single(rng, words, success, {"object": a, "reference": b, "target": target})


class DrawerStore(Task):
    family = "drawer-store"
    templates = (
        "open the drawer, put {obj} inside, and close it",
        "store {obj} in the drawer and shut it",
        "open the drawer, place {obj} in it, then close the drawer",
    )

    def _goal(self, rng, layout, start):
        x = _pick(rng, _small(self.scene))
        obj = describe(layout, self.scene, x)

        def success(w: World) -> bool:
            return w.in_drawer(x) and w.drawer_opening() <= CLOSED_ENOUGH and w.settled(x)

        stages = [
            Stage("open the drawer", lambda w: w.drawer_opening() >= 0.1 or w.in_drawer(x)),
            Stage(f"put {obj} in the drawer", lambda w: w.in_drawer(x) and not w.grasped(x)),
            Stage("close the drawer", success),
        ]
        text = self._say(rng, obj=describe(layout, self.scene, x, rng))
        return Goal(self.family, text, stages, success, {"object": x})


class BowlAll(Task):
    family = "bowl-all"
    templates = (
        "put all the blocks in the bowl",
        "place every block into the bowl",
        "collect all the cubes in the bowl",
    )

    def _goal(self, rng, layout, start):
        blocks = _blocks(self.scene)
        order = [blocks[i] for i in rng.permutation(len(blocks))]

        def success(w: World) -> bool:
            return all(w.in_bowl(b) and w.settled(b) for b in blocks)

        stages = [
            Stage(f"put {describe(layout, self.scene, b)} in the bowl", (lambda w, b=b: w.in_bowl(b))) for b in order
        ]
        stages[-1] = Stage(stages[-1].instruction, success)
        return Goal(self.family, self._say(rng), stages, success, {"order": order})


class StackThree(Task):
    family = "stack-three"
    templates = (
        "stack {a} on {b}, then {c} on {a}",
        "build a tower with {b} at the bottom, {a} in the middle and {c} on top",
        "make a stack of three blocks: {b}, then {a}, then {c}",
    )

    def _goal(self, rng, layout, start):
        b, a, c = (str(v) for v in rng.choice(_blocks(self.scene), size=3, replace=False))

        def success(w: World) -> bool:
            return w.on_top_of(a, b) and w.on_top_of(c, a) and w.settled(c) and w.settled(a)

        d = {k: describe(layout, self.scene, v) for k, v in (("a", a), ("b", b), ("c", c))}
        stages = [
            Stage(f"put {d['a']} on {d['b']}", lambda w: w.on_top_of(a, b)),
            Stage(f"put {d['c']} on {d['a']}", success),
        ]
        words = {k: describe(layout, self.scene, v, rng) for k, v in (("a", a), ("b", b), ("c", c))}
        return Goal(self.family, self._say(rng, **words), stages, success, {"bottom": b, "middle": a, "top": c})


TASKS: dict[str, type[Task]] = {
    cls.family: cls
    for cls in (
        Pick,
        Place,
        Push,
        Stack,
        OpenDrawer,
        CloseDrawer,
        PutInDrawer,
        Reach,
        MoveNextTo,
        Move,
        DrawerStore,
        BowlAll,
        StackThree,
    )
}
assert tuple(TASKS) == FAMILIES


def make_task(family: str, scene: Scene) -> Task:
    if family not in TASKS:
        raise ValueError(f"unknown tabletop task family {family!r}; choose one of {FAMILIES}")
    return TASKS[family](scene)
