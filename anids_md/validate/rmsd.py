"""Root-mean-square deviation between two conformations of the same molecule after optimal
superposition (Kabsch), in Å."""

from __future__ import annotations

import numpy as np
from ase import Atoms


def kabsch_rmsd(a: Atoms, b: Atoms, heavy_atoms_only: bool = False) -> float:
    """RMSD (Å) of `b` onto `a` after removing translation and the best rotation (proper
    rotations only). Atoms must be in the same order; `heavy_atoms_only` drops hydrogens."""
    if list(a.numbers) != list(b.numbers):
        raise ValueError("the two structures must have the same atoms in the same order")
    keep = a.numbers != 1 if heavy_atoms_only else np.ones(len(a), dtype=bool)
    if keep.sum() == 0:
        raise ValueError("no atoms left to compare")
    x = a.positions[keep] - a.positions[keep].mean(axis=0)
    y = b.positions[keep] - b.positions[keep].mean(axis=0)
    u, _, vt = np.linalg.svd(y.T @ x)
    sign = np.sign(np.linalg.det(u @ vt))  # no reflections
    rotation = u @ np.diag([1.0, 1.0, sign]) @ vt
    return float(np.sqrt(((y @ rotation - x) ** 2).sum(axis=1).mean()))
