"""From a molecule to a validated force field: `fit` (SMILES or structure → DFT minimum →
sampled and labelled configurations → fine-tuning with denoising → rounds of MD → report).
Names are imported on first use, so that `fit.settings` (the command line's defaults) stays light."""

from .settings import SAMPLERS, FitSettings

_LAZY = {"fit": "pipeline", "FitReport": "pipeline", "Molecule": "molecule", "molecule_from_input": "molecule",
         "molecule_from_smiles": "molecule", "sample_configurations": "sampling"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'anids_md.fit' has no attribute {name!r}")


__all__ = ["SAMPLERS", "FitReport", "FitSettings", "Molecule", "fit", "molecule_from_input", "molecule_from_smiles",
           "sample_configurations"]
