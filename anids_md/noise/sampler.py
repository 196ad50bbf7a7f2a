"""From a structure to its noise: covariances from the generator (or the fixed σ), the noisy
structure, the denoising targets and the regularisers of METHOD.md §1."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..data.graph import AtomicGraph, rebuild_edges
from ..nn.generator import NoiseGenerator
from .covariance import (
    NOISE_MODELS,
    anisotropic_weights,
    anisotropy_hinge,
    clamp_log_variance,
    covariance,
    draw_noise,
    masked_mean,
)


@dataclass
class NoiseConfig:
    """The noise model and the weights of its regularisers (METHOD.md §1; lengths in Å)."""

    kind: str = "anisotropic"  # fixed | isotropic | anisotropic | anisotropic-add
    sigma: float = 0.05  # fixed model only: σ; it is also that model's prior scale, so its target is ε
    sigma_prior: float = 0.1  # σ_p of the learned models' prior N(0, σ_p² I)
    kl_weight: float = 1.0  # λ_KL
    gamma_weight: float = 1.0  # λ_γ (anisotropic models)
    kappa: float = 0.3  # hinge level κ on Σ_j γ_ij

    def __post_init__(self):
        if self.kind not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {self.kind!r}; choose one of {NOISE_MODELS}")

    @property
    def prior_scale(self) -> float:
        return self.sigma if self.kind == "fixed" else self.sigma_prior

    @property
    def learned(self) -> bool:
        return self.kind != "fixed"


@dataclass
class Covariances:
    matrices: torch.Tensor  # (N, 3, 3) Σ_i, Å²
    gamma_sum: torch.Tensor | None  # (N,) Σ_j γ_ij, anisotropic models only


def structure_covariances(config: NoiseConfig, graph: AtomicGraph, generator: NoiseGenerator | None) -> Covariances:
    """Σ_i of every atom of `graph` (clean positions) under the noise model."""
    n = graph.n_atoms
    if not config.learned:
        log_a = torch.full((n,), 2.0 * math.log(config.sigma), dtype=graph.positions.dtype, device=graph.positions.device)
        return Covariances(covariance("fixed", log_a), None)
    if generator is None:
        raise ValueError(f"noise model {config.kind!r} needs a noise generator")
    out = generator(graph)
    centre = 2.0 * math.log(config.sigma_prior)
    log_a = clamp_log_variance(out["log_scale"] + centre, config.sigma_prior)
    if config.kind == "isotropic":
        return Covariances(covariance("isotropic", log_a), None)
    gamma, gamma_sum = anisotropic_weights(out["edge_logits"], out["log_sink"], graph.edge_index[0])
    cov = covariance(config.kind, log_a, graph.edge_index, out["unit_vectors"], gamma)
    return Covariances(cov, gamma_sum)


@dataclass
class Corruption:
    graph: AtomicGraph  # the noisy structure, edges rebuilt at `cutoff`
    target: torch.Tensor  # (M, 3) denoising target σ_p L^{-T} ε
    kl: torch.Tensor  # () mean KL over the corrupted atoms
    hinge: torch.Tensor  # () anisotropy hinge over the corrupted atoms (0 if not anisotropic)
    # (M,) per-atom weights of the denoising loss: σ_i²/σ_p² for the isotropic model (DenoiseVAE's
    # eq. 6, so that an atom with a small σ_i, whose target σ_p ε/σ_i is large, does not dominate);
    # None (all 1) otherwise
    weights: torch.Tensor | None = None


def corrupt(
    config: NoiseConfig, graph: AtomicGraph, cov: Covariances, atoms: torch.Tensor, cutoff: float,
    generator: torch.Generator | None = None,
) -> Corruption:
    """Displace the atoms `atoms` of `graph` by draws from their covariances; the others keep
    their positions. Gradients reach Σ through the displacement and the target."""
    draw = draw_noise(cov.matrices[atoms], config.prior_scale, atoms, generator)
    positions = graph.positions.index_add(0, atoms, draw.displacement.to(graph.positions.dtype))
    noisy = rebuild_edges(replace(graph, positions=positions), cutoff)
    hinge = anisotropy_hinge(cov.gamma_sum[atoms], config.kappa) if cov.gamma_sum is not None else positions.new_zeros(())
    weights = None
    if config.kind == "isotropic":
        weights = torch.diagonal(cov.matrices[atoms], dim1=-2, dim2=-1).mean(-1) / config.prior_scale**2  # σ_i²/σ_p²
    return Corruption(noisy, draw.target, masked_mean(draw.kl), hinge, weights)


def regulariser(config: NoiseConfig, corruption: Corruption) -> torch.Tensor:
    """λ_KL·KL + λ_γ·L_γ (zero for the fixed model, whose KL is a constant)."""
    if not config.learned:
        return corruption.kl.new_zeros(())
    return config.kl_weight * corruption.kl + config.gamma_weight * corruption.hinge
