"""Network layers that more than one policy uses."""

from __future__ import annotations

import torch
from torch import nn


class FiLM(nn.Module):
    """Feature-wise affine conditioning (Perez et al. 2018): x * (1 + gamma(c)) + beta(c) per channel.

    Initialised to the identity (gamma = beta = 0), so the condition starts as
    a no-op and the network learns how much to listen to it.
    """

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); cond: (N, cond_dim) -> (N, C, H, W)."""
        gamma, beta = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + gamma) + beta
