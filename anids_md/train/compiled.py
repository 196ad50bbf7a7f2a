"""The energy + force loss through torch.compile (`optim.compile`).

torch.compile cannot differentiate `autograd.grad(..., create_graph=True)` a second time, which a
force loss needs. Here the forces come from `torch.func.grad` inside the compiled function, so the
compiler sees energy, forces and loss as one graph and the optimiser's gradient is one compiled
backward. The loss itself is `losses.energy_force_terms`, as in eager training."""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..data import AtomicGraph
from ..nn import ForceField
from .losses import energy_force_terms


class CompiledEnergyForceLoss:
    """`energy_force_loss(model, batch, ...)` with its weights fixed, compiled with dynamic shapes:
    batches of one molecule with other edge counts reuse the compilation (other atom counts may
    add one). The first call compiles (about a minute on CPU; torch caches it on disk for later
    processes)."""

    def __init__(self, model: ForceField, energy_weight: float, forces_weight: float, form: str, backend: str = "inductor"):
        self.model, self.weights, self.form = model, (energy_weight, forces_weight), form
        self.compiled = torch.compile(self.loss, backend=backend, dynamic=True)

    def loss(self, parameters: dict, buffers: dict, positions, numbers, edge_index, shifts, batch, energy, forces) -> dict:
        n_structures = energy.shape[0]  # a size, not an int argument: torch traces it as the labels' dimension

        def total_energy(x):
            graph = AtomicGraph(x, numbers, edge_index, shifts, batch, n_structures)
            predicted = functional_call(self.model, (parameters, buffers), (graph,), {"compute_forces": False})["energy"]
            return predicted.sum(), predicted

        gradient, predicted = torch.func.grad(total_energy, has_aux=True)(positions)
        labels = AtomicGraph(positions, numbers, edge_index, shifts, batch, n_structures, energy, forces)
        return energy_force_terms({"energy": predicted, "forces": -gradient}, labels, self.model.config.force_scale, *self.weights,
                                  self.form)

    def __call__(self, batch: AtomicGraph) -> dict:
        self.model.encoder.check_elements(batch.numbers)  # not checked inside the compiled graph
        for vectors in (batch.positions, batch.forces, batch.shifts):
            # (N, 3): a static 3, or a batch of 3 structures would be taken for the same size and recompile
            torch._dynamo.mark_static(vectors, 1)
        # Python floats as constants, as in ForceField.compile_network (traced as inputs, torch
        # 2.13's inductor miscompiled this network)
        with torch._dynamo.config.patch(specialize_float=True):
            return self.compiled(dict(self.model.named_parameters()), dict(self.model.named_buffers()), batch.positions,
                                 batch.numbers, batch.edge_index, batch.shifts, batch.batch, batch.energy, batch.forces)
