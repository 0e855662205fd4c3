"""Meta-World v3 (50 Sawyer tasks) behind the project's gym convention.

`envs.metaworld.env.MetaWorldEnv` wraps one task; every task is registered as
``metaworld/<task>`` (e.g. ``metaworld/reach-v3``) by `registration`. The
evaluation sets (MT10, MT50, easy/medium/hard/very_hard) are in `sets` and the
language instructions in `instructions`. Importing this package is cheap: the
`metaworld` and `mujoco` packages load only with `env`.
"""

import os as _os
import sys as _sys

# MuJoCo picks its GL backend when it is first imported; without a display the
# default (GLFW) cannot open a context, while EGL renders offscreen. Set here,
# before any submodule imports mujoco; an explicit MUJOCO_GL always wins.
if _sys.platform.startswith("linux") and not _os.environ.get("DISPLAY"):
    _os.environ.setdefault("MUJOCO_GL", "egl")
