"""Readers: every reader returns a list of `ase.Atoms` with energy (eV) and forces (eV/Å)
attached as a SinglePointCalculator, so `atoms.get_potential_energy()` gives the label."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..units import KCAL_PER_MOL_IN_EV, energy_unit_factor


def check_structure(atoms: Atoms, where: str = "structure") -> None:
    """Raise a ValueError naming the problem if `atoms` cannot be a model input."""
    numbers = atoms.get_atomic_numbers()
    bad = [int(z) for z in numbers if not 1 <= z <= 118]
    if bad:
        raise ValueError(f"{where}: unknown element with atomic number {bad[0]}")
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        atom = int(np.argwhere(~np.isfinite(positions))[0, 0])
        raise ValueError(f"{where}: non-finite (NaN or inf) coordinates at atom {atom}")


def _labelled(numbers, positions, energy_eV: float, forces_eV_A) -> Atoms:
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = SinglePointCalculator(atoms, energy=float(energy_eV), forces=np.asarray(forces_eV_A))
    return atoms


def read_rmd17(
    path: str | Path,
    frames: Sequence[int] | slice | None = None,
    labels: str = "rmd17",
) -> list[Atoms]:
    """Read an rMD17 npz file (kcal/mol, kcal/mol/Å on disk) as labelled structures in eV and eV/Å.

    `frames` selects frames (indices or a slice); `labels="md17"` uses the original MD17
    labels (`old_energies`, `old_forces`) instead of the revised ones.
    """
    keys = {"rmd17": ("energies", "forces"), "md17": ("old_energies", "old_forces")}
    if labels not in keys:
        raise ValueError(f"labels must be 'rmd17' or 'md17', got {labels!r}")
    energy_key, forces_key = keys[labels]
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable npz file ({error})") from None
    missing = {"nuclear_charges", "coords", energy_key, forces_key} - set(data.files)
    if missing:
        raise ValueError(f"{path}: not an rMD17 file, missing keys {sorted(missing)}")
    numbers = data["nuclear_charges"].astype(int)
    n_frames = len(data["coords"])
    index = np.arange(n_frames)[frames if frames is not None else slice(None)]
    coords = data["coords"][index].astype(np.float64)
    energies = data[energy_key][index].astype(np.float64) * KCAL_PER_MOL_IN_EV
    forces = data[forces_key][index].astype(np.float64) * KCAL_PER_MOL_IN_EV
    structures = [_labelled(numbers, coords[k], energies[k], forces[k]) for k in range(len(index))]
    for k, atoms in zip(index, structures):
        check_structure(atoms, f"{path} frame {k}")
    return structures


def read_ase(path: str | Path, index: str | int | slice = ":", energy_unit: str = "eV") -> list[Atoms]:
    """Read any file ASE reads (extxyz, ASE db, ...). Labels, when present, are converted from
    `energy_unit` (and `energy_unit`/Å for forces) to eV and eV/Å."""
    from ase.io import read

    factor = energy_unit_factor(energy_unit)
    structures = read(str(path), index=index)
    if isinstance(structures, Atoms):
        structures = [structures]
    result = []
    for k, atoms in enumerate(structures):
        check_structure(atoms, f"{path} structure {k}")
        if atoms.calc is not None:
            results = atoms.calc.results
            energy = results.get("energy", results.get("free_energy"))
            forces = results.get("forces")
            clean = atoms.copy()
            clean.calc = SinglePointCalculator(
                clean,
                energy=None if energy is None else float(energy) * factor,
                forces=None if forces is None else np.asarray(forces) * factor,
            )
            atoms = clean
        result.append(atoms)
    return result


def read_structures(path: str | Path, frames=None, energy_unit: str | None = None, labels: str = "rmd17") -> list[Atoms]:
    """Read rMD17 npz files or anything ASE reads, by file suffix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".npz":
        if energy_unit not in (None, "kcal/mol"):
            raise ValueError("rMD17 npz files are in kcal/mol; do not pass another energy_unit")
        return read_rmd17(path, frames=frames, labels=labels)
    structures = read_ase(path, energy_unit=energy_unit or "eV")
    if frames is not None:
        structures = [structures[k] for k in np.arange(len(structures))[frames]]
    return structures


def labels_of(atoms: Atoms) -> tuple[float, np.ndarray]:
    """(energy in eV, forces in eV/Å) of a labelled structure; an error if either is missing."""
    results = {} if atoms.calc is None else atoms.calc.results
    if results.get("energy") is None or results.get("forces") is None:
        raise ValueError(f"structure {atoms.get_chemical_formula()} has no energy and forces labels")
    return float(results["energy"]), np.asarray(results["forces"], dtype=np.float64)


def read_isolated_atom_energies(path: str | Path) -> dict[int, float]:
    """Per-element isolated-atom energies (eV) from an extxyz file of single atoms."""
    energies = {}
    for atoms in read_ase(path):
        if len(atoms) != 1:
            raise ValueError(f"{path}: expected single atoms, found a structure of {len(atoms)}")
        energies[int(atoms.numbers[0])] = float(atoms.get_potential_energy())
    return energies
