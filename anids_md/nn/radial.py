"""Radial functions of the interatomic distance (Å): Bessel basis and a smooth cutoff."""

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    """sqrt(2/r_c) sin(n pi r / r_c) / r for n = 1..n_basis, zero at r = r_c."""

    def __init__(self, cutoff: float, n_basis: int = 8):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("frequencies", math.pi * torch.arange(1, n_basis + 1) / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return math.sqrt(2.0 / self.cutoff) * torch.sin(self.frequencies * r) / r


class PolynomialCutoff(nn.Module):
    """Envelope going from 1 at r = 0 to 0 at r = r_c with zero first and second derivatives
    there, so energies and forces stay continuous when an atom crosses the cutoff."""

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff, self.p = cutoff, p

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x, p = r / self.cutoff, self.p
        envelope = (
            1.0
            - (p + 1) * (p + 2) / 2 * x**p
            + p * (p + 2) * x ** (p + 1)
            - p * (p + 1) / 2 * x ** (p + 2)
        )
        return envelope * (x < 1.0)
