"""The sim twin: the MuJoCo tabletop behind the `ArmDriver` interface, running in real time.

A real arm never pauses between commands: its controller keeps tracking
the last target whether or not the policy speaks. The twin does the same.
A physics thread advances the tabletop scene in wall-clock time, in slices
of `slice_s` (10 ms = 5 physics steps of 2 ms); `command()` turns a target
into joint servo set-points (one damped-least-squares IK step for an
end-effector pose, exactly as the simulated env does per tick) and returns
at once; `hold()` freezes the set-points at the measured joints, which is
and engages the twin's brakes (a large joint damping, released by the next
command): that is what a watchdog or protective stop does to a real arm
(decelerate, then brake), and without it the twin's servos, tuned for
tracking, would ring for a couple of tenths of a second after the stop.

So the same `Robot`, server, watchdog and web page run against it as
against a Franka or a UR, and every fault test (a killed policy process, a
lost link) measures a real stopping time of a real simulated arm.

Sim-only extras the `Robot` uses when present: `start_episode(seed,
instruction)` lays out a new scene and returns its instruction;
`episode_status()` gives (success, done, info) from privileged state, so
a policy's success rate through the server can be compared with a direct run.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from embodied.types import CameraInfo, CameraSpec
from hardware.config import CameraConfig, RobotConfig
from hardware.robot import ArmState, ArmTarget, CameraFrame

BRAKE_DAMPING = 300.0   # N m s/rad on every arm joint while holding: the twin's brakes
SLICE_S = 0.01          # physics advanced per slice of the real-time thread (s)
MAX_CATCH_UP_S = 0.1    # a thread that fell further behind than this drops the lag instead of racing


class SimTwinArm:
    """`ArmDriver` over a `TabletopEnv` stepped in real time by a background thread.

    task/robot/image_size/cameras: the tabletop config (see envs.tabletop.env.TabletopConfig).
    realtime: False steps the physics only inside `advance()` (for tests that need determinism).
    """

    control_modes = ("ee", "joint")

    def __init__(self, task: str = "reach", robot: str = "panda", cameras: tuple[str, ...] = ("front", "wrist"),
                 image_size: tuple[int, int] = (128, 128), max_translation: float = 0.03,
                 max_rotation: float = 0.2, control_hz: float = 10.0, realtime: bool = True):
        self.options = {"task": task, "robot": robot, "cameras": tuple(cameras), "image_size": tuple(image_size),
                        "max_translation": max_translation, "max_rotation": max_rotation, "control_hz": control_hz}
        self.realtime = realtime
        self.env: Any = None
        self.lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._steps_per_slice = 0
        self.sim_time = 0.0          # physics seconds advanced by the thread since connect
        self.commands = 0            # commands since the episode began
        self.n_joints = 0
        self._gripper = 1.0

    # ---------------------------------------------------------------- ArmDriver
    def connect(self) -> None:
        if self.env is not None:
            return
        os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display (a robot PC has none)
        from envs.tabletop.env import TabletopConfig, TabletopEnv

        self.env = TabletopEnv(TabletopConfig(**self.options))
        self.n_joints = self.env.scene.n_arm
        self._damping = self.env.model.dof_damping[self.env.scene.arm_dof_adr].copy()
        self._steps_per_slice = max(1, round(SLICE_S / self.env.config.physics_dt))
        self.env.reset(seed=0)
        if self.realtime:
            self._running.set()
            self._thread = threading.Thread(target=self._physics_loop, name="sim-twin-physics", daemon=True)
            self._thread.start()

    def read(self) -> ArmState:
        with self.lock:
            state = self.env.proprioception()
            return ArmState(state["joint_pos"], state["joint_vel"], state["ee_pos"], state["ee_quat"],
                            float(state["gripper"][0]))

    def command(self, target: ArmTarget) -> None:
        env = self.env
        s = env.scene
        with self.lock:
            if target.joint_pos is not None:
                rng = env.controller.ik.range
                q = np.clip(np.asarray(target.joint_pos, np.float64), rng[:, 0], rng[:, 1])
            else:
                q = env.controller.ik.step(env.data, np.asarray(target.ee_pos, np.float64),
                                           np.asarray(target.ee_quat, np.float64))
                env.controller.target_pos = np.asarray(target.ee_pos, np.float64).copy()
                env.controller.target_quat = np.asarray(target.ee_quat, np.float64).copy()
            env.model.dof_damping[s.arm_dof_adr] = self._damping  # brakes off
            env.data.ctrl[s.arm_actuator_ids] = q
            env.data.ctrl[s.gripper_actuator_ids] = env.controller.gripper_ctrl(target.gripper)
            self._gripper = float(target.gripper)
            self.commands += 1

    def hold(self) -> None:
        env = self.env
        if env is None:
            return
        s = env.scene
        with self.lock:
            env.data.ctrl[s.arm_actuator_ids] = env.data.qpos[s.arm_qpos_adr]
            env.model.dof_damping[s.arm_dof_adr] = BRAKE_DAMPING

    def recover(self) -> None:
        """Nothing latches in the twin; kept for the protocol."""

    def disconnect(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self.env is not None:
            self.env.close()
            self.env = None

    # ---------------------------------------------------------------- sim-only extras
    def start_episode(self, seed: int | None, instruction: str | None) -> str:
        """Lay out a new scene (as env.reset does) and return its instruction."""
        with self.lock:
            options = {"instruction": instruction} if instruction else None
            self.env.model.dof_damping[self.env.scene.arm_dof_adr] = self._damping
            self.env.reset(seed=seed, options=options)
            self.commands = 0
            return self.env.instruction

    def episode_status(self) -> tuple[bool, bool, dict[str, Any]]:
        """(success, done, info) from privileged state; done on success or at the task's step limit."""
        env = self.env
        with self.lock:
            success = bool(env.goal.success(env.world))
            subtask = env.goal.subtask(env.world) if env.task.long_horizon else env.instruction
        done = success or self.commands >= env.max_episode_steps
        return success, done, {"success": success, "subtask": subtask, "task": env.config.task}

    def advance(self, seconds: float) -> None:
        """Step the physics by `seconds` now (the thread does this itself when realtime)."""
        n = max(1, round(seconds / (self._steps_per_slice * self.env.config.physics_dt)))
        for _ in range(n):
            self._slice()

    def make_camera(self, config: CameraConfig) -> SimTwinCamera:
        return SimTwinCamera(self, config)

    # ---------------------------------------------------------------- physics thread
    def _slice(self) -> None:
        import mujoco

        env = self.env
        with self.lock:
            mujoco.mj_step(env.model, env.data, nstep=self._steps_per_slice)
            mujoco.mj_kinematics(env.model, env.data)
            mujoco.mj_comPos(env.model, env.data)
            self.sim_time += self._steps_per_slice * env.config.physics_dt

    def _physics_loop(self) -> None:
        period = self._steps_per_slice * self.env.config.physics_dt
        next_t = time.monotonic()
        while self._running.is_set():
            self._slice()
            next_t += period
            lag = time.monotonic() - next_t
            if lag > MAX_CATCH_UP_S:
                next_t = time.monotonic()  # fell behind (a busy machine): slow down rather than race
            elif lag < 0:
                time.sleep(-lag)


