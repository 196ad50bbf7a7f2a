"""Structures in, graphs out: readers, neighbour lists, batches, statistics and splits.
This layer knows no model."""

from .graph import AtomicGraph, collate, graph_from_atoms, neighbour_list
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
    "AtomicGraph", "collate", "graph_from_atoms", "neighbour_list", "check_structure", "labels_of",
    "read_ase", "read_isolated_atom_energies", "read_rmd17", "read_structures", "PROTOCOLS",
    "protocol_split", "random_split", "DatasetStatistics", "compute_statistics", "fit_reference_energies",
]
