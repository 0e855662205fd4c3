"""Small rotation helpers shared by the safety filter, labellers and envs.

Quaternions are (w, x, y, z) unit quaternions (MuJoCo's order); axis-angle
vectors are rotation axis times angle in radians, angle in [0, pi].
"""

from __future__ import annotations

from typing import Any

import numpy as np


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(4,) wxyz -> (3,) axis-angle. The identity maps to zeros."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q)
    if q[0] < 0:  # q and -q are the same rotation; take the short way round
        q = -q
    s = np.linalg.norm(q[1:])
    if s < 1e-12:
        return np.zeros(3, np.float32)
    angle = 2.0 * np.arctan2(s, q[0])
    return (q[1:] / s * angle).astype(np.float32)


def axis_angle_to_quat(v: np.ndarray) -> np.ndarray:
    """(3,) axis-angle -> (4,) wxyz."""
    v = np.asarray(v, np.float64)
    angle = np.linalg.norm(v)
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    axis = v / angle
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis]).astype(np.float32)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a*b of wxyz quaternions (apply b, then a)."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def rotation_between_axis_angles(current: np.ndarray, target: np.ndarray, max_angle: float, out: list[Any]) -> np.ndarray:
    """Move from orientation `current` toward `target` (both axis-angle) by at most `max_angle` rad.

    Appends a safety `Intervention` to `out` when the step was limited.
    """
    qc, qt = axis_angle_to_quat(current), axis_angle_to_quat(target)
    delta = quat_to_axis_angle(quat_mul(qt, quat_conj(qc)))
    angle = float(np.linalg.norm(delta))
    if angle <= max_angle:
        return np.asarray(target, np.float32)
    from embodied.safety import Intervention

    out.append(Intervention("rotation_limit", f"rotation step {angle:.3f} rad capped at {max_angle} rad"))
    step = axis_angle_to_quat(delta * (max_angle / angle))
    return quat_to_axis_angle(quat_mul(step, qc))
