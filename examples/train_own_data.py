"""Train a force field from scratch, without denoising, on your own labelled frames (any file ASE
reads with energies and forces; any elements), then use it as an ASE calculator.

    python examples/train_own_data.py frames.extxyz [energy_unit]
"""

import sys

from anids_md import AniDSCalculator
from anids_md.data import read_structures
from anids_md.train import load_config, train

path = sys.argv[1]
energy_unit = sys.argv[2] if len(sys.argv) > 2 else "eV"
# The packaged recipe (random split, least-squares reference energies) without its xTB molecule
# prior, so it needs no tblite and takes periodic frames, and with the plain recipe's learning rate
# and a budget in epochs instead of the fine-tune's gentler 4000 steps; the command-line equivalent is
#   anids-md train --config own-data prior=null optim.lr=5e-3 optim.max_steps=null optim.epochs=200 data.train=frames.extxyz
config = load_config("own-data", [
    "name=own-data",
    "prior=null",
    f"data.train={path}",
    f"data.energy_unit={energy_unit}",
    "optim.lr=5e-3",
    "optim.max_steps=null",
    "optim.epochs=200",
])
summary = train(config)
print("validation force MAE", round(summary["valid"]["forces_mae_meV_per_A"], 1), "meV/Å")

atoms = read_structures(path)[0]
atoms.calc = AniDSCalculator(config.run_dir / "model.safetensors")
print("energy of the first frame:", atoms.get_potential_energy(), "eV")
