"""Training objectives. Errors are divided by the training set's force RMS (eV/Å) before
squaring, so the loss weights do not depend on the units of the data."""

from __future__ import annotations

from ..data import AtomicGraph
from ..nn import ForceField


def energy_force_loss(model: ForceField, batch: AtomicGraph, energy_weight: float, forces_weight: float) -> dict:
    """Weighted MSE of energies (per structure) and forces (per component)."""
    out = model(batch, compute_forces=True, training=True)
    scale = model.config.force_scale
    energy_error = ((out["energy"] - batch.energy) / scale).to(out["forces"].dtype)
    energy_loss = energy_error.pow(2).mean()
    forces_loss = ((out["forces"] - batch.forces) / scale).pow(2).mean()
    total = energy_weight * energy_loss + forces_weight * forces_loss
    return {"loss": total, "energy": energy_loss.detach(), "forces": forces_loss.detach()}
