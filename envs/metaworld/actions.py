"""Our 7-D `ee_delta` action <-> Meta-World's 4-D action.

Meta-World's action is (dx, dy, dz, grip) in [-1, 1]: the mocap target of the
hand moves by (dx, dy, dz) * action_scale metres per control tick
(action_scale = 1/100 m in every v3 task) in Meta-World's world frame, and
grip is an effort on the two finger servos, +1 squeezing shut and -1 driving
them open.

Our `ee_delta` action is (dx, dy, dz [m], drx, dry, drz [rad], gripper
opening [0, 1], 1 = open) in the robot base frame (see `frame`). The mapping:

- translation: rotate into Meta-World's frame, divide by action_scale, so one
  tick moves at most action_scale metres per axis (the ActionSpec bound);
- rotation: ignored. Meta-World welds the hand to a mocap body whose
  orientation is fixed, so the hand cannot turn; the ActionSpec bounds the
  rotation dims to [0, 0] to say so;
- gripper: opening g -> effort 1 - 2 g (g = 1 fully open -> -1, g = 0 -> +1).

`from_metaworld(to_metaworld(a))` returns `a` clipped to the ActionSpec, and
`to_metaworld(from_metaworld(m))` returns `m` clipped to [-1, 1], both up to
float32 rounding (a few 1e-8). The frame change is a signed permutation, so
it adds no rounding of its own.
"""

from __future__ import annotations

import numpy as np

from embodied.types import ActionSpec, SpecMismatchError
from envs.metaworld.frame import pos_to_base, pos_to_mw

# SawyerXYZEnv's default action_scale, which no v3 task overrides: metres per unit of action.
MW_ACTION_SCALE = 1.0 / 100


def action_spec(rate_hz: float, action_scale: float = MW_ACTION_SCALE) -> ActionSpec:
    """The `ee_delta` spec of a Meta-World env: +-action_scale m per tick, no rotation."""
    return ActionSpec.ee_delta(max_translation=action_scale, max_rotation=0.0, rate_hz=rate_hz)


def _check(action: np.ndarray, dim: int, what: str) -> np.ndarray:
    a = np.asarray(action, np.float64)
    if a.shape != (dim,):
        raise SpecMismatchError(f"{what} must have shape ({dim},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or inf: {a}; send finite numbers")
    return a


def to_metaworld(action: np.ndarray, action_scale: float = MW_ACTION_SCALE) -> np.ndarray:
    """(7,) ee_delta action in the base frame -> (4,) float64 Meta-World action in [-1, 1]."""
    a = _check(action, 7, "a Meta-World ee_delta action")
    delta_mw = pos_to_mw(a[:3])
    out = np.empty(4)
    out[:3] = np.clip(delta_mw / action_scale, -1.0, 1.0)
    out[3] = 1.0 - 2.0 * np.clip(a[6], 0.0, 1.0)
    return out


def from_metaworld(mw_action: np.ndarray, action_scale: float = MW_ACTION_SCALE) -> np.ndarray:
    """(4,) Meta-World action -> (7,) float32 ee_delta action in the base frame (rotation 0)."""
    m = _check(mw_action, 4, "a Meta-World action")
    m = np.clip(m, -1.0, 1.0)
    out = np.zeros(7)
    out[:3] = pos_to_base(m[:3] * action_scale)
    out[6] = (1.0 - m[3]) / 2.0
    return out.astype(np.float32)
