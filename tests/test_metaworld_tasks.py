"""Meta-World task names, registration, instructions and evaluation sets."""

import os
import subprocess
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest

from embodied import registry
from envs.metaworld import sets
from envs.metaworld.instructions import INSTRUCTIONS, paraphrases


def test_registry_names_are_the_50_metaworld_v3_tasks():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    expected = {f"metaworld/{name}" for name in ALL_V3_ENVIRONMENTS}
    assert len(expected) == 50
    assert set(registry.names(kind="env", prefix="metaworld/")) == expected
    entry = registry.get("metaworld/button-press-topdown-v3", kind="env")
    assert entry.kwargs == {"task": "button-press-topdown-v3"}
    assert entry.extra == "sim"
    assert "press the button from the top" in entry.description


def test_registration_imports_neither_metaworld_nor_mujoco():
    code = (
        "import sys, envs.metaworld.registration;print(sorted(m for m in ('metaworld', 'mujoco') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_task_has_at_least_three_distinct_paraphrases():
    assert set(INSTRUCTIONS) == set(sets.TASKS)
    for task, texts in INSTRUCTIONS.items():
        cleaned = {t.strip().lower() for t in texts}
        assert len(cleaned) >= 3, f"{task} has only {len(cleaned)} distinct instructions"
        assert all(t and t == t.strip() and t[0].islower() for t in texts), task
    # No two tasks share a canonical instruction: the text must tell the tasks apart.
    canonical = [texts[0] for texts in INSTRUCTIONS.values()]
    assert len(set(canonical)) == len(canonical)
    with pytest.raises(KeyError, match="reach-v3"):
        paraphrases("reach-v2")


def test_eval_sets_match_metaworld_and_splits_partition_mt50():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3

    assert len(sets.get_set("MT10")) == 10 and list(sets.MT10) == list(MT10_V3)
    assert len(sets.get_set("MT50")) == 50 and set(sets.get_set("MT50")) == set(ALL_V3_ENVIRONMENTS)
    sizes = {name: len(sets.get_set(name)) for name in sets.DIFFICULTY_SPLITS}
    assert sizes == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    union = [t for name in sets.DIFFICULTY_SPLITS for t in sets.get_set(name)]
    assert len(union) == len(set(union)) == 50 and set(union) == set(sets.TASKS)
    assert sets.difficulty("stick-pull-v3") == "very_hard"
    assert sets.resolve_tasks("reach-v3, push-v3") == ("reach-v3", "push-v3")
    with pytest.raises(ValueError, match="evaluation set"):
        sets.resolve_tasks("MT11")
    with pytest.raises(KeyError, match="MT10"):
        sets.get_set("mt10")
