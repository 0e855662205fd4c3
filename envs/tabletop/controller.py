"""Arm control: turn one action per control tick into position-servo targets.

`ee_delta`: the commanded pose (metres, axis-angle radians in the world frame)
is integrated into a target pose, and one damped-least-squares step of
differential IK (MuJoCo's own site Jacobian, a nullspace pull toward the home
posture, joint limits clipped) turns it into joint targets. `joint_pos`: the
joint targets are the action. Either way the physics substeps then run in C
with no Python in between.
"""

from __future__ import annotations

import mujoco
import numpy as np

from embodied.geometry import integrate_ee_target, quat_error
from envs.tabletop.scene import Scene

# Rotation of the end-effector site when the gripper points straight down with
# its fingers closing along world x (columns: site x, y, z axes in the world).
TOP_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def quat_from_mat(mat: np.ndarray) -> np.ndarray:
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(mat, dtype=np.float64).reshape(9))
    return q


class DiffIK:
    """One damped-least-squares IK step per call for the scene's arm.

    damping: λ in (JJᵀ + λ²I)⁻¹ (m); nullspace_gain: fraction of the way
    toward the home posture per step, in the Jacobian's nullspace.
    """

    def __init__(self, scene: Scene, q_home: np.ndarray, damping: float = 0.03, nullspace_gain: float = 0.2):
        self.scene = scene
        self.model = scene.model
        self.q_home = np.asarray(q_home, np.float64)
        self.damping2 = damping**2
        self.nullspace_gain = nullspace_gain
        self.range = scene.model.jnt_range[scene.arm_joint_ids].copy()
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    def step(
        self, data: mujoco.MjData, target_pos: np.ndarray, target_quat: np.ndarray, q: np.ndarray | None = None
    ) -> np.ndarray:
        """Joint targets (rad) that move the EE site toward the target pose.

        Uses the kinematics currently in `data` (call mj_kinematics/mj_comPos first).
        """
        s = self.scene
        site = s.ee_site_id
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, site)
        J = np.vstack([self._jacp[:, s.arm_dof_adr], self._jacr[:, s.arm_dof_adr]])
        cur_quat = quat_from_mat(data.site_xmat[site])
        err = np.concatenate([target_pos - data.site_xpos[site], quat_error(target_quat, cur_quat)])
        JJt = J @ J.T + self.damping2 * np.eye(6)
        Jpinv = J.T @ np.linalg.inv(JJt)
        if q is None:
            q = data.qpos[s.arm_qpos_adr]
        dq = Jpinv @ err
        null = np.eye(len(q)) - Jpinv @ J
        dq += null @ (self.nullspace_gain * (self.q_home - q))
        return np.clip(q + dq, self.range[:, 0], self.range[:, 1])


def solve_home(
    scene: Scene, seed_q: np.ndarray, pos: np.ndarray, rot: np.ndarray = TOP_DOWN, iters: int = 300
) -> np.ndarray:
    """Joint posture (rad) that puts the EE site at `pos` with rotation `rot`, by iterating DiffIK."""
    data = mujoco.MjData(scene.model)
    q = np.asarray(seed_q, np.float64).copy()
    ik = DiffIK(scene, q, damping=0.01, nullspace_gain=0.0)
    quat = quat_from_mat(rot)
    for _ in range(iters):
        data.qpos[scene.arm_qpos_adr] = q
        mujoco.mj_kinematics(scene.model, data)
        mujoco.mj_comPos(scene.model, data)
        q = ik.step(data, pos, quat, q)
    data.qpos[scene.arm_qpos_adr] = q
    mujoco.mj_kinematics(scene.model, data)
    err = np.linalg.norm(data.site_xpos[scene.ee_site_id] - pos)
    if err > 2e-3:
        raise RuntimeError(f"could not solve the home pose of {scene.config.robot!r} (residual {err:.4f} m)")
    return q


class ArmController:
    """Turns an action into actuator targets for one tick (no physics stepping here).

    mode "ee_delta": action (7,) = Δpos (m), Δrot axis-angle (rad), gripper opening.
    mode "joint_pos": action (n_arm+1,) = joint targets (rad), gripper opening.
    The integrated EE target stays within `leash` metres / `leash_rot` rad of the
    actual pose, so pushing against an obstacle does not wind up.
    """

    def __init__(self, scene: Scene, q_home: np.ndarray, mode: str, max_translation: float, max_rotation: float):
        if mode not in ("ee_delta", "joint_pos"):
            raise ValueError(f"tabletop envs support control modes 'ee_delta' and 'joint_pos', got {mode!r}")
        self.scene = scene
        self.mode = mode
        self.ik = DiffIK(scene, q_home)
        self.leash = 2.0 * max_translation
        self.leash_rot = 2.0 * max_rotation
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([1.0, 0, 0, 0])
        g_lo = scene.model.actuator_ctrlrange[scene.gripper_actuator_ids, 0]
        g_hi = scene.model.actuator_ctrlrange[scene.gripper_actuator_ids, 1]
        # Finger 1 opens toward its upper limit, finger 2 toward its lower one.
        self._grip_closed = np.array([g_lo[0], g_hi[1]])
        self._grip_open = np.array([g_hi[0], g_lo[1]])

    def reset(self, data: mujoco.MjData) -> None:
        """Start the EE target at the current pose (call after mj_forward)."""
        site = self.scene.ee_site_id
        self.target_pos = data.site_xpos[site].copy()
        self.target_quat = quat_from_mat(data.site_xmat[site])

    def gripper_ctrl(self, opening: float) -> np.ndarray:
        o = float(np.clip(opening, 0.0, 1.0))
        return self._grip_closed + o * (self._grip_open - self._grip_closed)

    def apply(self, model: mujoco.MjModel, data: mujoco.MjData, action: np.ndarray) -> None:
        s = self.scene
        if self.mode == "joint_pos":
            q_des = np.clip(action[: s.n_arm], self.ik.range[:, 0], self.ik.range[:, 1])
        else:
            site = s.ee_site_id
            pos, quat = integrate_ee_target(self.target_pos, self.target_quat, action[:3], action[3:6],
                                            data.site_xpos[site], quat_from_mat(data.site_xmat[site]),
                                            self.leash, self.leash_rot)
            self.target_pos, self.target_quat = pos, quat
            q_des = self.ik.step(data, pos, quat)
        data.ctrl[s.arm_actuator_ids] = q_des
        data.ctrl[s.gripper_actuator_ids] = self.gripper_ctrl(action[-1])
