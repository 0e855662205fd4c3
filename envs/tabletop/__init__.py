"""The MuJoCo tabletop task suite: a robosuite arm (Panda by default; UR5e and
iiwa too) with a parallel gripper, a table with blocks, cylinders, a bowl, a
plate and a drawer, 12 language-conditioned task families (9 single-step, 3
long-horizon) and a scripted expert for each.

    from embodied import registry
    env = registry.make("tabletop/pick-v0", cameras=("front", "wrist"))

The family lists live in `envs.tabletop.registration` (no heavy imports).
"""

from envs.tabletop.registration import FAMILIES, LONG_HORIZON_FAMILIES, SINGLE_STEP_FAMILIES, env_id

__all__ = ["FAMILIES", "LONG_HORIZON_FAMILIES", "SINGLE_STEP_FAMILIES", "env_id"]
