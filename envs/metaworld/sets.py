"""The 50 Meta-World v3 task names and the named evaluation sets built from them.

Plain data, no imports of `metaworld`: the registry reads this module while
listing names, and that must stay cheap. A test checks every list here
against the installed `metaworld` package.

Sets
----
- ``MT10`` / ``MT50``: the tasks of Meta-World's multi-task benchmarks
  (`metaworld.MT10`, `metaworld.MT50`), MT10 in Meta-World's own order.
- ``easy`` (28), ``medium`` (11), ``hard`` (6), ``very_hard`` (5): the
  difficulty split of Seo et al., "Masked World Models for Visual Control"
  (CoRL 2022, appendix), which TinyVLA and SmolVLA report against. The
  membership follows the ``DIFFICULTY_TO_TASKS`` table of LeRobot's
  ``src/lerobot/envs/metaworld_config.json``, which encodes that split for
  the v3 task names; the four splits partition MT50.
"""

from __future__ import annotations

# Alphabetical; these are Meta-World's names (note "sweep-into-v3", "door-open-v3").
TASKS: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-close-v3",
    "faucet-open-v3",
    "hammer-v3",
    "hand-insert-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "pick-place-wall-v3",
    "plate-slide-back-side-v3",
    "plate-slide-back-v3",
    "plate-slide-side-v3",
    "plate-slide-v3",
    "push-back-v3",
    "push-v3",
    "push-wall-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "soccer-v3",
    "stick-pull-v3",
    "stick-push-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-close-v3",
    "window-open-v3",
)

MT10: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

EASY: tuple[str, ...] = (
    "button-press-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "dial-turn-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-close-v3",
    "faucet-open-v3",
    "handle-press-v3",
    "handle-press-side-v3",
    "handle-pull-v3",
    "handle-pull-side-v3",
    "lever-pull-v3",
    "plate-slide-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "plate-slide-side-v3",
    "reach-v3",
    "reach-wall-v3",
    "window-close-v3",
    "window-open-v3",
    "peg-unplug-side-v3",
)

MEDIUM: tuple[str, ...] = (
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "hammer-v3",
    "peg-insert-side-v3",
    "push-wall-v3",
    "soccer-v3",
    "sweep-v3",
    "sweep-into-v3",
)

HARD: tuple[str, ...] = (
    "assembly-v3",
    "hand-insert-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "push-v3",
    "push-back-v3",
)

VERY_HARD: tuple[str, ...] = (
    "shelf-place-v3",
    "disassemble-v3",
    "stick-pull-v3",
    "stick-push-v3",
    "pick-place-wall-v3",
)

EVAL_SETS: dict[str, tuple[str, ...]] = {
    "MT10": MT10,
    "MT50": TASKS,
    "easy": EASY,
    "medium": MEDIUM,
    "hard": HARD,
    "very_hard": VERY_HARD,
}

DIFFICULTY_SPLITS: tuple[str, ...] = ("easy", "medium", "hard", "very_hard")


def get_set(name: str) -> tuple[str, ...]:
    """The task names of evaluation set `name` (e.g. "MT10", "hard")."""
    try:
        return EVAL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown Meta-World evaluation set {name!r}; choose one of {sorted(EVAL_SETS)}") from None


def resolve_tasks(spec: str) -> tuple[str, ...]:
    """Task names from a set name ("MT10") or a comma-separated list ("reach-v3,push-v3")."""
    if spec in EVAL_SETS:
        return EVAL_SETS[spec]
    tasks = tuple(t.strip() for t in spec.split(",") if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise ValueError(
            f"{spec!r} is neither an evaluation set ({sorted(EVAL_SETS)}) nor a comma-separated list of "
            f"Meta-World v3 tasks (unknown: {unknown}); task names look like 'reach-v3'"
        )
    return tasks


def difficulty(task: str) -> str:
    """The difficulty split ("easy", ..., "very_hard") that `task` belongs to."""
    for split in DIFFICULTY_SPLITS:
        if task in EVAL_SETS[split]:
            return split
    raise KeyError(f"{task!r} is not a Meta-World v3 task; task names look like 'reach-v3'")
