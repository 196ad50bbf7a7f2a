"""NVE molecular dynamics with a force field: energy drift (meV/atom/ps) in float64 and float32.

    python examples/md_nve_drift.py [checkpoint] [steps]
"""

import sys

from ase.build import molecule

from anids_md import AniDSCalculator
from anids_md.simulate import optimize, run_md

checkpoint = sys.argv[1] if len(sys.argv) > 1 else "rmd17-ethanol"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
for dtype in ("float64", "float32"):
    atoms = molecule("CH3CH2OH")
    atoms.calc = AniDSCalculator(checkpoint, dtype=dtype)
    optimize(atoms, fmax=0.01)
    report = run_md(atoms, "nve", temperature_K=300, timestep_fs=0.5, steps=steps, trajectory=f"nve_{dtype}.extxyz", progress=True)
    print(f"{dtype}: drift {report.drift_meV_per_atom_per_ps:+.4f} meV/atom/ps, mean T {report.mean_temperature_K:.0f} K, "
          f"bonds {'stable' if report.stable else 'UNSTABLE'}")
