"""Does the learned noise follow the physics? A generator's covariance Σ_i says in which
directions atom i may move cheaply. Here each atom is displaced along each principal axis of Σ_i
and the energy's curvature along that axis is measured with a force field (or DFT): a stiff axis
(small eigenvalue) should cost more energy than a soft one (the AniDS paper's Fig. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from ..noise.analysis import NoiseReport


@dataclass
class NoiseCheck:
    displacement_A: float
    curvature_eV_per_A2: np.ndarray  # (N, 3): along each principal axis, ascending eigenvalue (stiffest first)
    fraction_stiff_above_soft: float  # share of atoms whose stiffest axis is curved more than their softest
    spearman: float  # rank correlation of 1/eigenvalue with the curvature, over all atoms and axes
    method: str  # what gave the energies

    def to_dict(self) -> dict:
        return {"method": self.method, "displacement_A": self.displacement_A,
                "curvature_eV_per_A2": self.curvature_eV_per_A2.tolist(),
                "fraction_stiff_above_soft": self.fraction_stiff_above_soft, "spearman": self.spearman}


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties are rare for these continuous values)."""
    return float(np.corrcoef(_ranks(np.ravel(a)), _ranks(np.ravel(b)))[0, 1])


def check_noise(report: NoiseReport, energy, displacement: float = 0.02, method: str = "force field") -> NoiseCheck:
    """Curvatures (E(+d) + E(−d) − 2 E0) / d² along every atom's principal axes of Σ_i, with
    `energy(atoms) -> eV` (e.g. a calculator's potential energy, or DFT)."""
    if not displacement > 0:
        raise ValueError(f"the displacement must be positive (Å), got {displacement}")
    start = Atoms(numbers=report.numbers, positions=report.positions)
    e0 = energy(start)
    curvature = np.zeros((len(start), 3))
    for i in range(len(start)):
        for k in range(3):
            rises = []
            for sign in (1.0, -1.0):
                moved = start.copy()
                moved.positions[i] += sign * displacement * report.eigenvectors[i][:, k]
                rises.append(energy(moved) - e0)
            curvature[i, k] = sum(rises) / displacement**2
    stiff_above_soft = float(np.mean(curvature[:, 0] > curvature[:, 2]))
    return NoiseCheck(displacement, curvature, stiff_above_soft, spearman(1.0 / report.eigenvalues, curvature), method)


def noise_landscape(report: NoiseReport, energy, extent: float = 3.0, points: int = 21) -> dict:
    """Energies (eV, relative to the start) on a grid along the two leading noise directions of
    the whole molecule (the eigenvectors of the block-diagonal 3N×3N covariance with the largest
    eigenvalues), from −extent to +extent standard deviations of the noise along each."""
    n = len(report.numbers)
    flat = np.concatenate([report.eigenvalues[i] for i in range(n)])
    order = np.argsort(flat)[::-1][:2]
    directions = []
    for index in order:
        atom, axis = divmod(int(index), 3)
        vector = np.zeros((n, 3))
        vector[atom] = report.eigenvectors[atom][:, axis] * np.sqrt(flat[index])  # one standard deviation, Å
        directions.append(vector)
    start = Atoms(numbers=report.numbers, positions=report.positions)
    e0 = energy(start)
    steps = np.linspace(-extent, extent, points)
    grid = np.zeros((points, points))
    for a, s in enumerate(steps):
        for b, t in enumerate(steps):
            moved = start.copy()
            moved.positions += s * directions[0] + t * directions[1]
            grid[a, b] = energy(moved) - e0
    atoms = [divmod(int(i), 3)[0] for i in order]
    return {"steps_in_sigma": steps.tolist(), "energy_eV": grid.tolist(), "atoms": atoms,
            "sigma_A": [float(np.sqrt(flat[i])) for i in order]}


def plot_check(check: NoiseCheck, report: NoiseReport, path, landscape: dict | None = None) -> None:
    """Curvature against the noise eigenvalue for every atom and axis (and the landscape)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if landscape else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), squeeze=False)
    ax = axes[0, 0]
    for k, label in enumerate(["stiffest axis", "middle", "softest axis"]):
        ax.semilogy(report.eigenvalues[:, k], np.clip(check.curvature_eV_per_A2[:, k], 1e-3, None), "o", ms=4, label=label)
    ax.set(xlabel="noise eigenvalue λ (Å²)", ylabel=f"energy curvature, {check.method} (eV/Å²)",
           title=f"stiff > soft for {100 * check.fraction_stiff_above_soft:.0f} % of atoms; Spearman {check.spearman:.2f}")
    ax.legend(fontsize=8)
    if landscape:
        ax = axes[0, 1]
        steps = np.array(landscape["steps_in_sigma"])
        picture = ax.contourf(steps, steps, np.array(landscape["energy_eV"]).T, levels=20)
        fig.colorbar(picture, ax=ax, label="E − E0 (eV)")
        a, b = landscape["atoms"]
        ax.set(xlabel=f"leading noise direction (atom {a}), σ units", ylabel=f"second direction (atom {b}), σ units",
               title="energy along the two leading noise directions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
