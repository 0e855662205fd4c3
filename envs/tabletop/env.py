"""`TabletopEnv`: one language-conditioned tabletop task as a `gymnasium.Env`.

Follows the convention in `embodied.sim`: Dict observations {"images",
"depth", "state"} (a state-only env, `cameras=()`, has just {"state"}: gymnasium
forbids empty Dict spaces), info with "instruction", "success", "cameras", "time" and
"subtask", `reset(options={"instruction": ...})`, termination on success,
`env.unwrapped.embodiment_spec`, and `env.unwrapped.make_expert()`.

One control tick (10 Hz by default) = one IK solve in Python, then
`mj_step(nstep=substeps)` in C (physics at 500 Hz).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from embodied.geometry import image_coordinates
from embodied.types import GOAL_UV, ActionSpec, CameraSpec, EmbodimentSpec
from envs.tabletop.controller import TOP_DOWN, ArmController, solve_home
from envs.tabletop.layout import apply_layout, sample_layout
from envs.tabletop.rendering import CameraRenderer, extrinsics, intrinsics
from envs.tabletop.scene import ROBOTS, Scene, SceneConfig, build_scene
from envs.tabletop.tasks import FAMILIES, GOAL_POINTS_DIM, Goal, goal_points, make_task
from envs.tabletop.world import World

CAMERAS: tuple[str, ...] = ("front", "wrist")
HOME_EE_POS = (0.45, 0.0, 0.25)  # where the gripper starts each episode (m, world), pointing down
# The box the safety filter keeps the grip point in (m, world): the table's reach with a margin; its floor
# is 5 mm above the tabletop, under the lowest point the experts use (13 mm).
WORKSPACE_LOW = (0.20, -0.45, 0.005)
WORKSPACE_HIGH = (0.80, 0.45, 0.45)
MAX_JOINT_SPEED = 20.0  # rad/s: bound of the joint_vel observation space
DEPTH_MAX = 30.0  # m: far clipping distance, the bound of depth observations


@dataclasses.dataclass(frozen=True)
class TabletopConfig:
    """Everything that defines a tabletop env. Lengths m, angles rad, rates Hz, image size pixels."""

    task: str = "pick"
    robot: str = "panda"
    control_mode: str = "ee_delta"
    cameras: tuple[str, ...] = CAMERAS
    image_size: tuple[int, int] = (128, 128)  # (height, width)
    control_hz: float = 10.0
    physics_dt: float = 0.002
    max_translation: float = 0.03  # per tick
    max_rotation: float = 0.2  # per tick
    max_episode_steps: int | None = None  # None: the family's default
    # > 1: reset(seed=s) lays out scene s // n and draws its (s % n)-th goal, so that consecutive seeds show one
    # scene with n instructions. Demonstrations collected so make the instruction matter: with one goal per
    # scene the image alone tells a policy which demo it is in, and it learns to ignore the words.
    # Families with nothing to choose (the drawer ones) ignore it.
    goals_per_layout: int = 1
    # > 0: a diagnostic of how precisely a policy reading goal_points must know where things are. Each episode
    # draws one fixed offset (metres, normal with this std per axis) for the subject and one for the destination
    # (the same one where the destination is the subject) and adds them to goal_points and its image coordinates.
    goal_points_noise: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        if self.task not in FAMILIES:
            raise ValueError(f"unknown tabletop task {self.task!r}; choose one of {FAMILIES}")
        if self.robot not in ROBOTS:
            raise ValueError(f"unknown robot {self.robot!r}; choose one of {sorted(ROBOTS)}")
        bad = [c for c in self.cameras if c not in CAMERAS]
        if bad:
            raise ValueError(f"unknown cameras {bad}; the tabletop scene has {CAMERAS} (use cameras=() for state only)")
        if not self.goal_points_noise >= 0:
            raise ValueError(f"goal_points_noise is a std in metres, >= 0; got {self.goal_points_noise}")
        if self.goals_per_layout < 1:
            raise ValueError(f"goals_per_layout must be >= 1, got {self.goals_per_layout}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ValueError(f"image_size must be (height, width) of at least 8 pixels, got {self.image_size}")
        steps = self.control_hz * self.physics_dt
        if not self.control_hz > 0 or abs(round(1 / steps) - 1 / steps) > 1e-6:
            raise ValueError(f"physics_dt {self.physics_dt} s must divide the control period 1/{self.control_hz} s")

    @property
    def substeps(self) -> int:
        return round(1.0 / (self.control_hz * self.physics_dt))


@functools.lru_cache(maxsize=8)
def _home_posture(robot: str) -> tuple[float, ...]:
    scene = build_scene(SceneConfig(robot=robot))
    return tuple(solve_home(scene, np.array(ROBOTS[robot].seed_qpos), np.array(HOME_EE_POS), TOP_DOWN))


class TabletopEnv(gym.Env):
    """A tabletop manipulation task (`task` = one of `FAMILIES`) for one arm.

    Keyword arguments are the fields of `TabletopConfig` (or pass `config=`),
    plus gym's `render_mode` ("rgb_array" returns the front camera image).
    Reward is 1.0 on the tick the task succeeds (which also terminates), else 0.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium convention)

    def __init__(self, config: TabletopConfig | None = None, render_mode: str | None = None, **kwargs: Any):
        if config is None:
            config = TabletopConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config
        self.render_mode = render_mode
        self.metadata = dict(self.metadata, render_fps=config.control_hz)
        h, w = config.image_size
        self.scene: Scene = build_scene(SceneConfig(robot=config.robot, render_height=h, render_width=w))
        self.model = self.scene.model
        self.model.opt.timestep = config.physics_dt
        self.data = mujoco.MjData(self.model)
        self.world = World(self.scene, self.data)
        self.task = make_task(config.task, self.scene)
        self.max_episode_steps = config.max_episode_steps or self.task.max_steps
        self.q_home = np.array(_home_posture(config.robot))
        self.controller = ArmController(
            self.scene, self.q_home, config.control_mode, config.max_translation, config.max_rotation
        )
        self._renderer: CameraRenderer | None = None
        self._render_cams = tuple(dict.fromkeys(config.cameras + (("front",) if render_mode else ())))
        h, w = config.image_size
        ids = {cam: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, cam) for cam in config.cameras}
        # (camera id, K): K depends only on the model and the image size, so it is made once.
        self._cameras = {cam: (cid, intrinsics(self.model, cid, h, w).astype(np.float32)) for cam, cid in ids.items()}

        n = self.scene.n_arm
        if config.control_mode == "ee_delta":
            self.action_spec = ActionSpec.ee_delta(config.max_translation, config.max_rotation, config.control_hz)
        else:
            rng = self.model.jnt_range[self.scene.arm_joint_ids]
            self.action_spec = ActionSpec(
                mode="joint_pos",
                low=tuple(rng[:, 0]) + (0.0,),
                high=tuple(rng[:, 1]) + (1.0,),
                rate_hz=config.control_hz,
                names=tuple(f"q{i}" for i in range(n)) + ("gripper",),
                units=("rad",) * n + ("open",),
            )
        uv = {GOAL_UV: 4 * len(config.cameras)} if config.cameras else {}  # where the goal points fall in each image
        self.embodiment_spec = EmbodimentSpec(
            name=f"tabletop-{config.robot}",
            cameras=tuple(CameraSpec(c, h, w) for c in config.cameras),
            state={"joint_pos": n, "joint_vel": n, "ee_pos": 3, "ee_quat": 4, "gripper": 1,
                   "goal_points": GOAL_POINTS_DIM} | uv,
            action=self.action_spec,
            privileged=("goal_points", *uv),
        )
        self.action_space = gym.spaces.Box(self.action_spec.low_array, self.action_spec.high_array, dtype=np.float32)
        jr = self.model.jnt_range[self.scene.arm_joint_ids].astype(np.float32)
        f32 = np.float32
        spaces: dict[str, gym.spaces.Space] = {}
        if config.cameras:  # gymnasium forbids empty Dict spaces: a state-only env has no "images"/"depth" keys
            spaces["images"] = gym.spaces.Dict({c: gym.spaces.Box(0, 255, (h, w, 3), np.uint8) for c in config.cameras})
            spaces["depth"] = gym.spaces.Dict({c: gym.spaces.Box(0.0, DEPTH_MAX, (h, w), f32) for c in config.cameras})
        self.observation_space = gym.spaces.Dict(
            {
                **spaces,
                "state": gym.spaces.Dict(
                    {
                        "joint_pos": gym.spaces.Box(jr[:, 0], jr[:, 1], dtype=f32),
                        "joint_vel": gym.spaces.Box(-MAX_JOINT_SPEED, MAX_JOINT_SPEED, (n,), f32),
                        "ee_pos": gym.spaces.Box(-2.0, 2.0, (3,), f32),
                        "ee_quat": gym.spaces.Box(-1.0, 1.0, (4,), f32),
                        "gripper": gym.spaces.Box(0.0, 1.0, (1,), f32),
                        "goal_points": gym.spaces.Box(-2.0, 2.0, (GOAL_POINTS_DIM,), f32),
                    } | {k: gym.spaces.Box(-2.0, 2.0, (dim,), f32) for k, dim in uv.items()}
                ),
            }
        )
        self._jr = jr
        self.goal: Goal | None = None
        self.instruction = ""
        self.steps = 0
        self.start_positions: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        n = self.config.goals_per_layout
        variant = None
        if seed is not None and n > 1 and self.task.chooses_goal:
            seed, variant = divmod(seed, n)
        super().reset(seed=seed)
        rng = self.np_random
        # The goal's own stream when scenes are shared, so that drawing it leaves the layout's draws unchanged.
        goal_rng = rng if variant is None else np.random.default_rng([seed, variant])
        m, d, s = self.model, self.data, self.scene
        mujoco.mj_resetData(m, d)
        q = np.clip(self.q_home + rng.normal(0.0, 0.02, s.n_arm), self._jr[:, 0], self._jr[:, 1])
        d.qpos[s.arm_qpos_adr] = q
        d.ctrl[s.arm_actuator_ids] = q
        d.qpos[s.gripper_qpos_adr] = (0.04, -0.04)
        d.ctrl[s.gripper_actuator_ids] = self.controller.gripper_ctrl(1.0)

        chosen: list[tuple[Goal, dict]] = []

        def accept(layout) -> bool:
            # Predicates compare against start positions; they are filled in once the scene has settled.
            start: dict[str, np.ndarray] = {}
            goal = self.task.sample(goal_rng, layout, start)
            if goal is not None:
                chosen.append((goal, start))
            return goal is not None

        layout = sample_layout(rng, s, self.task.drawer_opening(rng), accept)
        apply_layout(s, m, d, layout, rng)
        if "start_ee" in chosen[-1][0].params:  # a task that starts with the arm elsewhere ("move")
            q = solve_home(s, q, np.asarray(chosen[-1][0].params["start_ee"]), TOP_DOWN)
            d.qpos[s.arm_qpos_adr] = q
            d.ctrl[s.arm_actuator_ids] = q
        mujoco.mj_step(m, d, nstep=25)  # let contacts settle before the first observation
        mujoco.mj_forward(m, d)
        self.layout = layout
        self.goal, start = chosen[-1]
        start.update({o.name: d.xpos[o.body_id].copy() for o in s.objects})
        self.start_positions = start
        self.controller.reset(d)
        self.steps = 0
        if self.config.goal_points_noise > 0:  # its own stream, so that the noise leaves every other draw alone
            noise_rng = np.random.default_rng([seed, variant or 0, 1]) if seed is not None else rng
            self._point_offsets = noise_rng.normal(0.0, self.config.goal_points_noise, (2, 3))
        override = (options or {}).get("instruction")
        if override is not None and (not isinstance(override, str) or not override.strip()):
            raise ValueError(f"options['instruction'] must be a non-empty string, got {override!r}")
        self.instruction = override or self.goal.instruction
        cameras = self.camera_info()
        return self._observation(cameras), self._info(self.goal.success(self.world), cameras)

    def step(self, action):
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != self.action_space.shape:
            raise ValueError(
                f"action has shape {a.shape}; this {self.config.control_mode} env takes {self.action_space.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a}")
        a = np.clip(a, self.action_space.low, self.action_space.high)
        m, d = self.model, self.data
        self.controller.apply(m, d, a)
        mujoco.mj_step(m, d, nstep=self.config.substeps)
        # Refresh poses (and the Jacobian's inputs) after the last substep; the
        # contacts of that substep stay valid, so a full mj_forward is not needed.
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_camlight(m, d)  # the wrist camera's pose, for rendering and goal_uv
        self.steps += 1
        success = bool(self.goal.success(self.world))
        truncated = self.steps >= self.max_episode_steps and not success
        cameras = self.camera_info()
        return self._observation(cameras), float(success), success, truncated, self._info(success, cameras)

    # ------------------------------------------------------------- observation
    def _observation(self, cameras: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
        """cameras: this tick's `camera_info()`."""
        state = self._observation_state(cameras)
        if not self.config.cameras:
            return {"state": state}
        images, depth = {}, {}
        for cam in self.config.cameras:
            rgb, z = self._render(cam, depth=True)
            images[cam] = rgb
            depth[cam] = np.minimum(z, DEPTH_MAX)
        return {"images": images, "depth": depth, "state": state}

    def _observation_state(self, cameras: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """`proprioception()` and the privileged goal points, in the world and in each of `cameras`' images
        (this tick's `camera_info()`) (float32 vectors), no rendering."""
        points = goal_points(self.goal, self.world)
        if self.config.goal_points_noise > 0:
            same = np.array_equal(points[:3], points[3:])  # the destination is the subject itself: one error
            points = points + self._point_offsets[[0, 0 if same else 1]].ravel().astype(np.float32)
        state = self.proprioception() | {"goal_points": np.clip(points, -2.0, 2.0)}
        if self.config.cameras:
            h, w = self.config.image_size
            state[GOAL_UV] = np.concatenate([
                image_coordinates(points.reshape(2, 3), c["intrinsics"], c["extrinsics"], h, w).ravel()
                for c in cameras.values()])
        return state

    def proprioception(self) -> dict[str, np.ndarray]:
        """What the arm measures of itself: joint_pos, joint_vel, ee_pos, ee_quat, gripper (float32 vectors)."""
        s, d = self.scene, self.data
        site = s.ee_site_id
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, d.site_xmat[site])
        if quat[0] < 0:
            quat = -quat  # one sign per rotation
        return {
            "joint_pos": np.clip(d.qpos[s.arm_qpos_adr], self._jr[:, 0], self._jr[:, 1]).astype(np.float32),
            "joint_vel": np.clip(d.qvel[s.arm_dof_adr], -MAX_JOINT_SPEED, MAX_JOINT_SPEED).astype(np.float32),
            "ee_pos": np.clip(d.site_xpos[site], -2.0, 2.0).astype(np.float32),
            "ee_quat": quat.astype(np.float32),
            "gripper": np.array([self.world.gripper_opening()], np.float32),
        }

    def _render(self, cam: str, depth: bool):
        if self._renderer is None:
            h, w = self.config.image_size
            self._renderer = CameraRenderer(self.model, self._render_cams, h, w)
        return self._renderer.render(self.data, cam, depth=depth)

    def camera_info(self) -> dict[str, dict[str, np.ndarray]]:
        """{camera: {"intrinsics": 3x3 K, "extrinsics": 4x4 T_world_cam (OpenCV axes)}} for the observed cameras."""
        return {cam: {"intrinsics": k.copy(), "extrinsics": extrinsics(self.data, cid).astype(np.float32)}
                for cam, (cid, k) in self._cameras.items()}

    def _info(self, success: bool, cameras: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
        subtask = self.goal.subtask(self.world) if self.task.long_horizon else self.instruction
        return {
            "instruction": self.instruction,
            "success": bool(success),
            "cameras": cameras,
            "time": self.steps / self.config.control_hz,
            "subtask": subtask,
            "task": self.config.task,
        }

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._render("front", depth=False)[0]

    def make_expert(self):
        """A scripted expert for this task that acts from privileged sim state (see experts.py)."""
        from envs.tabletop.experts import make_expert

        return make_expert(self)

    @property
    def workspace(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector workspace box (low (3,), high (3,)) in metres, for the safety filter."""
        return np.array(WORKSPACE_LOW, np.float32), np.array(WORKSPACE_HIGH, np.float32)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
