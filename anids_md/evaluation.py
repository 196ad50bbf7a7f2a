"""Predictions of a model over structures and their errors against reference labels."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from .data import AtomicGraph, collate, graph_from_atoms, labels_of
from .data.statistics import check_label_units
from .nn import ForceField
from .units import MEV_PER_EV


def predict(model: ForceField, graphs: list[AtomicGraph], batch_size: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies (eV, one per structure) and forces (eV/Å, one (N, 3) array per structure)."""
    parameter = next(model.parameters())
    energies, forces = [], []
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size]).to(parameter.device, parameter.dtype)
        out = model(batch)
        energies.append(out["energy"].detach().double().cpu().numpy())
        per_atom = out["forces"].detach().double().cpu().numpy()
        counts = torch.bincount(batch.batch, minlength=batch.n_structures).tolist()
        forces.extend(np.split(per_atom, np.cumsum(counts)[:-1]))
    return np.concatenate(energies), forces


def error_metrics(pred_energy, pred_forces, ref_energy, ref_forces) -> dict:
    """Energy MAE/RMSE (meV) and force MAE/RMSE over all components (meV/Å)."""
    de = (np.asarray(pred_energy) - np.asarray(ref_energy)) * MEV_PER_EV
    df = (np.concatenate([np.ravel(f) for f in pred_forces]) - np.concatenate([np.ravel(f) for f in ref_forces])) * MEV_PER_EV
    return {
        "energy_mae_meV": float(np.mean(np.abs(de))),
        "energy_rmse_meV": float(np.sqrt(np.mean(de**2))),
        "forces_mae_meV_per_A": float(np.mean(np.abs(df))),
        "forces_rmse_meV_per_A": float(np.sqrt(np.mean(df**2))),
        "n_structures": int(len(de)),
    }


def evaluate(model: ForceField, structures: list[Atoms], batch_size: int = 32) -> dict:
    """Errors of `model` on labelled structures (see `error_metrics`); labels on the scale of
    another unit than eV and eV/Å are refused, as in training."""
    check_label_units(structures)
    graphs = [graph_from_atoms(a, model.config.cutoff) for a in structures]
    energy, forces = predict(model, graphs, batch_size)
    labels = [labels_of(a) for a in structures]
    return error_metrics(energy, forces, [e for e, _ in labels], [f for _, f in labels])
