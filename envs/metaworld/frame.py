"""Meta-World's world frame versus the project's robot-base frame.

Meta-World puts the Sawyer's base at its world origin with the table along
+y; its +x points to the robot's right. The project's convention
(`embodied.types`) is +x forward (away from the base), +y left, +z up, in the
robot base frame. The two share the origin and differ by a -90 degree turn
about z:  p_base = R_BASE_MW @ p_mw.

Everything the env publishes in state, actions and camera poses is in the
base frame; only the raw Meta-World observation (state "mw_obs") and the raw
4-D Meta-World action stay in Meta-World's frame.
"""

from __future__ import annotations

import numpy as np

# Columns: Meta-World's x (robot's right) -> base -y, its y (forward) -> base +x, z -> z.
R_BASE_MW = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

# The same rotation as a (w, x, y, z) quaternion: -90 degrees about z.
Q_BASE_MW = np.array([np.sqrt(0.5), 0.0, 0.0, -np.sqrt(0.5)])


def pos_to_base(p_mw: np.ndarray) -> np.ndarray:
    """(..., 3) positions or directions in Meta-World's frame -> base frame (float64)."""
    return np.asarray(p_mw, np.float64) @ R_BASE_MW.T


def pos_to_mw(p_base: np.ndarray) -> np.ndarray:
    """(..., 3) vectors in the base frame -> Meta-World's frame (float64)."""
    return np.asarray(p_base, np.float64) @ R_BASE_MW


def quat_to_base(q_mw: np.ndarray) -> np.ndarray:
    """(4,) orientation (w, x, y, z) in Meta-World's frame -> base frame, w >= 0."""
    a, b = Q_BASE_MW, np.asarray(q_mw, np.float64)
    q = np.array(
        [
            a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
            a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
            a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
            a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
        ]
    )
    return q if q[0] >= 0 else -q
