"""Structures in, graphs out: readers, neighbour lists, batches, statistics and splits.
This layer knows no model."""

from .graph import AtomicGraph, collate, from_pyg, graph_from_atoms, neighbour_list, rebuild_edges, to_pyg
from .qm9 import qm9_directory, read_qm9
from .readers import (
    check_structure,
    labels_of,
    read_ase,
    read_isolated_atom_energies,
    read_rmd17,
    read_structures,
)
from .splits import PROTOCOLS, protocol_split, random_split
from .statistics import DatasetStatistics, compute_statistics, fit_reference_energies

__all__ = [
    "AtomicGraph", "collate", "from_pyg", "to_pyg", "graph_from_atoms", "neighbour_list", "rebuild_edges", "check_structure", "labels_of",
    "read_ase", "read_isolated_atom_energies", "read_rmd17", "read_structures", "PROTOCOLS",
    "protocol_split", "random_split", "qm9_directory", "read_qm9", "DatasetStatistics", "compute_statistics", "fit_reference_energies",
]
