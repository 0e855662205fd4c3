"""Register every Meta-World v3 task as ``metaworld/<task>``.

Imported by `envs.registration`; it must stay cheap, so it imports only the
plain-data modules of this package, never `metaworld` or `mujoco`.
"""

from embodied.registry import register
from envs.metaworld.instructions import INSTRUCTIONS
from envs.metaworld.sets import TASKS

ENTRY_POINT = "envs.metaworld.env:MetaWorldEnv"

for _task in TASKS:
    register(
        f"metaworld/{_task}",
        ENTRY_POINT,
        kind="env",
        extra="sim",
        description=f"Meta-World {_task}: {INSTRUCTIONS[_task][0]}",
        task=_task,
    )
