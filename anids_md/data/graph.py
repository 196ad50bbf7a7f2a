"""Atomic graphs: positions, elements and a vesin neighbour list, and batches of them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from ase import Atoms
from vesin import NeighborList

from .readers import check_structure, labels_of


def neighbour_list(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float):
    """Directed pairs (i, j) with |x_j - x_i + shift| < cutoff, and the Cartesian shifts (Å)."""
    periodic = bool(np.any(pbc))
    box = np.asarray(cell, dtype=np.float64) if periodic else np.zeros((3, 3))
    if periodic and not np.all(pbc):
        raise ValueError(f"periodicity in some directions only (pbc={list(map(bool, pbc))}) is not supported; use all or none")
    i, j, shifts = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(positions, dtype=np.float64), box=box, periodic=periodic, quantities="ijS"
    )
    cartesian = shifts.astype(np.float64) @ box
    return np.stack([i, j]).astype(np.int64), cartesian


@dataclass
class AtomicGraph:
    """One or several structures as a graph. Edge e goes from neighbour j = edge_index[1, e]
    to centre i = edge_index[0, e]; its vector is x_j - x_i + shifts[e] (Å)."""

    positions: torch.Tensor  # (N, 3) Å
    numbers: torch.Tensor  # (N,) atomic numbers
    edge_index: torch.Tensor  # (2, E)
    shifts: torch.Tensor  # (E, 3) Å
    batch: torch.Tensor  # (N,) structure index of each atom
    n_structures: int
    energy: torch.Tensor | None = None  # (n_structures,) eV
    forces: torch.Tensor | None = None  # (N, 3) eV/Å

    def to(self, device=None, dtype=None) -> "AtomicGraph":
        """Move to `device`; floating tensors become `dtype` when it is given, except total
        energies, which stay float64 (float32 rounds -17 000 eV to 2 meV)."""
        moved = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                cast = dtype if value.is_floating_point() and field.name != "energy" else None
                value = value.to(device=device, dtype=cast)
            moved[field.name] = value
        return replace(self, **moved)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)


# Closer than this (Å), two atoms are an input error, not chemistry: the nearest real contacts
# (H-H in H2, 0.74 Å) are well above it, and coincident atoms would give NaN.
MIN_DISTANCE_A = 0.5


def check_distances(lengths: np.ndarray, edge_index: np.ndarray, shifts: np.ndarray, where: str = "structure",
                    min_distance: float = MIN_DISTANCE_A) -> None:
    """A ValueError naming the closest pair when two atoms (or an atom and a periodic image)
    are closer than `min_distance` Å; `lengths` (Å) are those of the edges."""
    if edge_index.shape[1] == 0:
        return
    e = int(np.argmin(lengths))
    if lengths[e] < min_distance:
        i, j = int(edge_index[0, e]), int(edge_index[1, e])
        image = " (a periodic image)" if np.any(shifts[e] != 0) else ""
        raise ValueError(f"{where}: atoms {i} and {j}{image} are {lengths[e]:.3f} Å apart, closer than {min_distance} Å; "
                         "check the coordinates (and the cell, if periodic)")


def graph_from_atoms(atoms: Atoms, cutoff: float, with_labels: bool = False, edges=None, dtype=torch.float64,
                     device=None) -> AtomicGraph:
    """Build the graph of one structure; `with_labels` attaches its energy and forces.
    `edges` = (edge_index, shifts) as numpy arrays reuses a neighbour list built for these atoms
    with a cutoff of at least `cutoff` (the calculator's list with a skin). Atoms closer than
    MIN_DISTANCE_A raise an error. The graph's positions are centred on the atoms' mean."""
    check_structure(atoms)
    edge_index, shifts = edges if edges is not None else neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    lengths = np.linalg.norm(atoms.positions[edge_index[1]] - atoms.positions[edge_index[0]] + shifts, axis=1)
    # pairs beyond the cutoff (the skin of a reused list, ~1/4 of it at 0.5 Å) contribute exactly zero: drop them
    inside = lengths < cutoff
    edge_index, shifts, lengths = edge_index[:, inside], shifts[inside], lengths[inside]
    check_distances(lengths, edge_index, shifts)
    energy = forces = None
    if with_labels:
        e, f = labels_of(atoms)
        energy = torch.tensor([e], dtype=torch.float64, device=device)
        forces = torch.tensor(f, dtype=dtype, device=device)
    # Centred in float64 before the cast: float32 keeps ~7 digits, so a molecule 10^4 Å from the
    # origin would otherwise lose its bond lengths to rounding. Energies and forces are invariant.
    positions = atoms.positions - atoms.positions.mean(axis=0)
    return AtomicGraph(
        positions=torch.tensor(positions, dtype=dtype, device=device),
        numbers=torch.tensor(atoms.numbers, dtype=torch.long, device=device),
        edge_index=torch.as_tensor(edge_index, device=device),
        shifts=torch.as_tensor(shifts, dtype=dtype, device=device),
        batch=torch.zeros(len(atoms), dtype=torch.long, device=device),
        n_structures=1,
        energy=energy,
        forces=forces,
    )


def to_pyg(graph: AtomicGraph, labels: bool = True):
    """The graph as a torch_geometric `Data` (pos Å, z, edge_index, shifts Å, and energy eV,
    forces eV/Å when `labels` and present), for use with PyG's datasets and loaders."""
    from torch_geometric.data import Data

    extra = {"energy": graph.energy, "forces": graph.forces} if labels and graph.energy is not None else {}
    return Data(pos=graph.positions, z=graph.numbers, edge_index=graph.edge_index, shifts=graph.shifts,
                num_nodes=graph.n_atoms, **extra)


def from_pyg(batch) -> AtomicGraph:
    """An AtomicGraph from a torch_geometric `Data` or `Batch` with the fields of `to_pyg`."""
    n_structures = getattr(batch, "num_graphs", 1)
    index = batch.batch if getattr(batch, "batch", None) is not None else batch.z.new_zeros(batch.num_nodes)
    return AtomicGraph(positions=batch.pos, numbers=batch.z, edge_index=batch.edge_index, shifts=batch.shifts, batch=index,
                       n_structures=n_structures, energy=getattr(batch, "energy", None), forces=getattr(batch, "forces", None))


def collate(graphs: list[AtomicGraph]) -> AtomicGraph:
    """Join graphs into one batch (edge indices offset, `batch` numbering the structures), with
    torch_geometric's batching; labels are kept when every graph has them. Training on aspirin
    measured 1-4 % slower than a hand-written join, in exchange for PyG interoperability
    (benchmarks/pyg_batching.py)."""
    from torch_geometric.data import Batch

    labelled = all(g.energy is not None for g in graphs)
    return from_pyg(Batch.from_data_list([to_pyg(g, labels=labelled) for g in graphs]))


def rebuild_edges(graph: AtomicGraph, cutoff: float) -> AtomicGraph:
    """The same atoms with a fresh neighbour list at their current positions (molecules only:
    used after displacing atoms, e.g. by denoising noise). Positions keep their autograd graph."""
    if bool((graph.shifts != 0).any()):
        raise ValueError("rebuilding the edges of periodic structures is not supported (denoising works on molecules)")
    positions = graph.positions.detach().cpu().double().numpy()
    batch = graph.batch.cpu().numpy()
    starts = np.searchsorted(batch, np.arange(graph.n_structures))
    ends = np.append(starts[1:], len(batch))
    edges = [neighbour_list(positions[s:e], np.zeros((3, 3)), False, cutoff)[0] + s for s, e in zip(starts, ends)]
    edge_index = torch.from_numpy(np.concatenate(edges, axis=1)).to(graph.edge_index.device)
    shifts = graph.shifts.new_zeros(edge_index.shape[1], 3)
    return replace(graph, edge_index=edge_index, shifts=shifts)