class SimTwinCamera:
    """A `Camera` that renders one of the twin's scene cameras (RGB and depth, K and T_world_cam)."""

    def __init__(self, arm: SimTwinArm, config: CameraConfig):
        self.arm, self.config = arm, config
        h, w = arm.options["image_size"]
        if config.name not in arm.options["cameras"]:
            raise ValueError(f"the twin renders cameras {arm.options['cameras']}, not {config.name!r}")
        self.spec = CameraSpec(config.name, h, w, depth=True)

    def connect(self) -> None:
        self.arm.connect()

    def read(self) -> CameraFrame:
        from envs.tabletop.env import DEPTH_MAX

        env = self.arm.env
        with self.arm.lock:
            rgb, depth = env._render(self.config.name, depth=True)
            info = env.camera_info()[self.config.name]
        return CameraFrame(rgb, np.minimum(depth, DEPTH_MAX).astype(np.float32),
                           CameraInfo(info["intrinsics"], info["extrinsics"]))

    def disconnect(self) -> None:
        pass


def make_driver(config: RobotConfig) -> SimTwinArm:
    """`connection` of the twin's config: task, robot, image_size, realtime (all optional)."""
    c = dict(config.connection)
    cams = tuple(cam.name for cam in config.cameras)
    size = tuple(c.get("image_size", (config.cameras[0].height, config.cameras[0].width) if config.cameras
                       else (128, 128)))
    return SimTwinArm(task=c.get("task", "reach"), robot=c.get("robot", "panda"), cameras=cams, image_size=size,
                      max_translation=config.max_translation, max_rotation=config.max_rotation,
                      control_hz=config.control_hz, realtime=bool(c.get("realtime", True)))
