"""Test-wide settings that must hold before anything imports MuJoCo."""

import os

# Offscreen rendering on the CPU (Mesa llvmpipe through EGL); set before any mujoco import.
os.environ.setdefault("MUJOCO_GL", "egl")
