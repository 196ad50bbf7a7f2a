"""GFN2-xTB and GFN1-xTB references through tblite (`pip install "anids-md[xtb]"`): single points
(energy and forces), cached on disk like the DFT ones, and the ASE calculator that the molecule
prior's optimisation and MD use. xTB is a poor potential by itself (forces ~0.3 eV/Å from PBE on
rMD17) but 7 000× cheaper than a PBE/def2-SVP label: it knows bonds, angles and rotors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ..data import check_structure
from ..options import XTB_METHODS
from .cache import ReferenceResult, cached_single_point

MAX_ATOMIC_NUMBER = 86  # tblite's GFN parametrisations stop at radon


@dataclass(frozen=True)
class XTBLevel:
    method: str = "GFN2-xTB"
    charge: int = 0
    spin: int = 0  # 2S, the number of unpaired electrons
    accuracy: float = 1.0  # tblite's numerical accuracy (smaller is tighter)
    electronic_temperature_K: float = 300.0

    def __post_init__(self):
        if self.method not in XTB_METHODS:
            raise ValueError(f"unknown xTB method {self.method!r}; choose one of {XTB_METHODS}")

    def label(self) -> str:
        return self.method


class XTBConvergenceError(RuntimeError):
    """tblite's SCF did not converge for a structure."""


def xtb_calculator(level: XTBLevel = XTBLevel()):
    """tblite's ASE calculator at `level` (energies in eV, forces in eV/Å), quiet."""
    try:
        from tblite.ase import TBLite
    except ImportError:
        raise ImportError("xTB references need tblite: pip install 'anids-md[xtb]'") from None
    return TBLite(method=level.method, charge=level.charge, multiplicity=level.spin + 1, accuracy=level.accuracy,
                  electronic_temperature=level.electronic_temperature_K, verbosity=0)


def check_xtb_structure(atoms: Atoms) -> None:
    """A ValueError naming what xTB cannot treat here: unknown elements, periodic cells."""
    check_structure(atoms)
    beyond = sorted({int(z) for z in atoms.numbers if z > MAX_ATOMIC_NUMBER})
    if beyond:
        raise ValueError(f"GFN-xTB (tblite) has no parameters for atomic numbers {beyond}")
    if np.any(atoms.pbc):
        raise ValueError("xTB references here are for isolated molecules; the structure is periodic")


def xtb_energy_forces(atoms: Atoms, level: XTBLevel = XTBLevel()) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) of `atoms` at `level`, uncached; XTBConvergenceError when
    the SCF fails."""
    check_xtb_structure(atoms)
    probe = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    probe.calc = xtb_calculator(level)
    try:
        energy, forces = probe.get_potential_energy(), probe.get_forces()
    except Exception as error:  # tblite raises its own exception types for a failed SCF
        raise XTBConvergenceError(f"{level.label()} failed for {atoms.get_chemical_formula()}: {error}") from None
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
        raise XTBConvergenceError(f"{level.label()} gave a non-finite energy or forces for {atoms.get_chemical_formula()}")
    return float(energy), np.asarray(forces, dtype=np.float64)


def xtb_single_point(atoms: Atoms, level: XTBLevel = XTBLevel(), cache_dir: str | Path | None = None) -> ReferenceResult:
    """Energy (eV) and forces (eV/Å) of `atoms` at `level`, cached (files `xtb-sp-*.json`)."""
    return cached_single_point("xtb", atoms, level, cache_dir, lambda: xtb_energy_forces(atoms, level))
