"""Loss forms, in one place. Errors are divided by the training set's force RMS (eV/Å) first, so
the weights do not depend on the units of the data.

`mse`: squared errors: energies per structure, vectors (forces, denoising targets) per Cartesian
component. `dens` (the DeNS and AniDS codes): absolute energy errors, and for vectors the mean over
atoms of the Euclidean norm of the error (L2MAE); robust, so a few badly labelled atoms cannot
dominate the loss."""

from __future__ import annotations

import torch

from ..data import AtomicGraph
from ..nn import ForceField
from ..noise import masked_mean


def scalar_error(error: torch.Tensor, form: str) -> torch.Tensor:
    """Mean of error² (mse) or |error| (dens) over the entries of `error`; 0 when there are none."""
    return masked_mean(error.pow(2) if form == "mse" else error.abs())


def vector_error(error: torch.Tensor, form: str, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(M, 3) errors: mean squared component (mse) or mean Euclidean norm (dens), each atom's
    term multiplied by its weight when `weights` (M,) are given; 0 when M = 0."""
    per_atom = error.pow(2).sum(-1) / 3.0 if form == "mse" else torch.linalg.vector_norm(error, dim=-1)
    return masked_mean(per_atom if weights is None else weights.to(per_atom.dtype) * per_atom)


def energy_force_terms(out: dict, batch: AtomicGraph, scale: float, energy_weight: float, forces_weight: float,
                       form: str = "mse", force_atoms: torch.Tensor | None = None) -> dict:
    """Weighted energy (per structure) and force errors of a model output `out` against the
    batch's labels, in units of `scale` (eV/Å); `force_atoms` (a mask) limits the force term."""
    energy_loss = scalar_error(((out["energy"] - batch.energy) / scale).to(out["forces"].dtype), form)
    force_error = out["forces"] - batch.forces
    forces_loss = vector_error((force_error if force_atoms is None else force_error[force_atoms]) / scale, form)
    total = energy_weight * energy_loss + forces_weight * forces_loss
    return {"loss": total, "energy": energy_loss.detach(), "forces": forces_loss.detach()}


def energy_force_loss(model: ForceField, batch: AtomicGraph, energy_weight: float, forces_weight: float, form: str = "mse") -> dict:
    """Weighted energy and force errors of a clean batch."""
    out = model(batch, compute_forces=True, create_graph=True)
    return energy_force_terms(out, batch, model.config.force_scale, energy_weight, forces_weight, form)
