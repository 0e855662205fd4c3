"""Render a Meta-World scene's named cameras: RGB, depth, and pinhole models.

Images come from `mujoco.Renderer` directly (one renderer for every camera,
all the same size), not from Meta-World's single-camera `render()`.

Meta-World's fixed corner cameras are mounted upside down (their image "up"
points at the floor), so their frames show the table on top. A fixed camera
whose up axis points below the horizon is turned 180 degrees about its
optical axis: its image is rotated by 180 degrees and its published pose
turned to match, so pixels, depth and CameraInfo stay one consistent pinhole
camera. Cameras that ride on the arm are never turned.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from envs.metaworld.frame import R_BASE_MW

# MuJoCo's camera axes are x right, y up, z backwards; OpenCV's are x right, y down, z forward.
_MJ_TO_CV = np.diag([1.0, -1.0, -1.0])
# A half turn about the optical axis: x -> -x, y -> -y.
_HALF_TURN = np.diag([-1.0, -1.0, 1.0])


def intrinsics(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """3x3 K (pixels) of a MuJoCo camera with vertical field of view `fovy_deg` and square pixels."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def extrinsics(cam_xpos: np.ndarray, cam_xmat: np.ndarray, turned: bool) -> np.ndarray:
    """4x4 T_base_cam in OpenCV axes from MuJoCo's camera pose in Meta-World's world frame."""
    rot = R_BASE_MW @ np.asarray(cam_xmat, np.float64).reshape(3, 3) @ _MJ_TO_CV
    if turned:
        rot = rot @ _HALF_TURN
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = R_BASE_MW @ np.asarray(cam_xpos, np.float64)
    return t


class CameraRig:
    """The cameras `names` of one MuJoCo model, rendered at `height` x `width`.

    `render(data)` -> ({name: (H, W, 3) uint8}, {name: (H, W) float32 metres});
    depth is rendered only when `depth` is true (an extra pass, about a tenth
    of the cost of an RGB pass with shadows). `shadows=False` skips MuJoCo's
    shadow maps, which are most of the cost on a CPU (software GL).
    `antialiasing=False` turns the model's 4x MSAA off and `reflections=False`
    the floor's mirror pass: on llvmpipe a 64x64 "corner" frame then takes
    11 ms instead of 34 ms (measured with shadows off). The MSAA setting is the
    model's (`vis.quality.offsamples`), so the rig sets it on `model`.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        names: tuple[str, ...],
        height: int,
        width: int,
        depth: bool = True,
        shadows: bool = True,
        antialiasing: bool = True,
        reflections: bool = True,
    ):
        known = [model.camera(i).name for i in range(model.ncam)]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"Meta-World has no camera {unknown}; choose from {known}")
        limit = (model.vis.global_.offheight, model.vis.global_.offwidth)
        if height > limit[0] or width > limit[1]:
            raise ValueError(
                f"camera images of {height}x{width} exceed Meta-World's offscreen buffer {limit[0]}x{limit[1]}; "
                "ask for a smaller height/width"
            )
        self.model = model
        self.names = tuple(names)
        self.height, self.width = int(height), int(width)
        self.depth = depth
        self.shadows = shadows
        self.reflections = reflections
        if not antialiasing:
            model.vis.quality.offsamples = 0  # read when the GL context is made, i.e. by the first render
        self._ids = {n: model.camera(n).id for n in names}
        self._turned = {n: self._upside_down(model, data, self._ids[n]) for n in names}
        self._k = {n: intrinsics(float(model.cam_fovy[self._ids[n]]), self.height, self.width) for n in names}
        self._renderer: mujoco.Renderer | None = None

    @staticmethod
    def _upside_down(model: mujoco.MjModel, data: mujoco.MjData, cam_id: int) -> bool:
        fixed_to_world = model.cam_bodyid[cam_id] == 0
        up_z = data.cam_xmat[cam_id].reshape(3, 3)[2, 1]
        return bool(fixed_to_world and up_z < 0)

    def turned(self, name: str) -> bool:
        """Whether camera `name` is published turned by 180 degrees (see the module doc)."""
        return self._turned[name]

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            except mujoco.FatalError as e:
                raise RuntimeError(
                    f"MuJoCo could not open an OpenGL context ({e}). Without a display, set MUJOCO_GL=egl "
                    "(or osmesa) before anything imports mujoco, or build the env with cameras=()"
                ) from e
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.reflections
        return self._renderer

    def render(self, data: mujoco.MjData) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        images: dict[str, np.ndarray] = {}
        depths: dict[str, np.ndarray] = {}
        if not self.names:
            return images, depths
        r = self._get_renderer()
        for name in self.names:
            r.update_scene(data, camera=self._ids[name])
            images[name] = self._orient(name, r.render())
        if self.depth:
            r.enable_depth_rendering()
            try:
                for name in self.names:
                    r.update_scene(data, camera=self._ids[name])
                    depths[name] = self._orient(name, r.render()).astype(np.float32)
            finally:
                r.disable_depth_rendering()
        return images, depths

    def _orient(self, name: str, img: np.ndarray) -> np.ndarray:
        # A copy: the renderer reuses its buffer, and a 180-degree turn is a view.
        return np.ascontiguousarray(img[::-1, ::-1] if self._turned[name] else img)

    def infos(self, data: mujoco.MjData) -> dict[str, dict[str, np.ndarray]]:
        """{name: {"intrinsics": 3x3, "extrinsics": 4x4 T_base_cam (OpenCV axes)}}, float32, for `data` now."""
        out = {}
        for name in self.names:
            i = self._ids[name]
            out[name] = {
                "intrinsics": self._k[name].astype(np.float32),
                "extrinsics": extrinsics(data.cam_xpos[i], data.cam_xmat[i], self._turned[name]).astype(np.float32),
            }
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
