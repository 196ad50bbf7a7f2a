"""The README's main job: relax ethanol with a shipped model and with PySCF DFT at the level of
its training data, compare the two minima (RMSD, energy penalty, wall time, with a plot), and run
a short NVE MD from the ML minimum. The DFT result is cached, so a second run takes seconds."""

from __future__ import annotations

import logging
import time

from ase import Atoms
from ase.build import molecule

from .calculator import AniDSCalculator
from .simulate import optimize, run_md
from .units import FS_PER_PS
from .validate import DFTLevel, compare_minima, plot_comparison

logger = logging.getLogger(__name__)


def run_demo(model: str = "rmd17-ethanol", steps: int = 2000, level: DFTLevel = DFTLevel(), plot: str | None = "demo_minima.png",
             cache_dir=None) -> dict:
    start = molecule("CH3CH2OH")  # ASE's G2 geometry: near, not at, either minimum
    calc = AniDSCalculator(model, dtype="float64")
    logger.info(f"model {model}: {calc.metadata['training'].get('description', '')}")
    logger.info(f"relaxing ethanol with the model (BFGS, fmax 1e-3 eV/Å) and with {level.label()} (PySCF + geomeTRIC; "
          "about half a minute on 2 cores the first time, cached afterwards) ...")
    (row,) = compare_minima(model, [start], ["ethanol"], level, fmax=1e-3, cache_dir=cache_dir, progress=False)
    logger.info(f"ML:  {row.ml_steps} BFGS steps in {row.ml_wall_s:.2f} s; RMSD to the start {row.rmsd_start_ml_A:.4f} Å")
    logger.info(f"DFT: {row.dft_steps} gradients in {row.dft_wall_s:.1f} s; RMSD to the start {row.rmsd_start_dft_A:.4f} Å")
    logger.info(f"RMSD between the ML and DFT minima: {row.rmsd_ml_dft_A:.4f} Å (heavy atoms {row.rmsd_ml_dft_heavy_A:.4f} Å); "
          f"DFT energy of the ML minimum is {row.dft_energy_penalty_meV:.2f} meV above the DFT minimum")
    if plot:
        plot_comparison([row], plot, f"{model} vs {level.label()}")
        logger.info(f"wrote {plot}")
    atoms = Atoms(numbers=start.numbers, positions=start.positions)
    atoms.calc = calc
    optimize(atoms, fmax=1e-3)
    begin = time.perf_counter()
    report = run_md(atoms, "nve", temperature_K=300.0, timestep_fs=0.5, steps=steps, progress=True)
    wall = time.perf_counter() - begin
    logger.info(f"NVE {steps} steps x 0.5 fs = {steps * 0.5 / FS_PER_PS:.2f} ps in {wall:.1f} s ({steps / wall:.0f} steps/s): "
          f"mean T {report.mean_temperature_K:.0f} K, drift {report.drift_meV_per_atom_per_ps:+.4f} meV/atom/ps, "
          f"{'all bonds stable' if report.stable else f'{len(report.unstable_bonds)} bonds UNSTABLE'}")
    return {"comparison": row, "md": report}
