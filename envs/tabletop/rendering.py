"""Offscreen RGB + depth rendering of named cameras, and their pinhole models.

One `mjr_render` per camera fills both the colour and the depth buffer, so a
camera costs one render, not two. Depth comes back from OpenGL as a
reversed-Z buffer value d in [0, 1] (1 at the near plane, 0 at the far
plane); the distance along the optical axis is z = n·f / (n + d·(f − n)).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

# MuJoCo cameras look down their -z with +y up; OpenCV cameras look down +z
# with +y down: flip the y and z axes.
_MJ_TO_CV = np.diag([1.0, -1.0, -1.0])


def intrinsics(model: mujoco.MjModel, cam_id: int, height: int, width: int) -> np.ndarray:
    """3x3 K (pixels) from the camera's vertical field of view and the image size."""
    fovy = math.radians(float(model.cam_fovy[cam_id]))
    f = 0.5 * height / math.tan(0.5 * fovy)
    return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def extrinsics(data: mujoco.MjData, cam_id: int) -> np.ndarray:
    """4x4 T_world_cam (metres) in OpenCV axes (x right, y down, z forward)."""
    T = np.eye(4)
    T[:3, :3] = data.cam_xmat[cam_id].reshape(3, 3) @ _MJ_TO_CV
    T[:3, 3] = data.cam_xpos[cam_id]
    return T


class CameraRenderer:
    """Renders RGB (HxWx3 uint8) and depth (HxW float32, metres) for a list of cameras.

    The GL context is made on first use, so an env can be built in one process
    and rendered in another (vector envs). Call `close()` when done.
    """

    def __init__(self, model: mujoco.MjModel, cameras: tuple[str, ...], height: int, width: int):
        self.model = model
        self.height, self.width = int(height), int(width)
        self.cam_ids = {}
        for name in cameras:
            cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cid < 0:
                raise ValueError(f"the scene has no camera {name!r}")
            self.cam_ids[name] = cid
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(
                f"image size {height}x{width} exceeds the offscreen buffer "
                f"{model.vis.global_.offheight}x{model.vis.global_.offwidth}"
            )
        self._gl = None
        self._ctx = None
        self._scene = None
        self._option = mujoco.MjvOption()
        self._option.sitegroup[:] = 0  # sites are markers for code, not things a camera sees
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        extent = model.stat.extent
        self._near = float(model.vis.map.znear * extent)
        self._far = float(model.vis.map.zfar * extent)

    def _ensure(self) -> None:
        if self._ctx is not None:
            return
        from mujoco import gl_context

        if gl_context.GLContext is None:
            raise RuntimeError("no OpenGL backend for offscreen rendering; set MUJOCO_GL=egl (or osmesa)")
        self._gl = gl_context.GLContext(self.width, self.height)
        self._gl.make_current()
        self._scene = mujoco.MjvScene(self.model, maxgeom=2000)
        self._ctx = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._ctx)
        self._ctx.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR

    def render(self, data: mujoco.MjData, camera: str, depth: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb (H,W,3) uint8, depth (H,W) float32 metres or None) from `camera`."""
        self._ensure()
        self._gl.make_current()
        self._cam.fixedcamid = self.cam_ids[camera]
        mujoco.mjv_updateScene(self.model, data, self._option, None, self._cam, mujoco.mjtCatBit.mjCAT_ALL, self._scene)
        mujoco.mjr_render(self._rect, self._scene, self._ctx)
        rgb = np.empty((self.height, self.width, 3), np.uint8)
        if not depth:
            mujoco.mjr_readPixels(rgb, None, self._rect, self._ctx)
            return np.ascontiguousarray(rgb[::-1]), None
        buf = np.empty((self.height, self.width), np.float32)
        mujoco.mjr_readPixels(rgb, buf, self._rect, self._ctx)
        n, f = self._near, self._far
        z = (n * f) / (n + buf[::-1].astype(np.float64) * (f - n))
        return np.ascontiguousarray(rgb[::-1]), z.astype(np.float32)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.free()
            self._ctx = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None
        self._scene = None
