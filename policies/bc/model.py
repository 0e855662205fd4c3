"""Networks of the BC baseline: a small CNN per camera, a state MLP, FiLM, and the action-chunk head."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from embodied.layers import FiLM


class ConvEncoder(nn.Module):
    """(N, 3, H, W) normalised image -> (N, feature_dim).

    Each block halves the resolution (3x3 conv, stride 2, GroupNorm, ReLU);
    a 4x4 average-pooled grid keeps coarse positions, which global pooling
    would throw away and which a reaching policy needs.
    """

    GRID = 4

    def __init__(self, channels: tuple[int, ...], feature_dim: int, cond_dim: int | None = None):
        super().__init__()
        blocks, films, c_in = [], [], 3
        for c in channels:
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=2, padding=1),
                                        nn.GroupNorm(min(8, c), c), nn.ReLU()))
            films.append(FiLM(cond_dim, c) if cond_dim else nn.Identity())
            c_in = c
        self.blocks, self.films = nn.ModuleList(blocks), nn.ModuleList(films)
        self.pool = nn.AdaptiveAvgPool2d(self.GRID)
        self.out = nn.Linear(c_in * self.GRID * self.GRID, feature_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        for block, film in zip(self.blocks, self.films):
            x = block(x)
            if isinstance(film, FiLM):
                x = film(x, cond)
        return self.out(self.pool(x).flatten(1))


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class BCNet(nn.Module):
    """Observation history + instruction embedding -> a normalised action chunk.

    images: {camera: (B, To, 3, H, W)} normalised floats; state: (B, To, S)
    normalised; lang: (B, L) instruction embedding or None -> (B, Ta, D).
    """

    def __init__(self, cameras: tuple[str, ...], state_dim: int, action_dim: int, obs_horizon: int,
                 action_horizon: int, channels: tuple[int, ...], feature_dim: int, hidden_dim: int,
                 lang_dim: int | None, conditioning: str):
        super().__init__()
        self.action_horizon, self.action_dim = action_horizon, action_dim
        self.conditioning = conditioning if lang_dim else "none"
        film_dim = lang_dim if self.conditioning == "film" else None
        self.encoders = nn.ModuleDict({cam: ConvEncoder(channels, feature_dim, film_dim) for cam in cameras})
        self.state_mlp = mlp([state_dim * obs_horizon, hidden_dim, feature_dim])
        fused = feature_dim * (len(cameras) * obs_horizon + 1)
        if self.conditioning == "concat":
            self.lang_proj = nn.Linear(lang_dim, feature_dim)
            fused += feature_dim
        self.head = mlp([fused, hidden_dim, hidden_dim, action_horizon * action_dim])

    def forward(self, images: dict[str, torch.Tensor], state: torch.Tensor,
                lang: torch.Tensor | None = None) -> torch.Tensor:
        B, To = state.shape[:2]
        if self.conditioning != "none" and lang is None:
            raise ValueError(f"this network is conditioned on language ({self.conditioning}) but got none")
        film = lang.repeat_interleave(To, dim=0) if self.conditioning == "film" else None
        parts = [self.encoders[cam](images[cam].flatten(0, 1), film).reshape(B, -1) for cam in self.encoders]
        parts.append(self.state_mlp(state.reshape(B, -1)))
        if self.conditioning == "concat":
            parts.append(self.lang_proj(lang))
        return self.head(torch.cat(parts, dim=-1)).reshape(B, self.action_horizon, self.action_dim)
