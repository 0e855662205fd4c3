"""Privileged read-only view of the simulation: object poses, contacts and the
geometric predicates that task success is made of.

Used by success checks and scripted experts, never by observations. All
positions are metres in the world frame; speeds m/s.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.tabletop.scene import (
    BOWL_FLOOR_RADIUS,
    BOWL_HEIGHT,
    DRAWER_FLOOR_Z,
    DRAWER_INNER,
    PLATE_HALF_HEIGHT,
    PLATE_RADIUS,
    Scene,
)

RESTING_SPEED = 0.05  # m/s: below this an object counts as at rest


def _mask(n: int, ids) -> np.ndarray:
    m = np.zeros(n, bool)
    m[list(ids)] = True
    return m


class World:
    def __init__(self, scene: Scene, data: mujoco.MjData):
        self.scene = scene
        self.model = scene.model
        self.data = data
        n = scene.model.ngeom
        self._geoms = {o.name: _mask(n, o.geom_ids) for o in scene.objects}
        self._left = _mask(n, scene.finger_geom_ids[0])
        self._right = _mask(n, scene.finger_geom_ids[1])
        self._robot = _mask(n, scene.robot_geom_ids)

    # --- poses -----------------------------------------------------------------
    def pos(self, name: str) -> np.ndarray:
        return self.data.xpos[self.scene.object(name).body_id].copy()

    def quat(self, name: str) -> np.ndarray:
        return self.data.xquat[self.scene.object(name).body_id].copy()

    def yaw(self, name: str) -> float:
        m = self.data.xmat[self.scene.object(name).body_id].reshape(3, 3)
        return float(np.arctan2(m[1, 0], m[0, 0]))

    def speed(self, name: str) -> float:
        o = self.scene.object(name)
        return float(np.linalg.norm(self.data.qvel[o.qvel_adr : o.qvel_adr + 3]))

    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.scene.ee_site_id].copy()

    def ee_mat(self) -> np.ndarray:
        return self.data.site_xmat[self.scene.ee_site_id].reshape(3, 3).copy()

    def gripper_opening(self) -> float:
        q = self.data.qpos[self.scene.gripper_qpos_adr]
        return float(np.clip((q[0] - q[1]) / self.scene.gripper_open_width, 0.0, 1.0))

    def drawer_opening(self) -> float:
        """How far the drawer is pulled out (m), 0 = closed."""
        return float(self.data.qpos[self.scene.drawer_qpos_adr])

    def drawer_front_x(self) -> float:
        """World x of the drawer front's outer face (m)."""
        return float(self.drawer_front()[0])

    def drawer_front(self) -> np.ndarray:
        """World position of the middle of the drawer front's outer face (m), where its handle is."""
        g = self.scene.drawer_front_geom_id
        return self.data.geom_xpos[g] - np.array([self.model.geom_size[g][0], 0.0, 0.0])

    def drawer_center(self) -> np.ndarray:
        """World position of the centre of the drawer floor's top surface."""
        c = self.data.xpos[self.scene.drawer_body_id].copy()
        c[2] += DRAWER_FLOOR_Z
        return c

    # --- contacts --------------------------------------------------------------
    def _contact_pairs(self) -> np.ndarray:
        n = self.data.ncon
        return self.data.contact.geom[:n] if n else np.zeros((0, 2), int)

    def touching(self, mask_a: np.ndarray, mask_b: np.ndarray) -> bool:
        """Whether any geom in boolean mask `mask_a` (ngeom,) is in contact with one in `mask_b`."""
        pairs = self._contact_pairs()
        if not len(pairs):
            return False
        g0, g1 = pairs[:, 0], pairs[:, 1]
        return bool(np.any((mask_a[g0] & mask_b[g1]) | (mask_a[g1] & mask_b[g0])))

    def grasped(self, name: str) -> bool:
        """Both fingers touch the object."""
        g = self._geoms[name]
        return self.touching(g, self._left) and self.touching(g, self._right)

    def robot_touches(self, name: str) -> bool:
        return self.touching(self._geoms[name], self._robot)

    def settled(self, name: str) -> bool:
        """At rest and let go of."""
        return self.speed(name) < RESTING_SPEED and not self.robot_touches(name)

    # --- placement predicates -----------------------------------------------------
    def on_table(self, name: str, tol: float = 0.01) -> bool:
        o = self.scene.object(name)
        return abs(self.pos(name)[2] - o.half_height) < tol

    def in_bowl(self, name: str) -> bool:
        p, b = self.pos(name), self.pos("bowl")
        o = self.scene.object(name)
        inside = np.linalg.norm(p[:2] - b[:2]) < BOWL_FLOOR_RADIUS + 0.01
        low = b[2] - 0.005 < p[2] - o.half_height < b[2] + BOWL_HEIGHT + 0.02
        return bool(inside and low)

    def on_plate(self, name: str) -> bool:
        p, c = self.pos(name), self.pos("plate")
        o = self.scene.object(name)
        inside = np.linalg.norm(p[:2] - c[:2]) < PLATE_RADIUS - 0.01
        bottom = p[2] - o.half_height
        return bool(inside and c[2] + 2 * PLATE_HALF_HEIGHT - 0.006 < bottom < c[2] + 2 * PLATE_HALF_HEIGHT + 0.015)

    def on_top_of(self, top: str, bottom: str) -> bool:
        pt, pb = self.pos(top), self.pos(bottom)
        ot, ob = self.scene.object(top), self.scene.object(bottom)
        aligned = np.linalg.norm(pt[:2] - pb[:2]) < 0.03
        stacked = abs((pt[2] - pb[2]) - (ot.half_height + ob.half_height)) < 0.012
        return bool(aligned and stacked)

    def in_drawer(self, name: str) -> bool:
        """Inside the drawer's walls (in the drawer's own frame, so open or closed)."""
        o = self.scene.object(name)
        rel = self.pos(name) - self.data.xpos[self.scene.drawer_body_id]
        L, W, _H = DRAWER_INNER
        inside = abs(rel[0]) < L / 2 and abs(rel[1]) < W / 2
        bottom = rel[2] - o.half_height
        return bool(inside and DRAWER_FLOOR_Z - 0.006 < bottom < DRAWER_FLOOR_Z + 0.02)
