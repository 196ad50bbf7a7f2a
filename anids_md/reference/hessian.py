"""Hessians by central differences of forces: the displaced structures to label and the matrix
from their forces, whatever method labels them (DFT for the normal-modes sampler, xTB for the
DFT optimiser's first guess)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

HESSIAN_STEP = 0.01  # Å


def hessian_displacements(minimum: Atoms, step: float = HESSIAN_STEP) -> list[Atoms]:
    """The 6N structures (each atom ± `step` Å along x, y, z) whose forces give the Hessian."""
    frames = []
    for atom in range(len(minimum)):
        for axis in range(3):
            for sign in (1.0, -1.0):
                moved = Atoms(numbers=minimum.numbers, positions=minimum.positions.copy())
                moved.positions[atom, axis] += sign * step
                frames.append(moved)
    return frames


def hessian_from_forces(forces: list[np.ndarray], step: float = HESSIAN_STEP) -> np.ndarray:
    """The symmetrised Hessian (3N, 3N) in eV/Å² from the forces of `hessian_displacements`."""
    forces = np.asarray(forces)  # (6N, N, 3)
    plus, minus = forces[0::2], forces[1::2]
    hessian = -(plus - minus).reshape(len(plus), -1) / (2 * step)
    return 0.5 * (hessian + hessian.T)
