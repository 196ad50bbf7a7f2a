"""ASE calculator for anids-md force fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .checkpoint import load_checkpoint, resolve_dtype
from .data import AtomicGraph, check_structure, neighbour_list


@dataclass
class _Topology:
    """A neighbour-list build: the system it was built for, and its tensors for the model."""

    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    numbers: np.ndarray
    numbers_tensor: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    batch: torch.Tensor

    def still_valid(self, atoms, skin: float) -> bool:
        return (
            np.array_equal(self.numbers, atoms.numbers)
            and np.array_equal(self.cell, atoms.cell.array)
            and np.array_equal(self.pbc, atoms.pbc)
            and np.max(np.linalg.norm(atoms.positions - self.positions, axis=1)) < skin / 2
        )


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
        self._topology = None  # the last neighbour-list build, reused while atoms stay within the skin
        self.neighbour_list_builds = 0

    def _current_topology(self, atoms) -> "_Topology":
        """The cached topology, rebuilt only when atoms moved more than skin / 2 or the cell,
        periodicity or elements changed."""
        cached = self._topology
        if cached is not None and cached.still_valid(atoms, self.skin):
            return cached
        edge_index, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, self.cutoff + self.skin)
        self._topology = _Topology(
            positions=atoms.positions.copy(),
            cell=atoms.cell.array.copy(),
            pbc=atoms.pbc.copy(),
            numbers=atoms.numbers.copy(),
            numbers_tensor=torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device),
            edge_index=torch.from_numpy(edge_index).to(self.device),
            shifts=torch.from_numpy(shifts).to(self.device, self.dtype),
            batch=torch.zeros(len(atoms), dtype=torch.long, device=self.device),
        )
        self.neighbour_list_builds += 1
        return self._topology

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        check_structure(atoms)
        topology = self._current_topology(atoms)
        graph = AtomicGraph(
            positions=torch.tensor(atoms.positions, dtype=self.dtype, device=self.device),
            numbers=topology.numbers_tensor,
            edge_index=topology.edge_index,
            shifts=topology.shifts,
            batch=topology.batch,
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
