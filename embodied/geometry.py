"""Small rotation and camera helpers shared by the safety filter, labellers and envs.

Quaternions are (w, x, y, z) unit quaternions (MuJoCo's order); axis-angle
vectors are rotation axis times angle in radians, angle in [0, pi].
Cameras follow `CameraInfo`: K in pixels, T_world_cam in OpenCV axes
(x right, y down, z forward).
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


def rotate_quat(quat: np.ndarray, axis_angle: np.ndarray) -> np.ndarray:
    """Apply a base-frame axis-angle rotation (rad) to `quat` (wxyz): returns dq * quat, normalised."""
    out = quat_mul(axis_angle_to_quat(axis_angle).astype(np.float64), np.asarray(quat, np.float64))
    return out / np.linalg.norm(out)


def quat_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(3,) axis-angle (rad, base frame) that rotates `current` onto `target`, the short way."""
    return quat_to_axis_angle(quat_mul(np.asarray(target, np.float64), quat_conj(np.asarray(current, np.float64))))


def integrate_ee_target(target_pos: np.ndarray, target_quat: np.ndarray, dpos: np.ndarray, drot: np.ndarray,
                        ee_pos: np.ndarray, ee_quat: np.ndarray, leash: float, leash_rot: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The next end-effector target of an `ee_delta` action, for sim and real arms alike.

    The target (m; wxyz) moves by Δpos (m) and Δrot (axis-angle rad, base
    frame) from where it was, not from the measured pose, so small commands
    accumulate; but it stays within `leash` metres / `leash_rot` rad of the
    measured pose (ee_pos, ee_quat), so an arm blocked by an obstacle does
    not wind up a target far inside it. Returns (pos (3,), quat (4,)) float64.
    """
    ee_pos = np.asarray(ee_pos, np.float64)
    pos = np.asarray(target_pos, np.float64) + np.asarray(dpos, np.float64)
    off = pos - ee_pos
    dist = float(np.linalg.norm(off))
    if dist > leash:
        pos = ee_pos + off * (leash / dist)
    quat = rotate_quat(target_quat, drot)
    rot_off = quat_error(quat, ee_quat).astype(np.float64)
    ang = float(np.linalg.norm(rot_off))
    if ang > leash_rot:
        quat = rotate_quat(ee_quat, rot_off * (leash_rot / ang))
    return pos, quat


# Where `image_coordinates` puts a point behind the camera: outside [-1, 1] on both axes.
BEHIND_CAMERA = 2.0


def image_coordinates(points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray,
                      height: int, width: int) -> np.ndarray:
    """(P, 3) world points (m) -> (P, 2) where they fall in a (height, width) image, normalised:
    u = 2·x/width - 1 from the left edge, v = 2·y/height - 1 from the top edge, so the image spans
    [-1, 1] on both axes and anything outside it is not in view. Values are clipped to
    [-BEHIND_CAMERA, BEHIND_CAMERA]; a point behind the camera is (BEHIND_CAMERA, BEHIND_CAMERA).

    intrinsics: 3x3 K (pixels, principal point measured from the image corner); extrinsics:
    4x4 T_world_cam in OpenCV axes.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    T = np.asarray(extrinsics, np.float64)
    cam = (p - T[:3, 3]) @ T[:3, :3]  # world -> camera: R^T (p - t), row-wise
    out = np.full((len(p), 2), BEHIND_CAMERA)
    front = cam[:, 2] > 1e-6
    pix = cam[front] @ np.asarray(intrinsics, np.float64).T
    xy = pix[:, :2] / pix[:, 2:3]
    out[front] = np.stack([2 * xy[:, 0] / width - 1, 2 * xy[:, 1] / height - 1], axis=1)
    return np.clip(out, -BEHIND_CAMERA, BEHIND_CAMERA).astype(np.float32)
