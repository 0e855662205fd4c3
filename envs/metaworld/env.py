"""`MetaWorldEnv`: one Meta-World v3 task behind the project's gym convention.

Observation (a Dict space, see `embodied.sim`):

- ``images``: {camera: (H, W, 3) uint8}, default cameras "corner" (front,
  turned right side up, see `cameras`) and "gripperPOV" (wrist), 128x128;
  "corner4" is the viewpoint LeRobot/SmolVLA evaluate with. ``cameras=()``
  renders nothing and is fast.
- ``depth``: {camera: (H, W) float32 metres along the optical axis}, from
  the same MuJoCo renderer (one extra pass), or no keys with ``depth=False``.
- ``state``: ``joint_pos`` (7,) rad, the Sawyer's arm joints right_j0..6;
  ``ee_pos`` (3,) m, the hand body's position; ``ee_quat`` (4,) (w, x, y, z)
  of the hand; ``gripper`` (1,) opening from the finger joints, 1 open, 0
  shut; ``mw_obs`` (39,) Meta-World's own observation (hand, finger gap,
  objects, previous frame, goal) in Meta-World's world frame, the input that
  Meta-World policies in the literature see. Positions and orientations are
  in the robot base frame (+x forward, +y left, +z up; see `frame`).

``images`` and ``depth`` are left out of the observation (and its space)
when they would be empty, because gymnasium's `check_env` rejects an empty
Dict space; `embodied.sim.observation_from_gym` reads them with defaults.

Action: `ee_delta` (7,): dx, dy, dz in metres (at most 0.01 m per axis per
tick), drx, dry, drz (ignored and bounded to 0: Meta-World's hand cannot
turn), gripper opening 0..1; see `actions` for the exact mapping. Control
rate: frame_skip x timestep = 5 x 2.5 ms -> 80 Hz.

Episodes: ``reset(seed=s)`` picks one of the task's 50 train variations
(object and goal placements of `metaworld.MT1(task, seed=task_seed)`; LeRobot
uses seed 42 as well) and one paraphrase of the instruction, both from the
env's seeded RNG; ``options={"instruction": text}`` rewords the task and
``options={"variation": k}`` picks variation k. An episode terminates on
Meta-World's success (``terminate_on_success=True``, since evaluation
protocols count success at any step) and truncates after
``max_episode_steps`` (Meta-World's 500).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from embodied.types import CameraSpec, EmbodimentSpec
from envs.metaworld.actions import action_spec, to_metaworld
from envs.metaworld.cameras import CameraRig
from envs.metaworld.expert import MetaWorldExpert
from envs.metaworld.frame import pos_to_base, quat_to_base
from envs.metaworld.instructions import paraphrases
from envs.metaworld.sets import TASKS

ARM_JOINTS: tuple[str, ...] = tuple(f"right_j{i}" for i in range(7))
FINGER_JOINTS: tuple[str, ...] = ("r_close", "l_close")
MW_OBS_DIM = 39
EMBODIMENT_NAME = "metaworld-sawyer"
OPTION_KEYS = ("instruction", "variation")


@dataclasses.dataclass(frozen=True)
class MetaWorldConfig:
    """How to build a `MetaWorldEnv`.

    task: a Meta-World v3 task name, e.g. "reach-v3". cameras: Meta-World
    camera names to render ("topview", "corner", "corner2", "corner3",
    "corner4", "behindGripper", "gripperPOV"); () for state only. height,
    width: image size in pixels, shared by all cameras. depth: also render
    depth. shadows: render MuJoCo's shadows (most of the cost on a CPU).
    antialiasing, reflections: Meta-World's 4x MSAA and floor reflections;
    off, a frame costs a third on a CPU (see `CameraRig`), and a policy is
    trained and evaluated on the same look either way.
    terminate_on_success: end the episode at the first success.
    max_episode_steps: control ticks before truncation. task_seed: seed of
    `metaworld.MT1` that draws the 50 train variations.
    """

    task: str = "reach-v3"
    cameras: tuple[str, ...] = ("corner", "gripperPOV")
    height: int = 128
    width: int = 128
    depth: bool = True
    shadows: bool = False
    antialiasing: bool = False
    reflections: bool = False
    terminate_on_success: bool = True
    max_episode_steps: int = 500
    task_seed: int = 42

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            close = difflib.get_close_matches(str(self.task), TASKS, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"unknown Meta-World v3 task {self.task!r}.{hint} The 50 names are in envs.metaworld.sets.TASKS"
            )
        if isinstance(self.cameras, str):
            raise TypeError(f"cameras must be a sequence of names, e.g. ({self.cameras!r},), not a string")
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras {self.cameras} name a camera twice")
        for name in ("height", "width", "max_episode_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@functools.cache
def train_tasks(task: str, seed: int) -> tuple[Any, ...]:
    """The 50 train variations of `task` that `metaworld.MT1(task, seed)` draws (cached per process)."""
    import metaworld

    return tuple(metaworld.MT1(task, seed=seed).train_tasks)


class MetaWorldEnv(gym.Env):
    """One Meta-World v3 task; see the module docstring for spaces and units.

    Build it with a task name and `MetaWorldConfig` fields, e.g.
    ``MetaWorldEnv("push-v3", cameras=(), depth=False)``, or with
    ``config=MetaWorldConfig(...)``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        task: str | None = None,
        *,
        config: MetaWorldConfig | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ):
        if "image_size" in overrides:  # the suite-wide spelling (tabletop takes it too)
            overrides["height"], overrides["width"] = overrides.pop("image_size")
        fields = {f.name for f in dataclasses.fields(MetaWorldConfig)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise TypeError(f"MetaWorldEnv got unknown options {unknown}; valid ones are {sorted(fields)}")
        if task is not None:
            overrides["task"] = task
        self.config = dataclasses.replace(config or MetaWorldConfig(), **overrides)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode

        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        cfg = self.config
        self._tasks = train_tasks(cfg.task, cfg.task_seed)
        self._mw = ALL_V3_ENVIRONMENTS[cfg.task]()
        # Meta-World raises past its own horizon; make it ours.
        self._mw.max_path_length = cfg.max_episode_steps
        self._mw.set_task(self._tasks[0])
        model = self._mw.model

        self.action_scale = float(self._mw.action_scale)
        self.dt = float(model.opt.timestep * self._mw.frame_skip)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.dt)}
        self._arm_qpos = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self._finger_qpos = np.array([model.joint(j).qposadr[0] for j in FINGER_JOINTS])
        # The closed end of each finger's range is the one away from 0 (open).
        ranges = np.array([model.joint(j).range for j in FINGER_JOINTS])
        self._finger_closed = np.where(np.abs(ranges[:, 1]) > np.abs(ranges[:, 0]), ranges[:, 1], ranges[:, 0])
        self._rig = self._camera_rig(cfg.cameras, cfg.depth)
        self._render_rig: CameraRig | None = None

        self.embodiment_spec = EmbodimentSpec(
            name=EMBODIMENT_NAME,
            cameras=tuple(CameraSpec(c, cfg.height, cfg.width, depth=cfg.depth) for c in cfg.cameras),
            state={"joint_pos": 7, "ee_pos": 3, "ee_quat": 4, "gripper": 1, "mw_obs": MW_OBS_DIM},
            action=action_spec(1.0 / self.dt, self.action_scale),
        )
        spec = self.embodiment_spec
        self.action_space = spaces.Box(spec.action.low_array, spec.action.high_array, dtype=np.float32)
        img = {c: spaces.Box(0, 255, (cfg.height, cfg.width, 3), np.uint8) for c in cfg.cameras}
        dep = {c: spaces.Box(0.0, np.inf, (cfg.height, cfg.width), np.float32) for c in cfg.cameras if cfg.depth}
        state_space = {k: spaces.Box(-np.inf, np.inf, (d,), np.float32) for k, d in spec.state.items()}
        state_space["ee_quat"] = spaces.Box(-1.0, 1.0, (4,), np.float32)
        state_space["gripper"] = spaces.Box(0.0, 1.0, (1,), np.float32)
        # gymnasium forbids empty Dict spaces, so "images"/"depth" are left out when nothing renders them.
        parts = {"images": spaces.Dict(img)} if img else {}
        parts |= {"depth": spaces.Dict(dep)} if dep else {}
        self.observation_space = spaces.Dict(parts | {"state": spaces.Dict(state_space)})

        self.last_mw_obs: np.ndarray | None = None
        self.last_success = False
        self.instruction = paraphrases(cfg.task)[0]
        self.variation = 0
        self._steps = 0
        self._over = False

    # -- gym API ---------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; MetaWorldEnv takes {list(OPTION_KEYS)}")
        texts = paraphrases(self.config.task)
        # Draw both every time, so that an option does not shift later episodes' draws.
        variation = int(self.np_random.integers(len(self._tasks)))
        instruction = texts[int(self.np_random.integers(len(texts)))]
        if options.get("variation") is not None:
            variation = options["variation"]
            if not isinstance(variation, (int, np.integer)) or not 0 <= variation < len(self._tasks):
                raise ValueError(f"variation must be an int in [0, {len(self._tasks)}), got {variation!r}")
        if options.get("instruction") is not None:
            instruction = options["instruction"]
            if not isinstance(instruction, str) or not instruction.strip():
                raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")

        self.variation, self.instruction = int(variation), instruction
        self._mw.set_task(self._tasks[self.variation])
        mw_obs, _ = self._mw.reset()
        self.last_mw_obs = mw_obs
        self.last_success = False
        self._steps = 0
        self._over = False
        return self._observation(mw_obs), self._info()

    def step(self, action: np.ndarray):
        if self.last_mw_obs is None:
            raise RuntimeError("call reset() before step()")
        if self._over:
            raise RuntimeError("this episode has ended (success or time limit); call reset() to start another")
        mw_obs, reward, _, _, mw_info = self._mw.step(to_metaworld(action, self.action_scale))
        self._steps += 1
        self.last_mw_obs = mw_obs
        self.last_success = bool(mw_info["success"])
        terminated = self.last_success and self.config.terminate_on_success
        truncated = self._steps >= self.config.max_episode_steps
        self._over = terminated or truncated
        return self._observation(mw_obs), float(reward), terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        """The front view: the first configured camera, else "corner" (H, W, 3) uint8."""
        if self.render_mode is None:
            return None
        if self._rig.names:
            return self._rig.render(self._mw.data)[0][self._rig.names[0]]
        if self._render_rig is None:
            self._render_rig = self._camera_rig(("corner",), depth=False)
        return self._render_rig.render(self._mw.data)[0]["corner"]

    def _camera_rig(self, names: tuple[str, ...], depth: bool) -> CameraRig:
        """Cameras `names` at the configured size and look (shadows, MSAA, reflections)."""
        cfg = self.config
        return CameraRig(self._mw.model, self._mw.data, names, cfg.height, cfg.width, depth, cfg.shadows,
                         cfg.antialiasing, cfg.reflections)

    def close(self) -> None:
        self._rig.close()
        if self._render_rig is not None:
            self._render_rig.close()
        self._mw.close()

    # -- the project's conventions -----------------------------------------------

    def make_expert(self) -> MetaWorldExpert:
        """Meta-World's scripted policy for this task, acting on the privileged 39-D observation."""
        return MetaWorldExpert(self)

    # -- helpers ---------------------------------------------------------------

    def _observation(self, mw_obs: np.ndarray) -> dict[str, Any]:
        data = self._mw.data
        images, depth = self._rig.render(data)
        hand = data.body("hand")
        closed = (data.qpos[self._finger_qpos] / self._finger_closed).mean()
        state = {
            "joint_pos": data.qpos[self._arm_qpos].astype(np.float32),
            "ee_pos": pos_to_base(hand.xpos).astype(np.float32),
            "ee_quat": quat_to_base(hand.xquat).astype(np.float32),
            "gripper": np.array([np.clip(1.0 - closed, 0.0, 1.0)], np.float32),
            "mw_obs": np.asarray(mw_obs, np.float32),
        }
        obs = {"images": images} if images else {}
        obs |= {"depth": depth} if depth else {}
        return obs | {"state": state}

    def _info(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "subtask": self.instruction,
            "success": self.last_success,
            "cameras": self._rig.infos(self._mw.data),
            "time": self._steps * self.dt,
            "task": self.config.task,
            "variation": self.variation,
        }
