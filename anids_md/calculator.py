"""ASE calculator for anids-md force fields."""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .checkpoint import load_checkpoint, resolve_dtype
from .data import AtomicGraph, check_structure, neighbour_list


class AniDSCalculator(Calculator):
    """Energy (eV), forces (eV/Å) and per-atom energies of an anids-md checkpoint.

    checkpoint: a file path or the name of a shipped model (e.g. "rmd17-ethanol").
    device: "cpu", "cuda" or a torch device. dtype: "float32"/"float64" (default: float64 on CPU
    for smooth MD and tight optimisation, float32 on GPU). skin (Å): the neighbour list is built
    with cutoff + skin and reused until an atom has moved more than skin / 2.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies"]

    def __init__(self, checkpoint, device="cpu", dtype=None, skin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        device = torch.device(device)
        dtype = resolve_dtype(dtype) or (torch.float64 if device.type == "cpu" else torch.float32)
        self.model, self.metadata = load_checkpoint(checkpoint, device=device, dtype=dtype)
        self.device, self.dtype, self.skin = device, dtype, float(skin)
        self.cutoff = self.model.config.cutoff
        self._neighbours = None  # (positions, cell, pbc, numbers, numbers tensor, edge_index, shifts) at the last build
        self.neighbour_list_builds = 0

    def _topology(self, atoms):
        """Atomic numbers, edge index and shifts as tensors, rebuilt only when atoms moved more
        than skin / 2 or the cell, periodicity or elements changed."""
        cached = self._neighbours
        if cached is not None:
            positions, cell, pbc, numbers, numbers_tensor, edge_index, shifts = cached
            same_system = (
                len(numbers) == len(atoms)
                and np.array_equal(numbers, atoms.numbers)
                and np.array_equal(cell, atoms.cell.array)
                and np.array_equal(pbc, atoms.pbc)
            )
            if same_system and np.max(np.linalg.norm(atoms.positions - positions, axis=1)) < self.skin / 2:
                return numbers_tensor, edge_index, shifts
        edge_index, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, self.cutoff + self.skin)
        numbers_tensor = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)
        edge_index = torch.from_numpy(edge_index).to(self.device)
        shifts = torch.from_numpy(shifts).to(self.device, self.dtype)
        self._neighbours = (atoms.positions.copy(), atoms.cell.array.copy(), atoms.pbc.copy(), atoms.numbers.copy(),
                            numbers_tensor, edge_index, shifts)
        self.neighbour_list_builds += 1
        return numbers_tensor, edge_index, shifts

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        check_structure(atoms)
        numbers, edge_index, shifts = self._topology(atoms)
        graph = AtomicGraph(
            positions=torch.tensor(atoms.positions, dtype=self.dtype, device=self.device),
            numbers=numbers,
            edge_index=edge_index,
            shifts=shifts,
            batch=torch.zeros(len(atoms), dtype=torch.long, device=self.device),
            n_structures=1,
        )
        out = self.model(graph, compute_forces=True)
        energy = float(out["energy"].item())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["energies"].detach().double().cpu().numpy(),
            "forces": out["forces"].detach().double().cpu().numpy(),
        }
