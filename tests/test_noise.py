"""Noise models: covariance properties, draws, targets and the KL term (METHOD.md §1)."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from anids_md.data import graph_from_atoms
from anids_md.noise import anisotropic_weights, anisotropy_hinge, covariance, draw_noise, masked_mean

SIGMA_P = 0.1


def anisotropic_inputs(atoms, seed=0):
    graph = graph_from_atoms(atoms, cutoff=3.0)
    i, j = graph.edge_index
    vectors = graph.positions[j] - graph.positions[i]
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    n, e = len(atoms), len(i)
    log_a = 2 * np.log(SIGMA_P) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    edge_logits = torch.randn(e, generator=g, dtype=torch.float64)
    log_sink = torch.randn(n, generator=g, dtype=torch.float64)
    return graph.edge_index, unit, log_a, edge_logits, log_sink


@pytest.mark.parametrize("kind", ["anisotropic", "anisotropic-add"])
def test_covariance_symmetric_positive_definite_and_rotates(ethanol, kind):
    edge_index, unit, log_a, logits, sink = anisotropic_inputs(ethanol)
    gamma, gamma_sum = anisotropic_weights(logits, sink, edge_index[0])
    assert bool((gamma_sum < 1).all()) and bool((gamma_sum > 0).all())
    cov = covariance(kind, log_a, edge_index, unit, gamma)
    assert torch.allclose(cov, cov.transpose(1, 2))
    assert bool((torch.linalg.eigvalsh(cov) > 0).all())
    rotation = torch.tensor(Rotation.random(random_state=2).as_matrix())
    rotated = covariance(kind, log_a, edge_index, unit @ rotation.T, gamma)
    assert torch.allclose(rotated, rotation @ cov @ rotation.T, atol=1e-14)
    moved = ethanol.copy()
    moved.positions += [3.0, -1.0, 2.0]
    edge_index2, unit2, *_ = anisotropic_inputs(moved)
    assert torch.equal(edge_index2, edge_index)
    assert torch.allclose(covariance(kind, log_a, edge_index2, unit2, gamma), cov, atol=1e-14)


def test_anisotropic_noise_is_smaller_along_bonds(ethanol):
    edge_index, unit, log_a, logits, sink = anisotropic_inputs(ethanol)
    gamma, _ = anisotropic_weights(logits, sink, edge_index[0])
    cov = covariance("anisotropic", log_a, edge_index, unit, gamma)
    e = 0  # the variance along an edge direction is below the isotropic base a_i
    along = unit[e] @ cov[edge_index[0, e]] @ unit[e]
    assert along < torch.exp(log_a[edge_index[0, e]])


def test_softmax_weights_match_equation_15():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    centre = torch.tensor([0, 0, 1, 1])
    sink = torch.tensor([0.1, 1.5], dtype=torch.float64)
    gamma, gamma_sum = anisotropic_weights(logits, sink, centre)
    expected0 = torch.exp(logits[:2]) / (torch.exp(logits[:2]).sum() + torch.exp(sink[0]))
    expected1 = torch.exp(logits[2:]) / (torch.exp(logits[2:]).sum() + torch.exp(sink[1]))
    assert torch.allclose(gamma, torch.cat([expected0, expected1]))
    assert torch.allclose(gamma_sum, torch.stack([expected0.sum(), expected1.sum()]))
    big = anisotropic_weights(logits + 800.0, sink + 800.0, centre)[0]  # no overflow
    assert torch.allclose(big, gamma)


def test_fixed_target_is_exactly_epsilon():
    log_a = torch.full((5,), 2 * np.log(SIGMA_P), dtype=torch.float64)
    cov = covariance("fixed", log_a)
    generator = torch.Generator().manual_seed(3)
    draw = draw_noise(cov, SIGMA_P, generator=generator)
    eps = torch.randn(5, 3, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).squeeze(-1)
    assert torch.allclose(draw.target, eps, atol=1e-12)
    assert torch.allclose(draw.displacement, SIGMA_P * eps, atol=1e-12)
    assert torch.allclose(draw.kl, torch.zeros(5, dtype=torch.float64), atol=1e-12)


def test_anisotropic_with_zero_gamma_equals_isotropic(ethanol):
    edge_index, unit, log_a, _, _ = anisotropic_inputs(ethanol)
    gamma = torch.zeros(edge_index.shape[1], dtype=torch.float64)
    a = draw_noise(covariance("anisotropic", log_a, edge_index, unit, gamma), SIGMA_P, generator=torch.Generator().manual_seed(0))
    b = draw_noise(covariance("isotropic", log_a), SIGMA_P, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.target, b.target) and torch.allclose(a.kl, b.kl)
    # DenoiseVAE's eq. 7 for σ_i² = a_i: KL = 3/2 (σ_i²/σ_p² − 1 − ln(σ_i²/σ_p²)).
    ratio = torch.exp(log_a) / SIGMA_P**2
    assert torch.allclose(b.kl, 1.5 * (ratio - 1 - torch.log(ratio)))


def test_kl_closed_form_and_monte_carlo(ethanol):
    edge_index, unit, log_a, logits, sink = anisotropic_inputs(ethanol)
    gamma, _ = anisotropic_weights(logits, sink, edge_index[0])
    cov = covariance("anisotropic", log_a, edge_index, unit, gamma)
    draw = draw_noise(cov, SIGMA_P)
    prior = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), SIGMA_P**2 * torch.eye(3, dtype=torch.float64))
    posterior = torch.distributions.MultivariateNormal(torch.zeros(len(cov), 3, dtype=torch.float64), cov)
    assert torch.allclose(draw.kl, torch.distributions.kl_divergence(posterior, prior), atol=1e-10)
    samples = posterior.sample((200_000,))
    estimate = (posterior.log_prob(samples) - prior.log_prob(samples)).mean(0)
    assert torch.allclose(estimate, draw.kl, atol=0.03)
    # The draws themselves have covariance Σ.
    many = draw_noise(cov[:1].expand(20_000, 3, 3), SIGMA_P).displacement
    assert torch.allclose(torch.cov(many.T), cov[0], atol=0.05 * float(cov[0].diagonal().max()))


def test_gradients_reach_covariance_parameters(ethanol):
    edge_index, unit, log_a, logits, sink = anisotropic_inputs(ethanol)
    params = [t.clone().requires_grad_(True) for t in (log_a, logits, sink)]
    gamma, gamma_sum = anisotropic_weights(params[1], params[2], edge_index[0])
    draw = draw_noise(covariance("anisotropic", params[0], edge_index, unit, gamma), SIGMA_P)
    loss = masked_mean(draw.target**2) + masked_mean(draw.kl) + anisotropy_hinge(gamma_sum, kappa=0.9)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_empty_selection_and_bad_covariance():
    empty = draw_noise(torch.zeros(0, 3, 3), SIGMA_P)
    total = masked_mean((empty.target - 1.0) ** 2) + masked_mean(empty.kl) + anisotropy_hinge(torch.zeros(0))
    assert torch.isfinite(total) and total.item() == 0.0
    cov = torch.eye(3).repeat(3, 1, 1)
    cov[1, 2, 2] = -1.0
    with pytest.raises(ValueError, match="atom 7 is not positive definite"):
        draw_noise(cov, SIGMA_P, atoms=torch.tensor([4, 7, 9]))
    with pytest.raises(ValueError, match="unknown noise model"):
        covariance("gaussian", torch.zeros(2))


def test_the_isotropic_model_weights_its_denoising_loss_by_sigma_squared():
    """DenoiseVAE's eq. 6, Σ_i σ_i² ‖x̂_i − (x − x̃)/σ_i²‖², in the package's units (targets
    scaled by σ_p): per-atom weights σ_i²/σ_p², against its closed form on a hand-made batch."""
    from ase.build import molecule

    from anids_md.data import graph_from_atoms
    from anids_md.noise import Covariances, NoiseConfig, corrupt
    from anids_md.train.losses import vector_error

    graph = graph_from_atoms(molecule("H2O"), 4.0)
    sigma = torch.tensor([0.05, 0.2, 0.1], dtype=torch.float64)
    cov = Covariances(sigma[:, None, None] ** 2 * torch.eye(3, dtype=torch.float64), None)
    atoms = torch.arange(3)
    rng = torch.Generator().manual_seed(0)
    corruption = corrupt(NoiseConfig(kind="isotropic", sigma_prior=0.1), graph, cov, atoms, 4.0, rng)
    torch.testing.assert_close(corruption.weights, torch.tensor([0.25, 4.0, 1.0], dtype=torch.float64))
    epsilon = (corruption.graph.positions - graph.positions) / sigma[:, None]  # the standard normal draws
    torch.testing.assert_close(corruption.target, 0.1 * epsilon / sigma[:, None])
    predicted = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -0.1], [1.0, 1.0, 1.0]], dtype=torch.float64)
    error = predicted - corruption.target
    # closed form: (1/M) Σ_i (σ_i/σ_p)² |x̂_i − target_i|² / 3
    expected = sum((sigma[i] / 0.1) ** 2 * (error[i] ** 2).sum() / 3 for i in range(3)) / 3
    torch.testing.assert_close(vector_error(error, "mse", corruption.weights), expected)
    assert abs(float(vector_error(error, "mse")) - float(expected)) > 1e-3  # the weights matter here
    for kind in ("fixed", "anisotropic"):  # the other models are not reweighted
        assert corrupt(NoiseConfig(kind=kind, sigma=0.1), graph, Covariances(cov.matrices, torch.ones(3)), atoms, 4.0, rng).weights is None
