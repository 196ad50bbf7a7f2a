"""Fine-tune the QM9-pretrained AniDS model on your own labelled frames (any file ASE reads with
energies and forces) with auxiliary anisotropic denoising, then use it as an ASE calculator.

    python examples/finetune_own_data.py frames.extxyz [energy_unit]
"""

import sys

from anids_md import AniDSCalculator
from anids_md.data import read_structures
from anids_md.train import load_config, train

# Runs from any directory: the data path is the user's, the recipe ships with the package, and the
# run folder is runs/own-data-finetuned under the current directory.

path = sys.argv[1]
energy_unit = sys.argv[2] if len(sys.argv) > 2 else "eV"
# The packaged recipe (a random split, least-squares reference energies) started, instead of from a
# molecule prior, from the backbone, denoising head and frozen noise generator of QM9 pretraining
# (qm9-anids), with auxiliary anisotropic denoising.
config = load_config("own-data", [
    "name=own-data-finetuned",
    "prior=null",
    "init=qm9-anids",
    "denoise.kind=anisotropic",
    f"data.train={path}",
    f"data.energy_unit={energy_unit}",
    "optim.epochs=200",
])
summary = train(config)
print("validation force MAE", round(summary["valid"]["forces_mae_meV_per_A"], 1), "meV/Å;",
      "noise scale of the frozen generator", summary["noise_scale_A"], "Å")

atoms = read_structures(path)[0]
atoms.calc = AniDSCalculator(config.run_dir / "model.safetensors")
print("energy of the first frame:", atoms.get_potential_energy(), "eV")
