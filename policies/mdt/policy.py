"""MDTPolicy: the Policy around MDTModel — normalisation, goals, loss, sampling, the action queue.

One path to learn, one path to act:

- `loss(batch)`: windows (B, To, ...) -> EDM denoising loss on normalised
  action chunks under image goals (every demonstrated sample) and language goals
  (labelled samples), plus MGF and CLA (and, with `localisation_weight`,
  a regression of the spec's privileged state, e.g. where the goal's
  object is, from the encoder output);
- `predict(batch)`: (B, To, ...) observations + instructions -> (B, chunk, D)
  unnormalised actions, 10 DDIM steps under `torch.inference_mode`;
- `act(obs)`: keeps an action queue, replans with `predict` when it empties.

Batch keys (torch tensors, as the training loop collates windows):
``observation.images.<cam>`` (B, To, H, W, 3) uint8, ``observation.state``
(B, To, S) float32, ``action`` (B, chunk, D), ``action_mask`` (B, chunk) bool,
``future.images.<cam>`` (B, H, W, 3) uint8 (frame t + future_offset), and the
string lists ``task``, ``subtask``, ``language_motion``. An optional
``goal.images.<goal_camera>`` (B, H, W, 3) is the image goal (e.g. the
episode's last frame); without it the future frame is the image goal, and
then MGF reads only the language-goal encoder outputs (the image-goal pass
would see its own target).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embodied import checkpoint
from embodied.batching import histories_to_batch
from embodied.data.format import ACTION, STATE, depth_key, extrinsics_key, intrinsics_key, state_indices, video_key
from embodied.hand_relative import HandRelativePoints
from embodied.language import shared_encoder
from embodied.normalize import MissingStatisticError, Normalizer
from embodied.train_state import pretrained_dir
from embodied.types import GOAL_UV, Action, Correction, EmbodimentSpec, Observation
from policies.mdt import edm
from policies.mdt.configuration import MDTConfig
from policies.mdt.locator import ObjectLocator, locator_loss
from policies.mdt.model import GOAL_POINTS, MDTModel, PointGeometry
from policies.mdt.perception import PERCEPTION_PARTS, PerceptionModel, load_perception
from policies.mdt.vision import HEATMAP_READOUTS, heatmap_loss, random_shift, to_float_images

POLICY_CLASS = "policies.mdt.policy:MDTPolicy"
FUTURE_PREFIX = "future.images."
GOAL_PREFIX = "goal.images."
# The instruction the locator reads, when it is not the policy's goal (a held correction names no object).
LOCATOR_TASK = "locator.task"
LOCATOR_PREFIX = "locator."  # the carried locator's weights in a policy checkpoint
INSTRUCTION_SOURCES = ("task", "subtask", "language_motion")



def build_normalizer(config: MDTConfig, stats: Mapping[str, Mapping[str, Any]]) -> Normalizer:
    """State mean_std (std floored), actions min_max or bounds_q99 per dimension; a missing statistic raises.

    The gripper needs no special case: its opening in [0, 1] maps to [-1, 1]
    like any other bounded dimension, and outputs are clipped to the spec.
    """
    stats = {k: dict(v) for k, v in stats.items()}
    if STATE in stats and "std" in stats[STATE]:
        stats[STATE]["std"] = np.maximum(np.asarray(stats[STATE]["std"], np.float32), config.state_std_floor)
    for feature in (STATE, ACTION):
        if feature not in stats:
            raise MissingStatisticError(
                f"the dataset statistics have no {feature!r} entry; MDT normalises it. Recompute the dataset's "
                "meta/stats.json (embodied.data) before training."
            )
    return Normalizer(stats, {STATE: "mean_std", ACTION: config.action_norm})


def rows_naming_the_object(rows: list[int], texts: list[str | None], batch: Mapping[str, Any],
                           n_image: int) -> list[int]:
    """Positions r of the context rows whose goal names the object the privileged labels locate (the
    task's: `envs.tabletop.tasks.goal_points`), so that asking where it lies is a fair question: the
    image-goal rows (the first `n_image`) and the rows instructed with the task itself. A language motion
    ("move the arm left"), or a later sub-task of a long task, names no object or another one: asking
    its row where the task's object is could be answered only by recognising the layout, which is what
    the localisation and heat-map losses exist to prevent.

    rows (R,): the sample of each row; texts (B,): each sample's chosen instruction (None: unlabelled).
    """
    return [r for r, i in enumerate(rows) if r < n_image or texts[i] == batch["task"][i]]


class MDTPolicy(nn.Module):
    """MDT diffusion policy for one embodiment spec (see module docstring for the batch contract)."""

    config_class = MDTConfig
    name = "mdt"

    def __init__(self, config: MDTConfig, spec: EmbodimentSpec, normalizer: Normalizer, language_encoder=None):
        super().__init__()
        self.config, self._spec, self.normalizer = config, spec, normalizer
        self.cameras = tuple(config.cameras) or spec.camera_names
        for cam in self.cameras:
            spec.camera(cam)  # KeyError naming the cameras there are
        self.goal_camera = config.goal_camera or self.cameras[0]
        if self.goal_camera not in self.cameras:
            raise ValueError(f"goal_camera {self.goal_camera!r} must be one of the policy's cameras {self.cameras}")
        for feature in (STATE, ACTION):
            if feature not in normalizer.modes:
                raise MissingStatisticError(f"the normaliser has no mode for {feature!r}; MDT needs it")
        self._state_index = torch.tensor(state_indices(spec, config.state_keys))
        self._hand_relative = HandRelativePoints(spec, config.hand_relative, owner="MDTConfig.hand_relative")
        # The localisation head places the goal's points in the world; GOAL_UV trains the heat maps instead.
        located = tuple(k for k in spec.privileged if k != GOAL_UV)
        self._privileged_index = torch.tensor(state_indices(spec, located) if located else [], dtype=torch.long)
        self._uv_index = self._goal_uv_index(config, spec, self.cameras)
        self._ee_index = self._lifting_ee_index(config, spec, self.cameras)
        needs = ("stage='perception'" if config.stage == "perception"
                 else "stage='locator'" if config.stage == "locator"
                 else f"localisation_weight={config.localisation_weight}" if config.localisation_weight > 0 else None)
        if needs and not located:
            raise ValueError(f"{needs} needs privileged state to predict, and embodiment {spec.name!r} has none "
                             f"(its state: {list(spec.state)}); record the data in a simulator that provides it "
                             "(tabletop: goal_points)")
        if config.stage == "locator":
            self._check_locatable(spec, self.cameras, located, "stage='locator'")
            self.model = ObjectLocator(config, self.cameras)
        elif config.stage == "perception":
            self.model = PerceptionModel(config, self.cameras, len(self._privileged_index))
        else:
            self.model = MDTModel(config, self.cameras, len(self._state_index) + self._hand_relative.width,
                                  spec.action.dim, privileged_dim=len(self._privileged_index))
        # With config.locator: the trained locator (frozen) and its config, set by `_attach_locator`.
        self.locator: ObjectLocator | None = None
        self.locator_config: MDTConfig | None = None
        self._language = language_encoder
        self.scheduler = edm.make_scheduler(config.sigma_min, config.sigma_max, config.sigma_data)
        self._low = torch.as_tensor(spec.action.low_array)
        self._high = torch.as_tensor(spec.action.high_array)
        self.reset(None)

    @staticmethod
    def _check_locatable(spec: EmbodimentSpec, cameras: tuple[str, ...], located: tuple[str, ...], owner: str) -> None:
        """A locator reads every camera's depth and places the spec's privileged goal points (GOAL_POINTS x 3)."""
        flat = [c for c in cameras if not spec.camera(c).depth]
        if flat:
            raise ValueError(f"{owner}: the locator reads each camera's depth, and {spec.name!r}'s cameras {flat} have "
                             "none; choose cameras with depth (cameras=...)")
        if sum(spec.state[k] for k in located) != 3 * GOAL_POINTS:
            raise ValueError(f"{owner}: the locator places {GOAL_POINTS} goal points (x, y, z each), and "
                             f"{spec.name!r}'s privileged state {located} has {sum(spec.state[k] for k in located)} "
                             "values; record data in a simulator that provides goal_points (tabletop)")

    def _attach_locator(self, config: MDTConfig, weights: Mapping[str, torch.Tensor]) -> None:
        """Carry the locator trained with `config` (stage='locator') and its `weights`, frozen."""
        cameras = tuple(config.cameras) or self._spec.camera_names
        located = tuple(k for k in self._spec.privileged if k != GOAL_UV)
        self._check_locatable(self._spec, cameras, located, f"locator={self.config.locator!r}")
        unread = sorted(set(self.config.locator_cameras) - set(cameras))
        if unread:
            raise ValueError(f"locator_cameras names {unread}, which the locator does not read (it reads {cameras})")
        locator = ObjectLocator(config, cameras)
        try:
            locator.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise checkpoint.CheckpointError(self.config.locator, f"locator weights do not fit its config ({e})") from e
        self.locator, self.locator_config = locator.requires_grad_(False).eval().to(self.device), config

    def _located_state(self, batch: Mapping[str, Any], state: torch.Tensor, picked: torch.Tensor | None
                       ) -> torch.Tensor:
        """Raw state (R, To, S) with its privileged goal points replaced by the locator's reading of each frame
        under the batch's task (LOCATOR_TASK where given): what the policy acts on, never the simulator's."""
        cfg = self.locator_config
        texts = list(batch.get(LOCATOR_TASK, batch["task"]))
        if picked is not None:
            texts = [texts[i] for i in picked.tolist()]
        r, to = state.shape[:2]
        goal = self._locator_goal(self.locator, texts)
        views = {}
        for cam in self.config.locator_cameras or self.locator.cameras:
            def read(key: str) -> torch.Tensor:
                x = torch.as_tensor(batch[key], device=self.device)
                return (x if picked is None else x[picked]).flatten(0, 1)
            missing = [k for k in (depth_key(cam), intrinsics_key(cam), extrinsics_key(cam)) if k not in batch]
            if missing:
                raise KeyError(f"this policy's locator reads {missing}, which the batch lacks: act on observations "
                               "that carry depth and calibration")
            views[cam] = (to_float_images(read(video_key(cam)), cfg.image_size), read(depth_key(cam)).float(),
                          read(intrinsics_key(cam)).float(), read(extrinsics_key(cam)).float())
        points = self.locator.locate(views, goal.repeat_interleave(to, dim=0))
        out = state.clone()
        out[..., self._privileged_index.to(self.device)] = points.view(r, to, -1)
        return out

    @staticmethod
    def _lifting_ee_index(config: MDTConfig, spec: EmbodimentSpec, cameras: tuple[str, ...]) -> torch.Tensor | None:
        """(3,) where ee_pos sits in the flat state, with lift_points (which needs depth on every camera)."""
        if not config.lift_points or config.stage != "policy":
            return None
        flat = [c for c in cameras if not spec.camera(c).depth]
        if flat:
            raise ValueError(f"lift_points=True lifts every camera's points through its depth, and {spec.name!r}'s "
                             f"cameras {flat} have none; drop them (cameras=...) or set lift_points=False")
        if "ee_pos" not in spec.state:
            raise ValueError(f"lift_points=True places points relative to the end effector, and {spec.name!r}'s "
                             f"state has no ee_pos (it has {list(spec.state)})")
        return torch.tensor(state_indices(spec, ("ee_pos",)))

    @staticmethod
    def _goal_uv_index(config: MDTConfig, spec: EmbodimentSpec, cameras: tuple[str, ...]) -> torch.Tensor | None:
        """(K·GOAL_POINTS·2,) where each of `cameras`' GOAL_UV entries sit in the flat state, with goal_heatmaps
        or in the locator stage."""
        if not (config.goal_heatmaps or config.stage == "locator"):
            return None
        want = 2 * GOAL_POINTS * len(spec.cameras)
        if spec.state.get(GOAL_UV) != want:
            raise ValueError(f"goal_heatmaps=True needs the privileged state {GOAL_UV!r} ({want} values: where the "
                             f"goal's points fall in each of {spec.camera_names}); embodiment {spec.name!r} has "
                             f"{dict(spec.state)}. Record the data in a simulator that "
                             "provides it (tabletop does), or set goal_heatmaps=False")
        flat, per = state_indices(spec, (GOAL_UV,)), 2 * GOAL_POINTS
        starts = [spec.camera_names.index(cam) * per for cam in cameras]
        return torch.tensor([flat[start + j] for start in starts for j in range(per)])

    # ------------------------------------------------------------------ construction and checkpoints
    @classmethod
    def from_dataset_meta(cls, config: MDTConfig, spec: EmbodimentSpec, stats: Mapping[str, Any],
                          language_encoder=None) -> MDTPolicy:
        """A fresh policy for data of `spec` with dataset statistics `stats` ({feature: {stat: array}});
        its camera CNNs and language-goal MLP come from `config.perception_init` when that is set."""
        policy = cls(config, spec, build_normalizer(config, stats), language_encoder)
        if config.perception_init:
            load_perception(policy.model, config, config.perception_init)
        if config.locator:
            raise ValueError(f"locator={config.locator!r}: a policy trains on the simulator's goal points; give it "
                             "the locator after training (`embodied attach-locator`, MDTPolicy.carrying_locator)")
        return policy

    def carrying_locator(self, source: str | Path, cameras: tuple[str, ...] = ()) -> MDTPolicy:
        """This trained policy, acting on the goal points that the locator at `source` (a run or checkpoint
        folder trained with stage='locator') reads from `cameras` (() = all of the locator's) instead of
        the simulator's; it keeps the locator's weights, so its checkpoint acts without that folder.
        Raises CheckpointError when `source` is no locator, ValueError when this policy reads no goal
        points, a camera lacks depth, or `cameras` names one the locator does not read."""
        if self.config.stage != "policy":
            raise ValueError(f"stage={self.config.stage!r} learns no actions: only a policy can carry a locator")
        located = tuple(k for k in self._spec.privileged if k != GOAL_UV)
        if not set(located) & set(self.config.hand_relative):
            raise ValueError(f"this policy does not read the goal points {located} (hand_relative="
                             f"{self.config.hand_relative}); a locator would change nothing it sees")
        folder = pretrained_dir(source)
        ckpt = checkpoint.load_pretrained(folder, self._spec)
        theirs = checkpoint.config_from_dict(MDTConfig, ckpt.config) if ckpt.policy_class == POLICY_CLASS else None
        if theirs is None or theirs.stage != "locator":
            raise checkpoint.CheckpointError(folder, "is not a locator; train one with --policy.stage locator")
        self.config = dataclasses.replace(self.config, locator=str(folder), locator_cameras=tuple(cameras))
        self._attach_locator(theirs, ckpt.weights)
        return self

    def save_pretrained(self, directory: str | Path) -> Path:
        """safetensors weights + JSON config + normalisation + spec; the frozen MiniLM is referenced, not copied."""
        weights, extra = self.model.state_dict(), {"language_encoder": str(self.language_encoder.path)}
        if self.locator is not None:  # the checkpoint carries its locator: it acts without the locator's folder
            weights = weights | {LOCATOR_PREFIX + k: v for k, v in self.locator.state_dict().items()}
            extra["locator_config"] = checkpoint.config_to_dict(self.locator_config)
        return checkpoint.save_pretrained(directory, policy_class=POLICY_CLASS, config=self.config,
                                          weights=weights, spec=self._spec, normalizer=self.normalizer, extra=extra)

    @classmethod
    def from_pretrained(cls, directory: str | Path, expect_spec: EmbodimentSpec | None = None,
                        language_encoder=None) -> MDTPolicy:
        ckpt = checkpoint.load_pretrained(directory, expect_spec)
        if ckpt.policy_class != POLICY_CLASS:
            raise checkpoint.CheckpointError(ckpt.path / checkpoint.POLICY_FILE,
                                             f"holds a {ckpt.policy_class}, not an MDT policy")
        config = checkpoint.config_from_dict(MDTConfig, ckpt.config)
        policy = cls(config, ckpt.spec, ckpt.normalizer, language_encoder)
        weights = {k: v for k, v in ckpt.weights.items() if not k.startswith(LOCATOR_PREFIX)}
        if config.locator:
            if "locator_config" not in ckpt.extra:
                raise checkpoint.CheckpointError(ckpt.path / checkpoint.POLICY_FILE,
                                                 "names a locator but does not carry its config")
            policy._attach_locator(checkpoint.config_from_dict(MDTConfig, ckpt.extra["locator_config"]),
                                   {k[len(LOCATOR_PREFIX):]: v for k, v in ckpt.weights.items()
                                    if k.startswith(LOCATOR_PREFIX)})
        try:
            policy.model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise checkpoint.CheckpointError(ckpt.path / checkpoint.WEIGHTS_FILE,
                                             f"weights do not fit the saved config ({e})") from e
        return policy.eval()

    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    @property
    def language_encoder(self):
        if self._language is None:
            self._language = shared_encoder(self.config.language_encoder)
        return self._language

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def locates(self) -> bool:
        """Whether `locate` works: a perception or locator stage, a policy carrying a locator, or one trained
        with localisation_weight > 0."""
        return self.config.stage in ("perception", "locator") or self.locator is not None or (
            self.model.localiser is not None)

    def trainable_parameters(self):
        """Every weight that is trained and saved (the sentence encoder is frozen and lives outside)."""
        return self.model.parameters()

    def parameter_groups(self) -> list[tuple[float, list[nn.Parameter]]]:
        """[(lr multiplier, parameters)]: with `perception_init`, the parts it copied learn at
        `perception_lr_scale` times the training lr, the rest at 1."""
        if not self.config.perception_init or self.config.perception_lr_scale == 1.0:
            return [(1.0, list(self.model.parameters()))]
        copied = [p for part in PERCEPTION_PARTS for p in getattr(self.model, part).parameters()]
        ids = {id(p) for p in copied}
        return [(1.0, [p for p in self.model.parameters() if id(p) not in ids]),
                (self.config.perception_lr_scale, copied)]

    def data_requirements(self) -> dict[str, Any]:
        if self.config.stage in ("perception", "locator"):  # the current frames only: no future, no goal frame
            return {"obs_horizon": self.config.obs_horizon, "action_horizon": self.config.chunk,
                    "cameras": self.cameras, "future_offset": None, "goal_frame": False,
                    "depth": self.config.stage == "locator"}
        return {"obs_horizon": self.config.obs_horizon, "action_horizon": self.config.chunk,
                "cameras": self.cameras, "future_offset": self.config.future_offset, "goal_frame": True,
                "depth": self.config.lift_points or self.locator is not None}

    # ------------------------------------------------------------------ preprocessing
    def _images(self, frames: torch.Tensor, size: tuple[int, int], augment: bool) -> torch.Tensor:
        """(..., H, W, 3) uint8 -> (..., 3, h, w) float in [-1, 1] at `size`."""
        return self._images_and_shifts(frames, size, augment)[0]

    def _images_and_shifts(self, frames: torch.Tensor, size: tuple[int, int], augment: bool
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """`_images`, and (..., 2) how far `augment`'s random shift moved each image's content (pixels at `size`)."""
        lead = frames.shape[:-3]
        x = to_float_images(frames.to(self.device).reshape(-1, *frames.shape[-3:]), size)
        x, shift = random_shift(x, self.config.random_shift if augment else 0)
        return x.view(*lead, *x.shape[1:]), shift.view(*lead, 2)

    def _observation_tokens(self, batch: Mapping[str, Any], augment: bool, goal: torch.Tensor,
                            rows: torch.Tensor | None = None) -> torch.Tensor:
        """(R, To·(K+1), d) tokens from the batch's images and state, one row per goal (R, d).

        rows (R,): the sample of each row (default: one row per sample). Without
        `goal_film` the tokens do not depend on the goal and are computed once per sample.
        """
        return self._observation_tokens_and_heatmaps(batch, augment, goal, rows)[0]

    def _observation_tokens_and_heatmaps(self, batch: Mapping[str, Any], augment: bool, goal: torch.Tensor,
                                         rows: torch.Tensor | None = None
                                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`_observation_tokens`, and with goal_heatmaps {cam: ((R, GOAL_POINTS, h2, w2) heat-map logits,
        (R, 2) how far augmentation shifted the current frame, pixels)}."""
        film = self.config.goal_film
        frames = {cam: torch.as_tensor(batch[video_key(cam)]) for cam in self.cameras}
        state = torch.as_tensor(batch[STATE], device=self.device).float()
        picked = rows.to(self.device) if film and rows is not None else None  # the CNNs see a sample once per goal
        if picked is not None:
            frames = {cam: f[rows.to(f.device)] for cam, f in frames.items()}
            state = state[picked]
        shifted = {cam: self._images_and_shifts(f, self.config.image_size, augment) for cam, f in frames.items()}
        geometry = self._point_geometry(batch, state, {cam: s for cam, (_, s) in shifted.items()}, picked)
        if self.locator is not None and not augment:  # acting: the goal's points are the locator's, not the sim's
            state = self._located_state(batch, state, picked)
        elif augment and self.config.hand_relative_noise > 0:
            state = self._noisy_points(state)
        state = torch.cat([self.normalizer.normalize(STATE, state)[..., self._state_index.to(self.device)],
                           self._hand_relative(state)], dim=-1)
        tokens, heat = self.model.observation_tokens_and_heatmaps({cam: x for cam, (x, _) in shifted.items()}, state,
                                                                  goal if film else None, geometry)
        heat = {cam: (maps, shifted[cam][1][:, -1]) for cam, maps in heat.items()}
        return (tokens[rows] if rows is not None and not film else tokens), heat

    def _noisy_points(self, state: torch.Tensor) -> torch.Tensor:
        """Raw state (..., S) with hand_relative_noise (metres) added to the points hand_relative reads."""
        index = torch.as_tensor(state_indices(self._spec, self.config.hand_relative), device=state.device)
        out = state.clone()
        out[..., index] += self.config.hand_relative_noise * torch.randn_like(out[..., index])
        return out

    def _point_geometry(self, batch: Mapping[str, Any], state: torch.Tensor, shifts: dict[str, torch.Tensor],
                        picked: torch.Tensor | None) -> PointGeometry | None:
        """With lift_points, the batch's depth, calibration and end-effector positions (raw state (R, To, S),
        already picked by `picked`) for `model.PointGeometry`; else None."""
        if self._ee_index is None:
            return None
        missing = [key for cam in self.cameras for key in (depth_key(cam), intrinsics_key(cam), extrinsics_key(cam))
                   if key not in batch]
        if missing:
            raise KeyError(f"lift_points=True reads {missing}, which the batch lacks: train on datasets recorded with "
                           "depth (`embodied collect --depth`) and act on observations that carry depth and "
                           "calibration")

        def read(key: str) -> torch.Tensor:
            x = torch.as_tensor(batch[key], device=self.device).float()
            return x if picked is None else x[picked]

        return PointGeometry(depth={cam: read(depth_key(cam)) for cam in self.cameras},
                             intrinsics={cam: read(intrinsics_key(cam)) for cam in self.cameras},
                             extrinsics={cam: read(extrinsics_key(cam)) for cam in self.cameras},
                             shift=shifts, ee_pos=state[..., self._ee_index.to(self.device)])

    def _language_goals(self, texts: list[str]) -> torch.Tensor:
        """(N,) instructions -> (N, d) goal tokens, from the frozen encoder's sentence vectors or, with
        `language_tokens`, its token states."""
        if not self.config.language_tokens:
            return self.model.language_goal(torch.as_tensor(self.language_encoder.encode(texts), device=self.device))
        if not hasattr(self.language_encoder, "encode_tokens"):
            raise TypeError(f"language_tokens=True needs an encoder with encode_tokens (SentenceEncoder); "
                            f"{type(self.language_encoder).__name__} has none: set language_tokens=False")
        states, mask = self.language_encoder.encode_tokens(texts)
        return self.model.language_goal(torch.as_tensor(states, device=self.device),
                                        torch.as_tensor(mask, device=self.device))

    def _choose_instructions(self, batch: Mapping[str, Any],
                             demonstrated: list[bool] | None = None) -> list[str | None]:
        """Per sample: None (treated as unlabelled, with probability 1 - language_fraction) or a text
        drawn among task / subtask / language_motion by `instruction_probs` (empty labels fall back to the task).

        demonstrated (B,): whether a sample's actions are demonstrations (default: from ``action_mask``).
        A sample whose actions are not demonstrations (a scene dataset's) always keeps its task: its
        language goal is the only goal it has, and its motion labels describe random moves, not the task.
        """
        n = len(batch["task"])
        if demonstrated is None:
            demonstrated = torch.as_tensor(batch["action_mask"]).any(dim=1).tolist()
        probs = torch.tensor(self.config.instruction_probs)
        source = torch.multinomial(probs / probs.sum(), n, replacement=True).tolist()
        keep = (torch.rand(n) < self.config.language_fraction).tolist()
        texts: list[str | None] = []
        for i in range(n):
            if not demonstrated[i]:
                texts.append(batch["task"][i])
                continue
            options = [batch[k][i] if k in batch else "" for k in INSTRUCTION_SOURCES]
            text = options[source[i]] or options[0]
            texts.append(text if keep[i] and text else None)
        return texts

    def _goal_frames(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, bool]:
        """(B, H, W, 3) image-goal frames and whether they differ from the MGF target frames."""
        key = GOAL_PREFIX + self.goal_camera
        if key in batch:
            return torch.as_tensor(batch[key]), True
        return torch.as_tensor(batch[FUTURE_PREFIX + self.goal_camera]), False

    # ------------------------------------------------------------------ learning
    def loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its terms for collated windows (see the module docstring for keys and shapes).

        A sample whose ``action_mask`` is all False (a scene dataset's: its actions are not
        demonstrations) gets no image-goal row and no denoising loss; it trains perception only,
        through its language goal (localisation, MGF).
        """
        if self.config.stage == "perception":
            return self._perception_loss(batch)
        if self.config.stage == "locator":
            return self._locator_loss(batch)
        cfg = self.config
        b = len(batch["task"])
        actions = self.normalizer.normalize(ACTION, torch.as_tensor(batch[ACTION], device=self.device).float())
        mask = torch.as_tensor(batch["action_mask"], device=self.device).bool()
        demonstrated = mask.any(dim=1).tolist()
        image_rows = [i for i in range(b) if demonstrated[i]]
        texts = self._choose_instructions(batch, demonstrated)
        labelled = [i for i, t in enumerate(texts) if t is not None]
        rows = image_rows + labelled  # context row -> sample index
        n_image = len(image_rows)
        goal_frames, distinct_goal = self._goal_frames(batch)
        goals = []
        if image_rows:
            frames = goal_frames if n_image == b else goal_frames[torch.tensor(image_rows, device=goal_frames.device)]
            goals.append(self.model.image_goal(self._images(frames, cfg.image_size, augment=True)))
        if labelled:
            goals.append(self._language_goals([texts[i] for i in labelled]))
        rows_t = torch.tensor(rows, device=self.device)
        goal = torch.cat(goals)  # (I + L, d)
        obs, heat = self._observation_tokens_and_heatmaps(batch, augment=True, goal=goal, rows=rows_t)  # (I+L, N-1, d)
        context = self.model.encode(obs, goal)  # (I + L, N, d)

        total = torch.zeros((), device=self.device)
        metrics = {"labelled_fraction": sum(demonstrated[i] for i in labelled) / max(1, n_image)}
        acting = torch.tensor([r for r, i in enumerate(rows) if demonstrated[i]], dtype=torch.long,
                              device=self.device)
        if len(acting):
            samples = rows_t[acting]
            sigma = edm.sample_log_logistic((len(acting),), cfg.sigma_loc, cfg.sigma_scale, cfg.sigma_min,
                                            cfg.sigma_max, device=self.device)
            noise = torch.randn_like(actions[samples])
            diffusion = edm.denoising_loss(self.model.action_network(context[acting]), actions[samples], sigma,
                                           noise, cfg.sigma_data, mask[samples])
            total = total + diffusion
            metrics["diffusion"] = diffusion.item()

        if self.model.foresight is not None:
            # The image-goal pass may only predict the future when its goal is not that future frame.
            use = [r for r in range(len(rows)) if r >= n_image or distinct_goal]
            if use:
                use_t = torch.tensor(use, device=self.device)
                future = torch.stack([torch.as_tensor(batch[FUTURE_PREFIX + cam]) for cam in self.cameras], dim=1)
                future = self._images(future, cfg.mgf_image_size, augment=False)[rows_t[use_t]]
                mgf = self.model.foresight.loss(context[use_t], future)
                total = total + cfg.mgf_weight * mgf
                metrics["mgf"] = mgf.item()
        aim = torch.tensor(rows_naming_the_object(rows, texts, batch, n_image), dtype=torch.long, device=self.device)
        if self.model.localiser is not None and len(aim):
            target = self._privileged_target(batch)[rows_t[aim]]
            localisation = nn.functional.mse_loss(self.model.localiser(context[aim].mean(dim=1)), target)
            total = total + cfg.localisation_weight * localisation
            metrics["localisation"] = localisation.item()
        pointing = self._heatmap_loss({cam: (maps[aim], shift[aim]) for cam, (maps, shift) in heat.items()},
                                      batch, rows_t[aim]) if len(aim) else None
        if pointing is not None:
            total = total + cfg.localisation_weight * pointing
            metrics["heatmap"] = pointing.item()
        # CLA pairs the image-goal and language-goal rows of the same demonstrated sample.
        image_row_of = {i: r for r, i in enumerate(image_rows)}
        pairs = [(image_row_of[i], n_image + j) for j, i in enumerate(labelled) if demonstrated[i]]
        if self.model.alignment is not None and len(pairs) >= 2:
            image_t, language_t = (torch.tensor(p, device=self.device) for p in zip(*pairs, strict=True))
            cla = self.model.alignment.loss(context[language_t], context[image_t])
            total = total + cfg.cla_weight * cla
            metrics["cla"] = cla.item()
            metrics["cla_temperature"] = float(1 / self.model.alignment.logit_scale.exp().item())
        metrics["loss"] = total.item()
        return total, metrics

    def _privileged_target(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """(B, P) the normalised privileged state of each window's current frame."""
        state = torch.as_tensor(batch[STATE], device=self.device).float()[:, -1]
        return self.normalizer.normalize(STATE, state)[:, self._privileged_index.to(self.device)]

    def _heatmap_loss(self, heat: dict[str, tuple[torch.Tensor, torch.Tensor]], batch: Mapping[str, Any],
                      rows: torch.Tensor | None = None) -> torch.Tensor | None:
        """Mean over cameras of `vision.heatmap_loss` against each row's current GOAL_UV, moved with the
        image's augmentation shift (with heatmap_absent, out-of-view points train the null cell); None
        without heat maps or with no goal point to learn from.

        heat: {cam: (logits (R, GOAL_POINTS, h2, w2), shift (R, 2) pixels)}; rows (R,): the sample of each
        row (default: all).
        """
        if not heat:
            return None
        state = torch.as_tensor(batch[STATE], device=self.device).float()[:, -1]
        uv = state[:, self._uv_index.to(self.device)].view(len(state), len(self.cameras), GOAL_POINTS, 2)
        if rows is not None:
            uv = uv[rows]
        h, w = self.config.image_size
        terms = []
        for k, cam in enumerate(self.cameras):
            logits, shift = heat[cam]
            seen = (uv[:, k].abs() < 1).all(-1, keepdim=True)  # a point out of view stays out, shifted or not
            moved = torch.where(seen, uv[:, k] + (shift * shift.new_tensor([2 / w, 2 / h]))[:, None], uv[:, k])
            if (t := heatmap_loss(logits, moved, absent=self.config.heatmap_absent)) is not None:
                terms.append(t)
        return torch.stack(terms).mean() if terms else None

    def _current_images(self, batch: Mapping[str, Any], augment: bool) -> dict[str, torch.Tensor]:
        """{cam: (B, 3, h, w)} each window's current frame, in [-1, 1] at image_size."""
        return {cam: x for cam, (x, _) in self._current_images_and_shifts(batch, augment).items()}

    def _current_images_and_shifts(self, batch: Mapping[str, Any], augment: bool
                                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{cam: (current frames as `_current_images`, (B, 2) their augmentation shift in pixels)}."""
        return {cam: self._images_and_shifts(torch.as_tensor(batch[video_key(cam)])[:, -1], self.config.image_size,
                                             augment) for cam in self.cameras}

    def _perception_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """stage='perception': MSE of the privileged state placed under each sample's task instruction.

        The task, never a sub-task or language-motion label: "move arm left" names no object to find.
        """
        goal = self._language_goals(list(batch["task"]))
        current = self._current_images_and_shifts(batch, augment=True)
        placed, heat = self.model.place({cam: x for cam, (x, _) in current.items()}, goal)
        heat = {cam: (maps, current[cam][1]) for cam, maps in heat.items()}
        localisation = nn.functional.mse_loss(placed, self._privileged_target(batch))
        metrics = {"localisation": localisation.item()}
        loss = localisation
        pointing = self._heatmap_loss(heat, batch)
        if pointing is not None:
            loss = loss + pointing
            metrics["heatmap"] = pointing.item()
        metrics["loss"] = loss.item()
        return loss, metrics

    def _locator_views(self, batch: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, ...]]:
        """stage='locator': {cam: (images (B, 3, h, w) in [-1, 1], depth (B, H, W) m, K (B, 3, 3), T (B, 4, 4))}
        of each window's current frame."""
        def current(key: str) -> torch.Tensor:
            if key not in batch:
                raise KeyError(f"the locator reads {key!r}, which the batch lacks: train on data recorded with depth "
                               "(`embodied collect --depth`)")
            return torch.as_tensor(batch[key], device=self.device)[:, -1].float()

        views = {}
        for cam in self.cameras:
            depth = current(depth_key(cam))
            if tuple(depth.shape[-2:]) != tuple(self.config.image_size):
                raise ValueError(f"the locator reads camera {cam!r} at its own resolution: image_size="
                                 f"{self.config.image_size}, and its depth images are {tuple(depth.shape[-2:])}; set "
                                 "image_size to the camera's size")
            images = to_float_images(torch.as_tensor(batch[video_key(cam)])[:, -1].to(self.device), self.config.image_size)
            views[cam] = (images, depth, current(intrinsics_key(cam)), current(extrinsics_key(cam)))
        return views

    def _locator_goal(self, locator: ObjectLocator, texts: list[str]) -> torch.Tensor:
        """(N,) instructions -> (N, d) `locator`'s goal, from the frozen encoder's token states."""
        states, mask = self.language_encoder.encode_tokens(texts)
        return locator.language_goal(torch.as_tensor(states, device=self.device),
                                     torch.as_tensor(mask, device=self.device))

    def _locator_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """stage='locator': `locator.locator_loss` under each sample's task instruction (the words that name
        the object; a language motion names none) against the current frame's goal_points and GOAL_UV."""
        state = torch.as_tensor(batch[STATE], device=self.device).float()[:, -1]
        points = state[:, self._privileged_index.to(self.device)].view(len(state), GOAL_POINTS, 3)
        uv = state[:, self._uv_index.to(self.device)].view(len(state), len(self.cameras), GOAL_POINTS, 2)
        return locator_loss(self.model, self._locator_views(batch), self._locator_goal(self.model, list(batch["task"])),
                            points, uv)

    # ------------------------------------------------------------------ acting
    def predict(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, chunk, D) unnormalised actions clipped to the action spec's bounds.

        The goal is the language instruction list ``batch["task"]``, or, when
        that key is absent, the image goal ``goal.images.<goal_camera>``.
        `generator` fixes the initial noise (same generator state -> same actions).
        """
        if self.config.stage == "perception":
            raise ValueError("this MDT is a perception pretraining stage and has learned no actions; train a policy "
                             "from it with --policy.perception-init <its run folder>")
        if self.config.stage == "locator":
            raise ValueError("this MDT is a locator and has learned no actions; train a policy that reads it with "
                             "--policy.locator <its run folder>")
        with self._inference():
            if "task" in batch:
                goal = self._language_goals(list(batch["task"]))
            elif GOAL_PREFIX + self.goal_camera in batch:
                frames = torch.as_tensor(batch[GOAL_PREFIX + self.goal_camera])
                goal = self.model.image_goal(self._images(frames, self.config.image_size, augment=False))
            else:
                raise KeyError(f"predict needs a goal: batch['task'] (instructions) or "
                               f"batch['{GOAL_PREFIX + self.goal_camera}'] (goal images)")
            obs = self._observation_tokens(batch, augment=False, goal=goal)
            context = self.model.encode(obs, goal)
            shape = (obs.shape[0], self.config.chunk, self._spec.action.dim)
            x = edm.sample(self.model.action_network(context, traced=True), shape, self.scheduler, self.config.sampling_steps,
                           self.config.sigma_data, generator=generator, device=self.device)
            actions = self.normalizer.unnormalize(ACTION, x)
            return torch.max(torch.min(actions, self._high.to(actions)), self._low.to(actions))

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode and no autograd for the block, then the training mode it had."""
        was_training = self.training
        if was_training:  # train()/eval() walk every submodule: ~13% of a batch-1 replan, so only when needed
            self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if was_training:
                self.train()

    def locate(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """(B, P) the privileged state (tabletop: goal_points) that the localisation head reads from the
        observations under the language goals ``batch["task"]``, unnormalised: where the policy thinks
        the goal's object is. Needs a perception or locator stage, a policy carrying a locator (then it is
        the locator's reading, through the policy's locator_cameras), or one trained with
        localisation_weight > 0."""
        if not self.locates:
            raise ValueError("this policy has no localisation head: train it with localisation_weight > 0")
        with self._inference():
            if self.config.stage == "locator":
                goal = self._locator_goal(self.model, list(batch["task"]))
                return self.model.locate(self._locator_views(batch), goal).flatten(1)
            if self.locator is not None:
                state = torch.as_tensor(batch[STATE], device=self.device).float()
                return self._located_state(batch, state, None)[:, -1, self._privileged_index.to(self.device)]
            goal = self._language_goals(list(batch["task"]))
            if self.config.stage == "perception":
                placed = self.model(self._current_images(batch, augment=False), goal)
            else:
                placed = self.model.localiser(self.model.encode(
                    self._observation_tokens(batch, augment=False, goal=goal), goal).mean(dim=1))
            index = self._privileged_index.to(self.device)
            full = torch.zeros(len(goal), len(self.normalizer.stats[STATE]["mean"]), device=self.device)
            full[:, index] = placed
            return self.normalizer.unnormalize(STATE, full)[:, index]

    def point(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """{cam: (B, GOAL_POINTS, 2)} where the goal heat maps put the goal's subject and destination in
        each camera's current image under ``batch["task"]``, in GOAL_UV's normalised coordinates (the
        image spans [-1, 1]), read as the config's point_readout says. Needs a policy built with goal_heatmaps."""
        if not self.config.goal_heatmaps:
            raise ValueError("this policy has no goal heat maps: build it with goal_heatmaps=True")
        with self._inference():
            goal = self._language_goals(list(batch["task"]))
            if self.config.stage == "perception":
                heat = self.model.place(self._current_images(batch, augment=False), goal)[1]
            else:
                heat = {cam: maps for cam, (maps, _) in
                        self._observation_tokens_and_heatmaps(batch, augment=False, goal=goal)[1].items()}
            readout = HEATMAP_READOUTS[self.config.point_readout]
            return {cam: readout(maps) for cam, maps in heat.items()}

    def reset(self, instruction: str | None = None) -> None:
        """Start an episode: clear the action queue and history; `instruction` is the task (or None to take
        the observation's)."""
        self._task = instruction
        self._override: str | None = None
        self._hold = 0
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._history: collections.deque[Observation] = collections.deque(maxlen=self.config.obs_horizon)

    def correct(self, correction: Correction) -> None:
        """Follow the correction (its language motion if it names one, else its text) for
        `correction_hold_steps` ticks, then return to the task; replan now."""
        self._override = str(correction.payload.get("language_motion") or correction.text)
        self._hold = self.config.correction_hold_steps
        self._queue.clear()

    @property
    def instruction(self) -> str | None:
        """The text the policy follows now (a held correction, else the task)."""
        return self._override if self._hold > 0 else self._task

    def act(self, obs: Observation) -> Action:
        """One action (D,) from the queue; replans (predict with batch 1) when the queue is empty."""
        obs.check(self._spec)
        if self._task is None and obs.instruction:
            self._task = obs.instruction
        if self.instruction is None:
            raise ValueError("MDT is language-conditioned: give an instruction with reset(instruction) "
                             "or in Observation.instruction")
        self._history.append(obs)
        if not self._queue:
            self._queue.extend(self.predict(self._batch_of_one())[0, : self.config.execute_steps].cpu().numpy())
        action = Action(self._queue.popleft(), self._spec.action)
        if self._hold > 0:
            self._hold -= 1
            if self._hold == 0:
                self._queue.clear()  # the correction is over: replan for the task
        return action

    def _batch_of_one(self) -> dict[str, Any]:
        batch = histories_to_batch([self._history], self._spec, self.cameras, self.config.obs_horizon,
                                   [self.instruction], depth=self.config.lift_points or self.locator is not None)
        if self.locator is not None:
            batch[LOCATOR_TASK] = [self._task]  # a held correction ("move left") names no object to find
        return batch

