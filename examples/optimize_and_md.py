"""Optimise a molecule with a shipped model, then run NVE molecular dynamics and report the drift.

    python examples/optimize_and_md.py
"""

from ase.build import molecule

from anids_md import AniDSCalculator
from anids_md.simulate import optimize, run_md

atoms = molecule("CH3CH2OH")
atoms.calc = AniDSCalculator("rmd17-ethanol", dtype="float64")

result = optimize(atoms, fmax=0.005, optimizer="BFGS")
print(f"relaxed in {result.steps} steps, E = {atoms.get_potential_energy():.4f} eV")

report = run_md(atoms, ensemble="nve", temperature_K=300, timestep_fs=0.5, steps=1000, trajectory="ethanol_nve.extxyz")
print(f"mean T {report.mean_temperature_K:.0f} K, drift {report.drift_meV_per_atom_per_ps:+.4f} meV/atom/ps")
