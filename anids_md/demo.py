"""The README's main job: optimise ethanol with a shipped model and run a short NVE MD."""

from __future__ import annotations

import time

from ase.build import molecule

from .calculator import AniDSCalculator
from .simulate import optimize, run_md


def run_demo(model: str = "rmd17-ethanol", steps: int = 2000) -> dict:
    atoms = molecule("CH3CH2OH")  # ASE's G2 geometry, a reasonable start
    atoms.calc = AniDSCalculator(model, dtype="float64")
    print(f"model {model}: {atoms.calc.metadata['training'].get('description', '')}")
    start = time.perf_counter()
    e0 = atoms.get_potential_energy()
    result = optimize(atoms, fmax=0.001, optimizer="BFGS")
    print(f"BFGS {'converged' if result.converged else 'did NOT converge'} in {result.steps} steps "
          f"({time.perf_counter() - start:.2f} s): energy {e0:.4f} -> {atoms.get_potential_energy():.4f} eV, "
          f"max |F| {result.fmax_eV_per_A:.5f} eV/Å")
    start = time.perf_counter()
    report = run_md(atoms, "nve", temperature_K=300.0, timestep_fs=0.5, steps=steps, progress=True)
    wall = time.perf_counter() - start
    print(f"NVE {steps} steps x 0.5 fs = {steps * 0.5 / 1000:.2f} ps in {wall:.1f} s ({steps / wall:.0f} steps/s): "
          f"mean T {report.mean_temperature_K:.0f} K, drift {report.drift_meV_per_atom_per_ps:+.4f} meV/atom/ps")
    return {"optimization": result, "md": report}
