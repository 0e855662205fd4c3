"""Perception pretraining for MDT: teach the camera CNNs to find what the instruction names, without actions.

A policy trained on 50 demonstrations per task sees 50 layouts per task; its
camera CNNs learn to recognise those layouts rather than to find "the red
cube" in a new one. Finding an object needs no demonstration, only a scene,
an instruction and where the object is. The tabletop simulator renders
scenes by the thousand and knows the answer (the spec's privileged state,
`goal_points`: the named object's position and its target's). So MDT trains
in two stages through the one training loop:

1. ``stage="perception"``: `PerceptionModel` — the policy's camera encoders
   (FiLM-conditioned on the language goal) and language-goal MLP, plus a
   small head — regresses the normalised privileged state of the current
   frame from the cameras' pooled tokens and the goal token, on scenes and
   demonstrations alike.
2. ``stage="policy"`` with ``perception_init=<that run>``: `load_perception`
   copies the camera encoders and the language-goal MLP into a fresh MDT
   before imitation starts.

What it buys is measured in docs/architecture.md ("Perception pretraining").
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from embodied import checkpoint
from embodied.train_state import pretrained_dir
from policies.mdt.configuration import PERCEPTION_FIELDS, MDTConfig
from policies.mdt.model import build_camera_encoders, build_language_goal, language_goal

# The MDTModel sub-modules a perception checkpoint provides, by their state-dict prefix.
PERCEPTION_PARTS = ("camera_encoders", "language_goal_mlp")


class PerceptionModel(nn.Module):
    """Camera encoders + language-goal MLP (named as in MDTModel, so their weights carry over) + a head.

    forward: images {cam: (B, 3, h, w)} in [-1, 1], goal (B, d) -> (B, P) normalised privileged state.
    """

    def __init__(self, cfg: MDTConfig, cameras: tuple[str, ...], privileged_dim: int):
        super().__init__()
        self.cfg, self.cameras = cfg, tuple(cameras)
        self.camera_encoders = build_camera_encoders(cfg, self.cameras)
        self.language_goal_mlp = build_language_goal(cfg)
        width = (len(self.cameras) + 1) * cfg.d_model
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, cfg.d_model), nn.GELU(),
                                  nn.Linear(cfg.d_model, privileged_dim))

    def language_goal(self, embedding: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, language_dim) sentence embeddings, or (B, L, language_dim) token states and (B, L) mask
        with `language_tokens` -> (B, d) goal tokens."""
        return language_goal(self.language_goal_mlp, self.cfg, embedding, mask)

    def forward(self, images: dict[str, torch.Tensor], goal: torch.Tensor) -> torch.Tensor:
        return self.place(images, goal)[0]

    def place(self, images: dict[str, torch.Tensor], goal: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, P) as `forward`, and with `goal_heatmaps` {cam: (B, GOAL_POINTS, h2, w2)} heat-map logits."""
        cond = goal if self.cfg.goal_film else None
        tokens, heat = [], {}
        for cam in self.cameras:
            t, maps = self.camera_encoders[cam].encode(images[cam], cond)
            tokens.append(t[:, 0] if t.dim() == 3 else t)  # the pooled token (spatial encoders put it first)
            if maps is not None:
                heat[cam] = maps
        return self.head(torch.cat([*tokens, goal], dim=-1)), heat


def load_perception(model: nn.Module, config: MDTConfig, source: str | Path) -> Path:
    """Copy the camera encoders and language-goal MLP of the MDT checkpoint at `source` (a run, step or
    pretrained folder) into `model` (an MDTModel or PerceptionModel built from `config`).

    Raises CheckpointError when `source` is not an MDT checkpoint, lacks one of `model`'s cameras, or was
    built with different sizes (the fields in PERCEPTION_FIELDS must agree). Returns the folder read.
    """
    from policies.mdt.policy import POLICY_CLASS

    folder = pretrained_dir(source)
    ckpt = checkpoint.load_pretrained(folder)
    if ckpt.policy_class != POLICY_CLASS:
        raise checkpoint.CheckpointError(folder, f"holds a {ckpt.policy_class}; perception_init needs an MDT "
                                                 "checkpoint (e.g. a run trained with stage='perception')")
    theirs = checkpoint.config_from_dict(MDTConfig, ckpt.config)
    differ = [f"{f}: {getattr(theirs, f)!r} there, {getattr(config, f)!r} here" for f in PERCEPTION_FIELDS
              if getattr(theirs, f) != getattr(config, f)]
    if differ:
        raise checkpoint.CheckpointError(folder, "was built with other perception settings (" + "; ".join(differ)
                                         + "); set this policy's to match, or pretrain perception with these")
    missing = [c for c in model.camera_encoders if f"camera_encoders.{c}.proj.weight" not in ckpt.weights]
    if missing:
        raise checkpoint.CheckpointError(folder, f"has no camera encoder for {missing}; pretrain perception on "
                                                 "data with those cameras")
    for part in PERCEPTION_PARTS:
        module = getattr(model, part)
        prefix = part + "."
        weights = {k[len(prefix):]: v for k, v in ckpt.weights.items()
                   if k.startswith(prefix) and (part != "camera_encoders" or k.split(".")[1] in module)}
        module.load_state_dict(weights, strict=True)
    return folder
