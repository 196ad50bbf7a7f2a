"""What a trained generator says about a molecule: each atom's noise covariance Σ_i (Å²), its
principal axes, and how the stiffest axis (least noise) lines up with the nearest bond."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.data.colors import jmol_colors

from ..data import check_structure, graph_from_atoms
from .learned import LearnedNoise


@dataclass
class NoiseReport:
    symbols: list[str]
    numbers: np.ndarray  # (N,) atomic numbers
    positions: np.ndarray  # (N, 3) Å
    covariance: np.ndarray  # (N, 3, 3) Å²
    eigenvalues: np.ndarray  # (N, 3) Å², ascending: the first is the stiffest direction
    eigenvectors: np.ndarray  # (N, 3, 3), column k belongs to eigenvalue k
    nearest_atom: np.ndarray  # (N,) index of each atom's nearest neighbour
    stiff_axis_bond_angle_deg: np.ndarray  # (N,) 0–90° between the stiffest axis and the nearest bond; NaN if no axis is stiffest
    noise_kind: str

    @property
    def noise_scale(self) -> np.ndarray:
        """√(tr Σ_i / 3) per atom, Å."""
        return np.sqrt(np.trace(self.covariance, axis1=1, axis2=2) / 3.0)

    def to_dict(self) -> dict:
        return {
            "noise_kind": self.noise_kind,
            "units": {"positions": "Å", "covariance": "Å^2", "eigenvalues": "Å^2", "angles": "degree"},
            "symbols": self.symbols,
            "positions": self.positions.tolist(),
            "covariance": self.covariance.tolist(),
            "eigenvalues": self.eigenvalues.tolist(),
            "eigenvectors": self.eigenvectors.tolist(),
            "noise_scale_A": self.noise_scale.tolist(),
            "nearest_atom": self.nearest_atom.tolist(),
            "stiff_axis_bond_angle_deg": [None if np.isnan(a) else float(a) for a in self.stiff_axis_bond_angle_deg],
        }


def describe_noise(noise: LearnedNoise, atoms: Atoms) -> NoiseReport:
    """Covariances of `atoms` under a pretrained generator, at the scale it was pretrained with."""
    check_structure(atoms, "structure")
    if len(atoms) < 2:
        raise ValueError("a noise report needs at least two atoms (the angle is to the nearest bond)")
    (cov,) = noise.covariances([graph_from_atoms(atoms, noise.generator.config.cutoff)])
    cov = cov.cpu().numpy()
    values, vectors = np.linalg.eigh(cov)
    distances = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    bonds = atoms.positions[nearest] - atoms.positions
    bonds /= np.linalg.norm(bonds, axis=1, keepdims=True)
    cosine = np.abs(np.einsum("nk,nk->n", vectors[:, :, 0], bonds)).clip(0.0, 1.0)
    angle = np.degrees(np.arccos(cosine))
    angle[values[:, 1] - values[:, 0] <= 1e-6 * values[:, 2]] = np.nan  # isotropic in the stiff plane: no axis
    return NoiseReport(
        symbols=atoms.get_chemical_symbols(), numbers=atoms.numbers.copy(), positions=atoms.positions.copy(), covariance=cov, eigenvalues=values,
        eigenvectors=vectors, nearest_atom=nearest, stiff_axis_bond_angle_deg=angle,
        noise_kind=noise.kind,
    )


def plot_noise(report: NoiseReport, path) -> None:
    """The molecule with one ellipsoid per atom (principal axes of Σ_i, radii ∝ √eigenvalue,
    magnified so they are visible; the factor is in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, numbers = report.positions, report.numbers
    magnify = 0.35 / float(np.sqrt(report.eigenvalues).mean())
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 24), np.linspace(0, np.pi, 12))
    sphere = np.stack([np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)], axis=-1)  # (12, 24, 3)
    for i in range(len(x)):
        axes = report.eigenvectors[i] * (magnify * np.sqrt(report.eigenvalues[i]))[None, :]
        surface = sphere @ axes.T + x[i]
        colour = jmol_colors[numbers[i]]
        ax.plot_surface(surface[..., 0], surface[..., 1], surface[..., 2], color=colour, alpha=0.55, linewidth=0, shade=True)
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if np.linalg.norm(x[i] - x[j]) < 1.2 * (covalent_radii[numbers[i]] + covalent_radii[numbers[j]]):
                ax.plot(*zip(x[i], x[j]), color="0.3", linewidth=1.5)
    span = (x.max(0) - x.min(0)).max() / 2 + 0.6
    centre = (x.max(0) + x.min(0)) / 2
    ax.set(xlim=(centre[0] - span, centre[0] + span), ylim=(centre[1] - span, centre[1] + span),
           zlim=(centre[2] - span, centre[2] + span), xlabel="x (Å)", ylabel="y (Å)", zlabel="z (Å)")
    ax.set_title(f"{report.noise_kind} noise: ellipsoids of Σ_i, radii √λ × {magnify:.1f}\n"
                 f"mean √(tr Σ/3) = {report.noise_scale.mean():.3f} Å")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
