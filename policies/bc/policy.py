"""The BC baseline as a trainable policy: normalisation, language, loss, predict, act, checkpoints.

One path to learn (`loss`) and one to act (`predict`, batched; `act` wraps
it for one robot). Shapes: images (B, To, H, W, 3) uint8, state (B, To, S),
actions (B, Ta, D) in the embodiment's units.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embodied import checkpoint
from embodied.batching import histories_to_batch
from embodied.data import format as fmt
from embodied.hand_relative import HandRelativePoints
from embodied.language import shared_encoder
from embodied.normalize import Normalizer
from embodied.types import Action, Correction, EmbodimentSpec, Observation
from policies.bc.configuration import BCConfig
from policies.bc.model import BCNet


class BCPolicy(nn.Module):
    """Behaviour cloning of action chunks with MSE (see policies.bc)."""

    config_class = BCConfig
    name = "bc"
    policy_class = "policies.bc.policy:BCPolicy"

    def __init__(self, config: BCConfig, spec: EmbodimentSpec, normalizer: Normalizer):
        super().__init__()
        self.config, self.spec, self.normalizer = config, spec, normalizer
        self.cameras = spec.camera_names
        # The encoder is held outside the module tree on purpose: frozen, shared, never in state_dict.
        self._encoder = None if config.language == "none" else shared_encoder(config.language_model)
        self._state_index = torch.tensor(fmt.state_indices(spec, config.state_keys))
        self._hand_relative = HandRelativePoints(spec, config.hand_relative, owner="BCConfig.hand_relative")
        self.net = BCNet(self.cameras, len(self._state_index) + self._hand_relative.width, spec.action.dim, config.obs_horizon,
                         config.action_horizon, tuple(config.cnn_channels), config.feature_dim, config.hidden_dim,
                         None if self._encoder is None else self._encoder.dim, config.language)
        self.reset()

    # ------------------------------------------------------------------ building

    @classmethod
    def from_dataset_meta(cls, config: BCConfig, spec: EmbodimentSpec, stats: dict) -> BCPolicy:
        """A fresh policy for data of `spec` with statistics `stats` ({feature: {stat: array}}).

        The spec kept (and saved) lists only the cameras the policy reads, so an
        embodiment lacking the others can still run it. A statistic missing for
        a feature that is normalised raises MissingStatisticError.
        """
        cameras = tuple(config.cameras) if config.cameras is not None else spec.camera_names
        spec = dataclasses.replace(spec, cameras=tuple(spec.camera(c) for c in cameras))
        modes = {fmt.STATE: config.state_norm, fmt.ACTION: config.action_norm}
        modes |= {fmt.video_key(c): config.image_norm for c in cameras}
        return cls(config, spec, Normalizer(stats, modes))

    def hand_relative_offsets(self, state: torch.Tensor) -> torch.Tensor:
        """(..., S) raw state -> (..., k·3) each hand_relative point minus ee_pos, in HAND_RELATIVE_UNIT_M."""
        return self._hand_relative(state)

    def data_requirements(self) -> dict[str, Any]:
        return {"obs_horizon": self.config.obs_horizon, "action_horizon": self.config.action_horizon,
                "cameras": self.cameras, "future_offset": None}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ learning and predicting

    def _inputs(self, batch: dict[str, Any], texts: list[str]) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
        """Batch -> normalised (images {cam: (B, To, 3, H, W)}, state (B, To, S'), language (B, L) or None);
        S' = the state entries read, then the hand-relative offsets."""
        dev = self.device
        images = {}
        for cam in self.cameras:
            x = batch[fmt.video_key(cam)].to(dev).permute(0, 1, 4, 2, 3).float().div_(255.0)
            images[cam] = self.normalizer.normalize(fmt.video_key(cam), x)  # per-channel (3, 1, 1) statistics
        raw = batch[fmt.STATE].to(dev).float()
        state = torch.cat([self.normalizer.normalize(fmt.STATE, raw)[..., self._state_index.to(dev)],
                           self._hand_relative(raw)], dim=-1)
        lang = None
        if self._encoder is not None:
            lang = torch.from_numpy(self._encoder.encode(texts)).to(dev)
        return images, state, lang

    def _instructions(self, batch: dict[str, Any]) -> list[str]:
        """Task strings, some swapped for their language motion (with probability language_motion_prob)."""
        texts = list(batch["task"])
        p = self.config.language_motion_prob
        if p > 0 and "language_motion" in batch:
            pick = (torch.rand(len(texts)) < p).tolist()
            texts = [m if use and m else t for t, m, use in zip(texts, batch["language_motion"], pick)]
        return texts

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE between the predicted and demonstrated normalised chunks, padded steps (action_mask) left out."""
        images, state, lang = self._inputs(batch, self._instructions(batch))
        pred = self.net(images, state, lang)
        target = self.normalizer.normalize(fmt.ACTION, batch[fmt.ACTION].to(pred.device).float())
        mask = batch["action_mask"].to(pred.device).unsqueeze(-1).to(pred.dtype)
        mse = ((pred.float() - target) ** 2 * mask).sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)
        return mse, {"mse": float(mse.detach())}

    @torch.inference_mode()
    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch (images, state, "task": list[str] instructions) -> (B, Ta, D) actions in the spec's units."""
        images, state, lang = self._inputs(batch, list(batch["task"]))
        return self.normalizer.unnormalize(fmt.ACTION, self.net(images, state, lang).float())

    # ------------------------------------------------------------------ acting

    def reset(self, instruction: str | None = None) -> None:
        self._instruction = instruction
        self._history: collections.deque[Observation] = collections.deque(maxlen=self.config.obs_horizon)
        self._correction: str | None = None
        self._correction_ticks = 0

    def correct(self, correction: Correction) -> None:
        """Follow `correction.text` instead of the task for the next hold_steps control ticks."""
        self._correction, self._correction_ticks = correction.text, self.config.hold_steps

    def act(self, obs: Observation) -> Action:
        """Observation -> a chunk (n_action_steps, D) for the runner to execute."""
        obs.check(self.spec)
        self._history.append(obs)
        batch = histories_to_batch([self._history], self.spec, self.cameras, self.config.obs_horizon,
                                   [self._current_instruction(obs)])
        chunk = self.predict(batch)[0, : self.config.n_action_steps or self.config.action_horizon]
        self._correction_ticks = max(0, self._correction_ticks - len(chunk))
        return Action(chunk.cpu().numpy(), self.spec.action)

    def _current_instruction(self, obs: Observation) -> str:
        if self._correction is not None and self._correction_ticks > 0:
            return self._correction
        return self._instruction or obs.instruction or ""

    # ------------------------------------------------------------------ checkpoints

    def save_pretrained(self, directory: str | Path) -> Path:
        return checkpoint.save_pretrained(directory, policy_class=self.policy_class, config=self.config,
                                          weights=self.state_dict(), spec=self.spec, normalizer=self.normalizer)

    @classmethod
    def from_pretrained(cls, directory: str | Path, expect_spec: EmbodimentSpec | None = None) -> BCPolicy:
        ckpt = checkpoint.load_pretrained(directory, expect_spec)
        policy = cls(checkpoint.config_from_dict(BCConfig, ckpt.config), ckpt.spec, ckpt.normalizer)
        try:
            policy.load_state_dict(ckpt.weights, strict=True)
        except RuntimeError as e:
            raise checkpoint.CheckpointError(Path(directory) / checkpoint.WEIGHTS_FILE,
                                             f"weights do not fit the BC network its config describes ({e})") from e
        return policy.eval()
