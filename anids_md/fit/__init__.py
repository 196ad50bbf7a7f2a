"""From a molecule to a validated force field: `fit` (SMILES or structure → DFT minimum →
sampled and labelled configurations → fine-tuning with denoising → rounds of MD → report).
Names are imported on first use, so that `fit.settings` (the command line's defaults) stays light."""

from ..lazy import lazy_exports
from .settings import SAMPLERS, FitSettings

__getattr__ = lazy_exports(__name__, {"fit": ".pipeline", "FitReport": ".pipeline", "Molecule": ".molecule",
                                      "molecule_from_input": ".molecule", "molecule_from_smiles": ".molecule",
                                      "sample_configurations": ".sampling"})


__all__ = ["SAMPLERS", "FitReport", "FitSettings", "Molecule", "fit", "molecule_from_input", "molecule_from_smiles",
           "sample_configurations"]
