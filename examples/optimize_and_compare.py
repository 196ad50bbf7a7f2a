"""Relax a structure with a force field and with PySCF DFT at the level of its training data,
and compare the minima (RMSD after Kabsch alignment, DFT energy penalty, wall times).

    python examples/optimize_and_compare.py [structure.xyz] [checkpoint]
"""

import sys

from ase.build import molecule
from ase.io import read

from anids_md.validate import DFTLevel, compare_minima, plot_comparison

start = read(sys.argv[1]) if len(sys.argv) > 1 else molecule("CH3CH2OH")
checkpoint = sys.argv[2] if len(sys.argv) > 2 else "rmd17-ethanol"
level = DFTLevel(xc="PBE", basis="def2-SVP")  # rMD17's level; DFTLevel(dispersion="d3bj") adds D3(BJ)

(row,) = compare_minima(checkpoint, [start], ["start"], level)  # DFT results are cached on disk
print(f"RMSD ML minimum vs DFT minimum: {row.rmsd_ml_dft_A:.4f} Å")
print(f"RMSD start -> DFT minimum {row.rmsd_start_dft_A:.4f} Å, start -> ML minimum {row.rmsd_start_ml_A:.4f} Å")
print(f"E_DFT(ML minimum) - E_DFT(DFT minimum) = {row.dft_energy_penalty_meV:.2f} meV")
print(f"wall time: ML {row.ml_wall_s:.2f} s, DFT {row.dft_wall_s:.1f} s")
plot_comparison([row], "minima.png", f"{checkpoint} vs {level.label()}")
