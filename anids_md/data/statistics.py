"""Dataset statistics used to normalise the model: per-element reference energies (E0),
the mean per-atom interaction energy, the force scale and the average neighbour count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from ..units import ENERGY_UNITS_TO_EV
from .readers import labels_of

# Molecular forces beyond this RMS (eV/Å) are almost surely in another unit: rMD17 at 500 K has
# 0.9-1.4 eV/Å, the same data in kcal/mol/Å 21-32.
IMPLAUSIBLE_FORCE_RMS_EV_PER_A = 8.0
# Energies further than this (eV per atom) from the sum of isolated-atom energies are almost
# surely in another unit: atomisation energies of molecules are a few eV per atom.
IMPLAUSIBLE_BINDING_EV_PER_ATOM = 30.0
# Total energies of free atoms (eV, rounded Hartree-Fock limits; DFT and correlated all-electron
# methods differ by ~1 %). Only their order of magnitude is used: the total energy of a molecule
# is within a few per cent of their sum, so labels that are 27× smaller (Hartree read as eV) or
# 23× larger (kcal/mol read as eV) are recognised. xTB's valence-only energies are 10-20× smaller
# than this sum, well away from either.
FREE_ATOM_ENERGIES_EV = {1: -13.6, 3: -202.3, 5: -667.5, 6: -1025.6, 7: -1480.3, 8: -2035.7, 9: -2705.1, 14: -7860.0,
                         15: -9271.0, 16: -10817.0, 17: -12504.0}


@dataclass
class DatasetStatistics:
    elements: list[int]  # atomic numbers, sorted
    reference_energies: dict[int, float]  # E0 per element, eV
    energy_shift: float  # mean per-atom energy after subtracting E0s, eV/atom
    force_scale: float  # RMS of force components, eV/Å
    avg_num_neighbors: float


def fit_reference_energies(structures: list[Atoms], elements: list[int]) -> dict[int, float]:
    """Per-element energies (eV) by least squares on element counts. For a single molecule the
    system is underdetermined and the minimum-norm solution is returned, which is harmless:
    only the sum over the molecule's atoms matters then."""
    counts = np.array([[np.sum(a.numbers == z) for z in elements] for a in structures], dtype=float)
    energies = np.array([labels_of(a)[0] for a in structures])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(e) for z, e in zip(elements, solution)}


def _likely_unit(structures: list[Atoms], reference_energies: dict[int, float]) -> str | None:
    """The unit other than eV that the energies look like they were written in, judged by
    their ratio to the sum of `reference_energies` (None if none fits within 1.5×)."""
    ratio = np.mean([labels_of(a)[0] / sum(reference_energies[int(z)] for z in a.numbers) for a in structures])
    if ratio > 0:
        unit = min(ENERGY_UNITS_TO_EV, key=lambda u: abs(np.log(ratio * ENERGY_UNITS_TO_EV[u])))
        if unit != "eV" and abs(np.log(ratio * ENERGY_UNITS_TO_EV[unit])) < np.log(1.5):
            return unit
    return None


def _unit_advice(unit: str) -> str:
    forces = " and forces_unit=Hartree/Bohr if the forces are per Bohr" if unit == "Hartree" else ""
    return f"they look like {unit} read as eV; pass energy_unit={unit}{forces} (--energy-unit/--forces-unit on the command line)"


def _unit_hint(structures: list[Atoms], reference_energies: dict[int, float]) -> str:
    """What probably went wrong: energies in another unit (named), or on another scale."""
    unit = _likely_unit(structures, reference_energies)
    if unit:
        return _unit_advice(unit)
    return ("are they total energies at the level of the reference energies? if not, use data.reference_energies=null "
            "(least squares)")


def check_label_units(structures: list[Atoms]) -> None:
    """A ValueError naming the likely unit when labelled structures look like energies in
    Hartree, kcal/mol, kJ/mol or meV read as eV (total energies against free-atom energies), or
    forces in kcal/mol/Å read as eV/Å (their RMS)."""
    known = [a for a in structures if all(int(z) in FREE_ATOM_ENERGIES_EV for z in a.numbers)]
    unit = _likely_unit(known, FREE_ATOM_ENERGIES_EV) if known else None
    if unit:
        raise ValueError(f"the energies are {_scale_word(unit)} for total energies in eV: {_unit_advice(unit)}")
    forces = np.concatenate([labels_of(a)[1].ravel() for a in structures])
    rms = float(np.sqrt(np.mean(forces**2)))
    if rms > IMPLAUSIBLE_FORCE_RMS_EV_PER_A:
        raise ValueError(f"force RMS {rms:.1f} eV/Å is implausible for molecules: are the labels in kcal/mol(/Å)? "
                         "pass the right energy_unit when reading")


def _scale_word(unit: str) -> str:
    return "too small" if ENERGY_UNITS_TO_EV[unit] > 1 else "too large"


def compute_statistics(
    structures: list[Atoms],
    avg_num_neighbors: float,
    reference_energies: dict[int, float] | None = None,
) -> DatasetStatistics:
    """Statistics of labelled `structures`; E0s fitted when `reference_energies` is None."""
    if not structures:
        raise ValueError("cannot compute statistics of an empty training set")
    check_label_units(structures)
    elements = sorted({int(z) for a in structures for z in a.numbers})
    given = reference_energies is not None
    if not given:
        reference_energies = fit_reference_energies(structures, elements)
    missing = [z for z in elements if z not in reference_energies]
    if missing:
        raise ValueError(f"reference energies lack elements with atomic numbers {missing}")
    per_atom, forces = [], []
    for atoms in structures:
        energy, f = labels_of(atoms)
        e0 = sum(reference_energies[int(z)] for z in atoms.numbers)
        per_atom.append((energy - e0) / len(atoms))
        forces.append(f.ravel())
    force_scale = float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))
    energy_shift = float(np.mean(per_atom))
    if given and abs(energy_shift) > IMPLAUSIBLE_BINDING_EV_PER_ATOM:
        raise ValueError(
            f"the energies differ from the isolated-atom reference energies by {energy_shift:.1f} eV per atom, implausible for "
            f"molecules: {_unit_hint(structures, reference_energies)}")
    if force_scale == 0.0:
        force_scale = 1.0  # equilibrium-only data: keep the energy scale unit
    return DatasetStatistics(
        elements=elements,
        reference_energies={int(z): float(reference_energies[z]) for z in elements},
        energy_shift=energy_shift,
        force_scale=force_scale,
        avg_num_neighbors=float(avg_num_neighbors),
    )
