"""Structures in, graphs out: readers, neighbour lists, batches, statistics and splits.
This layer knows no model. Names load their module on first use (anids_md/lazy.py)."""

from ..lazy import lazy_exports

_MODULES = {
    **dict.fromkeys(["AtomicGraph", "collate", "from_pyg", "graph_from_atoms", "neighbour_list", "rebuild_edges", "to_pyg"], ".graph"),
    **dict.fromkeys(["qm9_directory", "read_qm9"], ".qm9"),
    **dict.fromkeys(["check_structure", "labels_of", "read_ase", "read_isolated_atom_energies", "read_rmd17", "read_structures"],
                    ".readers"),
    **dict.fromkeys(["PROTOCOLS", "protocol_split", "random_split"], ".splits"),
    **dict.fromkeys(["DatasetStatistics", "compute_statistics", "fit_reference_energies"], ".statistics"),
}
__getattr__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(_MODULES)
