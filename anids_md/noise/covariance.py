"""Per-atom noise covariances and their Gaussian draws (METHOD.md §1).

All four noise models are special cases of Σ_i = a_i (I ∓ Σ_j γ_ij r̂_ij r̂_ijᵀ):
  fixed            a_i = σ², γ = 0 (Coord / DeNS)
  isotropic        a_i = σ_i² from the generator, γ = 0 (DenoiseVAE)
  anisotropic      minus: less noise along neighbour directions (AniDS)
  anisotropic-add  plus: more noise along them (the paper's ablation)
with γ_ij = exp(b_ij) / (Σ_l exp(b_il) + c_i), so Σ_j γ_ij < 1 and Σ_i is positive definite.
Lengths in Å, covariances in Å².
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import NOISE_MODELS

LOG_SCALE_BAND = 4.0  # log a_i is clamped to ln σ_p² ± this


def clamp_log_variance(log_a: torch.Tensor, sigma_prior: float) -> torch.Tensor:
    """Keep log a_i within a band around ln σ_p² so that draws never explode or vanish."""
    centre = 2.0 * torch.log(torch.tensor(sigma_prior, dtype=log_a.dtype))
    return log_a.clamp(centre - LOG_SCALE_BAND, centre + LOG_SCALE_BAND)


def anisotropic_weights(edge_logits: torch.Tensor, log_sink: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """γ_ij (E,) and Γ_i = Σ_j γ_ij (N,): a softmax over each centre's edge logits b_ij together
    with its sink logit log c_i, of which the sink's share is dropped (eq. 15, stable form)."""
    n_atoms = len(log_sink)
    peak = log_sink.detach().clone().scatter_reduce(0, centre, edge_logits.detach(), reduce="amax", include_self=True)
    edge_terms = torch.exp(edge_logits - peak[centre])
    denominator = torch.exp(log_sink - peak).index_add(0, centre, edge_terms)
    gamma = edge_terms / denominator[centre]
    gamma_sum = gamma.new_zeros(n_atoms).index_add(0, centre, gamma)
    return gamma, gamma_sum


def covariance(
    kind: str,
    log_variance: torch.Tensor,
    edge_index: torch.Tensor | None = None,
    unit_vectors: torch.Tensor | None = None,
    gamma: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_i (N, 3, 3) in Å² from log a_i (N,), and for the anisotropic models the edges
    (centre i = edge_index[0]), their unit vectors r̂_ij (E, 3) and weights γ_ij (E,)."""
    if kind not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {kind!r}; choose one of {NOISE_MODELS}")
    n_atoms = len(log_variance)
    identity = torch.eye(3, dtype=log_variance.dtype, device=log_variance.device).expand(n_atoms, 3, 3)
    shape = identity
    if kind.startswith("anisotropic"):
        if edge_index is None or unit_vectors is None or gamma is None:
            raise ValueError(f"noise model {kind!r} needs edge_index, unit_vectors and gamma")
        outer = gamma[:, None, None] * unit_vectors[:, :, None] * unit_vectors[:, None, :]
        correction = outer.new_zeros(n_atoms, 3, 3).index_add(0, edge_index[0], outer)
        shape = identity - correction if kind == "anisotropic" else identity + correction
    return torch.exp(log_variance)[:, None, None] * shape


@dataclass
class NoiseDraw:
    displacement: torch.Tensor  # (M, 3) δ_i = L_i ε_i, Å
    target: torch.Tensor  # (M, 3) σ_p L_i^{-T} ε_i (exactly ε_i for the fixed model with σ = σ_p)
    kl: torch.Tensor  # (M,) KL(N(0, Σ_i) || N(0, σ_p² I)) per atom


def draw_noise(cov: torch.Tensor, sigma_prior: float, atoms: torch.Tensor | None = None, generator: torch.Generator | None = None) -> NoiseDraw:
    """Sample δ ~ N(0, Σ_i) for the M atoms whose covariances `cov` (M, 3, 3) are given, by a
    float64 Cholesky factorisation (reparameterised, so gradients reach Σ). `atoms` holds their
    indices in the structure, used to name an atom whose covariance is not positive definite."""
    cov64 = cov.double()
    factor, info = torch.linalg.cholesky_ex(cov64)
    if bool((info > 0).any()):
        bad = int(torch.nonzero(info > 0)[0, 0])
        atom = bad if atoms is None else int(atoms[bad])
        raise ValueError(f"noise covariance of atom {atom} is not positive definite: {cov64[bad].tolist()}")
    eps = torch.randn(cov.shape[:-1] + (1,), dtype=torch.float64, device=cov.device, generator=generator)
    displacement = (factor @ eps).squeeze(-1)
    # Σ⁻¹δ = L^{-T} ε by a triangular solve, never an explicit inverse.
    target = sigma_prior * torch.linalg.solve_triangular(factor.transpose(-1, -2), eps, upper=True).squeeze(-1)
    prior_variance = sigma_prior**2
    log_det = 2.0 * torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
    trace = torch.diagonal(cov64, dim1=-2, dim2=-1).sum(-1)
    kl = 0.5 * (trace / prior_variance - 3.0 + 3.0 * torch.log(torch.tensor(prior_variance, dtype=torch.float64)) - log_det)
    return NoiseDraw(displacement.to(cov.dtype), target.to(cov.dtype), kl.to(cov.dtype))


def masked_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over atoms (leading axis) of per-atom values, summed over any trailing axes;
    0, not NaN, when there are no atoms."""
    if values.shape[0] == 0:
        return values.new_zeros(())
    return values.mean(0) if values.dim() == 1 else values.reshape(len(values), -1).sum(-1).mean()


def anisotropy_hinge(gamma_sum: torch.Tensor, kappa: float = 0.3) -> torch.Tensor:
    """L_γ = mean_i max(0, κ − Γ_i)² (eq. 11): discourages vanishing anisotropy."""
    return masked_mean(torch.clamp(kappa - gamma_sum, min=0.0) ** 2)
