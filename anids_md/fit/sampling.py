"""Configurations to label, drawn around a minimum.

- `anids`: each atom displaced by a draw from its covariance Σ_i, as the pretrained AniDS
  generator predicts it (small along stiff bonds, large along soft directions), rescaled so
  that the mean √(tr Σ_i/3) is the thermal amplitude below.
- `isotropic`: the same mean amplitude in every direction: the control that shows whether the
  learned covariances make better proposals.
- `normal-modes`: harmonic sampling at the temperature from a finite-difference Hessian
  (each mode with variance k_B T / λ_k in mass-weighted coordinates).

The covariance samplers take their amplitude from equipartition with a nominal force constant:
√(k_B T / K), K = 10 eV/Å² (0.066 Å at 500 K); stiffer directions would move less, softer
ones more, which is what the anids shape adds."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..units import BOLTZMANN_EV_PER_K
from .settings import SAMPLERS

NOMINAL_FORCE_CONSTANT = 10.0  # eV/Å²
HESSIAN_STEP = 0.01  # Å, central differences of the forces


def thermal_amplitude_A(temperature_K: float) -> float:
    """√(k_B T / K): the mean per-direction displacement of the covariance samplers (Å)."""
    return float(np.sqrt(BOLTZMANN_EV_PER_K * temperature_K / NOMINAL_FORCE_CONSTANT))


def generator_shapes(minimum: Atoms, generator_checkpoint: str) -> np.ndarray:
    """Σ_i (N, 3, 3) of the pretrained generator at the minimum, scaled to a mean √(tr Σ_i/3) of 1."""
    from ..data import graph_from_atoms
    from ..noise import LearnedNoise

    noise = LearnedNoise.from_checkpoint(generator_checkpoint)
    (cov,) = noise.covariances([graph_from_atoms(minimum, noise.generator.config.cutoff)], mean_scale_A=1.0)
    return cov.numpy()


def hessian_displacements(minimum: Atoms, step: float = HESSIAN_STEP) -> list[Atoms]:
    """The 6N structures (each atom ± `step` Å along x, y, z) whose forces give the Hessian."""
    frames = []
    for atom in range(len(minimum)):
        for axis in range(3):
            for sign in (1.0, -1.0):
                moved = Atoms(numbers=minimum.numbers, positions=minimum.positions.copy())
                moved.positions[atom, axis] += sign * step
                frames.append(moved)
    return frames


def hessian_from_forces(forces: list[np.ndarray], step: float = HESSIAN_STEP) -> np.ndarray:
    """The symmetrised Hessian (3N, 3N) in eV/Å² from the forces of `hessian_displacements`."""
    forces = np.asarray(forces)  # (6N, N, 3)
    plus, minus = forces[0::2], forces[1::2]
    hessian = -(plus - minus).reshape(len(plus), -1) / (2 * step)
    return 0.5 * (hessian + hessian.T)


def normal_mode_displacements(minimum: Atoms, hessian: np.ndarray, temperature_K: float, n: int, rng) -> np.ndarray:
    """(n, N, 3) classical harmonic displacements at `temperature_K` (Å)."""
    masses = np.repeat(minimum.get_masses(), 3)
    weighted = hessian / np.sqrt(np.outer(masses, masses))
    values, vectors = np.linalg.eigh(weighted)
    rigid = 5 if _is_linear(minimum) else 6
    keep = np.argsort(np.abs(values))[rigid:]  # translations and rotations have ~zero curvature
    keep = keep[values[keep] > 1e-6]  # an imaginary mode (not quite a minimum) is not sampled
    kT = BOLTZMANN_EV_PER_K * temperature_K
    q = rng.normal(size=(n, len(keep))) * np.sqrt(kT / values[keep])
    return ((q @ vectors[:, keep].T) / np.sqrt(masses)).reshape(n, len(minimum), 3)


def _is_linear(atoms: Atoms) -> bool:
    centred = atoms.positions - atoms.positions.mean(0)
    return len(atoms) <= 2 or np.linalg.svd(centred, compute_uv=False)[1] < 1e-3


def sample_configurations(
    minimum: Atoms, n: int, sampler: str, temperature_K: float, seed: int = 0, generator_checkpoint: str = "qm9-anids",
    hessian: np.ndarray | None = None,
) -> list[Atoms]:
    """`n` structures around `minimum` drawn by `sampler` (`normal-modes` needs the `hessian`)."""
    if sampler not in SAMPLERS or sampler == "xtb-md":  # xtb-md runs MD with xTB: fit/xtb_sampling.py
        raise ValueError(f"unknown displacement sampler {sampler!r}; choose one of {[k for k in SAMPLERS if k != 'xtb-md']}")
    if not temperature_K > 0:
        raise ValueError(f"the sampling temperature must be positive (K), got {temperature_K}")
    rng = np.random.default_rng(seed)
    if sampler == "normal-modes":
        if hessian is None:
            raise ValueError("the normal-modes sampler needs the Hessian at the minimum")
        displacements = normal_mode_displacements(minimum, hessian, temperature_K, n, rng)
    else:
        shapes = generator_shapes(minimum, generator_checkpoint) if sampler == "anids" else np.tile(np.eye(3), (len(minimum), 1, 1))
        factors = np.linalg.cholesky(shapes * thermal_amplitude_A(temperature_K) ** 2)
        displacements = np.einsum("nij,snj->sni", factors, rng.normal(size=(n, len(minimum), 3)))
    return [Atoms(numbers=minimum.numbers, positions=minimum.positions + d) for d in displacements]
