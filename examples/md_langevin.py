"""Langevin dynamics at 500 K with a force field; reports bonds that stretched beyond 1.5× or
shrank below 0.7× their starting length. The trajectory (extxyz) opens in ASE and OVITO.

    python examples/md_langevin.py [structure.xyz] [checkpoint] [steps]
"""

import sys

from ase.build import molecule
from ase.io import read

from anids_md import AniDSCalculator
from anids_md.simulate import optimize, run_md

atoms = read(sys.argv[1]) if len(sys.argv) > 1 else molecule("CH3CH2OH")
checkpoint = sys.argv[2] if len(sys.argv) > 2 else "rmd17-ethanol"
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
atoms.calc = AniDSCalculator(checkpoint)
optimize(atoms, fmax=0.01)
report = run_md(atoms, "langevin", temperature_K=500, timestep_fs=0.5, steps=steps, trajectory="langevin_500K.extxyz",
                interval=20, friction_per_fs=0.01, progress=True)
print(f"{steps * 0.5 / 1000:.1f} ps at 500 K: mean T {report.mean_temperature_K:.0f} K")
print("all bonds stable" if report.stable else f"unstable bonds: {report.unstable_bonds}")
