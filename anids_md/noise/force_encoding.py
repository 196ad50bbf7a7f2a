"""Force encoding (METHOD.md §3.2): a corrupted atom's reference force, in units of the training
force scale, enters its initial features as spherical harmonics l ≤ 2 of the force direction
times its magnitude, one learned weight per degree and channel."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


class ForceEncoding(nn.Module):
    def __init__(self, channels: int, lmax: int):
        super().__init__()
        self.lmax = min(2, lmax)
        self.weight = nn.Parameter(torch.randn(self.lmax + 1, channels) * 0.1)
        self.register_buffer("degree", torch.repeat_interleave(torch.arange(self.lmax + 1), 2 * torch.arange(self.lmax + 1) + 1), persistent=False)

    def forward(self, forces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Node features (D, N, C), D = (lmax+1)², from normalised forces (N, 3); zero on atoms
        where `mask` (N,) is False."""
        magnitude = forces.norm(dim=-1, keepdim=True)
        direction = forces / magnitude.clamp_min(1e-12)  # a zero force has no direction, only zero weight
        sh = o3.spherical_harmonics(list(range(self.lmax + 1)), direction, normalize=False, normalization="component")
        encoded = (sh * magnitude * mask[:, None].to(sh.dtype)).T  # (D, N)
        return encoded[:, :, None] * self.weight[self.degree][:, None, :]
