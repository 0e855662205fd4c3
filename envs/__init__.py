"""Simulated embodiments: the MuJoCo tabletop suite and Meta-World.

Every env here follows the gym convention documented in `embodied.sim` and
is registered by name in `envs.registration`.
"""
