"""ML minima against DFT minima (BENCHMARKS.md D): from the same start, relax with the force
field and with PySCF; report the RMSD between the minima, of each to the start, the RMSD
reduction of the AniDS paper's Table 16, the DFT energy penalty of the ML minimum, and wall times."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from ase import Atoms
from tqdm.auto import tqdm

from ..calculator import AniDSCalculator
from ..reference import DFTLevel, dft_optimize, dft_single_point
from ..simulate import optimize
from ..units import MEV_PER_EV
from .rmsd import kabsch_rmsd


@dataclass
class MinimumComparison:
    name: str
    formula: str
    rmsd_ml_dft_A: float  # between the two minima (Kabsch, all atoms)
    rmsd_ml_dft_heavy_A: float  # the same without hydrogens
    rmsd_start_ml_A: float
    rmsd_start_dft_A: float
    rmsd_reduction_A: float  # RMSD(start, DFT min) − RMSD(ML min, DFT min): Table 16 of the AniDS paper
    dft_energy_penalty_meV: float  # E_DFT(ML minimum) − E_DFT(DFT minimum)
    ml_steps: int
    ml_converged: bool
    ml_wall_s: float
    dft_steps: int
    dft_converged: bool
    dft_wall_s: float  # of the reference optimisation when it was computed (cached results keep it)


def compare_minima(
    checkpoint, structures: list[Atoms], names: list[str] | None = None, level: DFTLevel = DFTLevel(),
    fmax: float = 1e-3, cache_dir=None, progress: bool = True,
) -> list[MinimumComparison]:
    """Relax each structure with the model (`fmax` eV/Å, BFGS, float64) and with DFT at `level`."""
    names = names or [f"structure {k}" for k in range(len(structures))]
    calc = AniDSCalculator(checkpoint, dtype="float64")
    rows = []
    for name, start in tqdm(list(zip(names, structures)), disable=not progress, desc="ML vs DFT minima", unit="structure"):
        start = Atoms(numbers=start.numbers, positions=start.positions)
        ml = start.copy()
        ml.calc = calc
        begin = time.perf_counter()
        result = optimize(ml, fmax=fmax, optimizer="BFGS", steps=2000)
        ml_wall = time.perf_counter() - begin
        dft = dft_optimize(start, level, cache_dir=cache_dir)
        at_ml = dft_single_point(Atoms(numbers=ml.numbers, positions=ml.positions), level, cache_dir=cache_dir)
        between = kabsch_rmsd(dft.atoms, ml)
        rows.append(MinimumComparison(
            name=name, formula=start.get_chemical_formula(), rmsd_ml_dft_A=between,
            rmsd_ml_dft_heavy_A=kabsch_rmsd(dft.atoms, ml, heavy_atoms_only=True),
            rmsd_start_ml_A=kabsch_rmsd(start, ml), rmsd_start_dft_A=kabsch_rmsd(start, dft.atoms),
            rmsd_reduction_A=kabsch_rmsd(start, dft.atoms) - between,
            dft_energy_penalty_meV=MEV_PER_EV * (at_ml.energy_eV - dft.energy_eV),
            ml_steps=result.steps, ml_converged=result.converged, ml_wall_s=ml_wall,
            dft_steps=dft.steps, dft_converged=dft.converged, dft_wall_s=dft.wall_s,
        ))
    return rows


def summarize(rows: list[MinimumComparison]) -> dict:
    """Means over the structures, and the ML-to-DFT wall-time ratio."""
    n = len(rows)
    mean = {key: sum(getattr(r, key) for r in rows) / n for key in
            ("rmsd_ml_dft_A", "rmsd_ml_dft_heavy_A", "rmsd_start_ml_A", "rmsd_start_dft_A", "rmsd_reduction_A", "dft_energy_penalty_meV")}
    ml_wall, dft_wall = sum(r.ml_wall_s for r in rows), sum(r.dft_wall_s for r in rows)
    return {"n_structures": n, **{f"mean_{k}": v for k, v in mean.items()}, "max_rmsd_ml_dft_A": max(r.rmsd_ml_dft_A for r in rows),
            "ml_wall_s": ml_wall, "dft_wall_s": dft_wall, "dft_over_ml_wall": dft_wall / ml_wall if ml_wall else None}


def as_json(rows: list[MinimumComparison]) -> list[dict]:
    return [asdict(r) for r in rows]


def plot_comparison(rows: list[MinimumComparison], path, title: str = "") -> None:
    """Per structure: RMSD between the minima next to each minimum's RMSD to the start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    # RMSDs span 1e-4 to 1e-1 Å between a good and a poor model: a log axis shows both, and
    # each bar carries its value.
    for k, (key, label) in enumerate([("rmsd_ml_dft_A", "ML min vs DFT min"), ("rmsd_start_dft_A", "start vs DFT min"),
                                      ("rmsd_start_ml_A", "start vs ML min")]):
        values = [max(getattr(r, key), 1e-5) for r in rows]  # an exact match (0) still gets a visible bar
        bars = left.bar(x + (k - 1) * 0.27, values, 0.27, label=label)
        left.bar_label(bars, [f"{getattr(r, key):.4f}" for r in rows], fontsize=7, rotation=90, padding=2)
    left.axhline(0.02, color="k", linestyle=":", linewidth=1, label="0.02 Å target")
    left.set_yscale("log")
    top = max(max(r.rmsd_start_dft_A, r.rmsd_start_ml_A, r.rmsd_ml_dft_A) for r in rows)
    bottom = min(max(min(r.rmsd_ml_dft_A, r.rmsd_start_dft_A, r.rmsd_start_ml_A), 1e-5) for r in rows)
    left.set_ylim(bottom / 5, max(top, 0.02) * 20)  # every bar visible, room for the values above them
    left.set_xticks(x, [r.name for r in rows], rotation=30, ha="right", fontsize=8)
    left.set(ylabel="RMSD (Å, log scale)")
    left.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, borderaxespad=0)  # above the axes, never on a bar
    bars = right.bar(x, [r.dft_energy_penalty_meV for r in rows], color="tab:red")
    right.bar_label(bars, [f"{r.dft_energy_penalty_meV:.2f}" for r in rows], fontsize=7, padding=2)
    right.set_xticks(x, [r.name for r in rows], rotation=30, ha="right", fontsize=8)
    right.set(ylabel="E_DFT(ML min) − E_DFT(DFT min) (meV)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
