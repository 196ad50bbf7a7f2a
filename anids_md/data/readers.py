"""Readers: every reader returns a list of `ase.Atoms` with energy (eV) and forces (eV/Å)
attached as a SinglePointCalculator, so `atoms.get_potential_energy()` gives the label."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..packaged import resolve_packaged
from ..units import KCAL_PER_MOL_IN_EV, energy_unit_factor, forces_unit_factor


def check_structure(atoms: Atoms, where: str = "structure") -> None:
    """Raise a ValueError naming the problem if `atoms` cannot be a model input."""
    if len(atoms) == 0:
        raise ValueError(f"{where}: has no atoms")
    numbers = atoms.get_atomic_numbers()
    bad = [int(z) for z in numbers if not 1 <= z <= 118]
    if bad:
        raise ValueError(f"{where}: unknown element with atomic number {bad[0]}")
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        atom = int(np.argwhere(~np.isfinite(positions))[0, 0])
        raise ValueError(f"{where}: non-finite (NaN or inf) coordinates at atom {atom}")
    if np.any(atoms.pbc) and abs(atoms.cell.volume) < 1e-6:
        raise ValueError(f"{where}: periodic (pbc={atoms.pbc.tolist()}) but its cell has no volume; set a cell or pbc=False")


def check_labels(energy_eV, forces_eV_A, where: str) -> None:
    """A ValueError naming the structure when a label is NaN or infinite."""
    if energy_eV is not None and not np.isfinite(energy_eV):
        raise ValueError(f"{where}: the energy label is {energy_eV}")
    if forces_eV_A is not None and not np.all(np.isfinite(forces_eV_A)):
        atom = int(np.argwhere(~np.isfinite(np.asarray(forces_eV_A)))[0, 0])
        raise ValueError(f"{where}: the force label of atom {atom} is not finite")


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
        with np.load(path, allow_pickle=False) as data:
            missing = {"nuclear_charges", "coords", energy_key, forces_key} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not an rMD17 file, missing keys {sorted(missing)} (it has {sorted(data.files)})")
            numbers = data["nuclear_charges"].astype(int)
            coords, energies, forces = data["coords"], data[energy_key], data[forces_key]
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path}: not a readable npz file, perhaps truncated ({type(error).__name__}: {error})") from None
    index = np.arange(len(coords))[frames if frames is not None else slice(None)]
    coords = coords[index].astype(np.float64)
    energies = energies[index].astype(np.float64) * KCAL_PER_MOL_IN_EV
    forces = forces[index].astype(np.float64) * KCAL_PER_MOL_IN_EV
    structures = []
    for k, i in enumerate(index):
        where = f"{path} frame {i}"
        check_labels(energies[k], forces[k], where)
        atoms = _labelled(numbers, coords[k], energies[k], forces[k])
        check_structure(atoms, where)
        structures.append(atoms)
    return structures


def read_ase(path: str | Path, index: str | int | slice = ":", energy_unit: str = "eV", energy_key: str = "energy",
             forces_key: str = "forces", require_labels: bool = False, forces_unit: str | None = None) -> list[Atoms]:
    """Read any file ASE reads (extxyz, ASE db, ...). Labels are looked up as `energy_key` (in
    the frame's info or its calculator's results) and `forces_key` (per-atom arrays or results),
    e.g. "REF_energy"/"REF_forces" in MACE-style extxyz, and converted from `energy_unit` and
    `forces_unit` (default `energy_unit`/Å; e.g. "Hartree/Bohr") to eV and eV/Å. A frame without them is an error when
    `require_labels` or other keys than the defaults are asked for."""
    from ase.io import read
    from ase.io.formats import UnknownFileTypeError

    factor, forces_factor = energy_unit_factor(energy_unit), forces_unit_factor(forces_unit, energy_unit)
    try:
        structures = read(str(path), index=index)
    except UnknownFileTypeError as error:
        raise ValueError(f"{path}: ASE cannot read this file type ({error})") from None
    except KeyError as error:  # ASE's way of meeting an element symbol it does not know
        raise ValueError(f"{path}: unknown element symbol {error}") from None
    except StopIteration:
        raise ValueError(f"{path}: holds no structures") from None
    if isinstance(structures, Atoms):
        structures = [structures]
    strict = require_labels or (energy_key, forces_key) != ("energy", "forces")
    result = []
    for k, atoms in enumerate(structures):
        where = f"{path} structure {k}"
        check_structure(atoms, where)
        results = {} if atoms.calc is None else atoms.calc.results
        energy = atoms.info.get(energy_key, results.get(energy_key))
        if energy is None and energy_key == "energy":
            energy = results.get("free_energy")
        forces = atoms.arrays.get(forces_key, results.get(forces_key))
        if strict and (energy is None or forces is None):
            have = sorted(set(atoms.info) | set(results) | set(atoms.arrays) - {"numbers", "positions"})
            raise ValueError(f"{where}: no energy {energy_key!r} and forces {forces_key!r} labels; it has the keys {have} "
                             "(set energy_key/forces_key, --energy-key/--forces-key on the command line)")
        energy = None if energy is None else float(energy) * factor
        forces = None if forces is None else np.asarray(forces, dtype=np.float64) * forces_factor
        check_labels(energy, forces, where)
        clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if energy is not None or forces is not None:
            clean.calc = SinglePointCalculator(clean, energy=energy, forces=forces)
        result.append(clean)
    return result


def read_xyz_positions(path: str | Path) -> list[Atoms] | None:
    """Elements and positions (Å) of every frame of an XYZ file, without ase.io (whose import
    takes about a second: it pulls in scipy), for commands where start-up matters (`anids-md
    rmsd`). None when the file is not plain XYZ or extXYZ with species and positions first
    (then read it with `read_ase`); cells and labels are not read."""
    path = Path(path)
    if path.suffix not in (".xyz", ".extxyz"):
        return None
    try:
        lines = path.read_text().splitlines()
        frames, k = [], 0
        while k < len(lines) and lines[k].strip():
            n = int(lines[k])
            comment = lines[k + 1]
            if "Properties=" in comment and "Properties=species:S:1:pos:R:3" not in comment:
                return None
            rows = [line.split() for line in lines[k + 2 : k + 2 + n]]
            if len(rows) != n:
                return None
            frames.append(Atoms(symbols=[r[0] for r in rows], positions=[[float(v) for v in r[1:4]] for r in rows]))
            k += 2 + n
    except (ValueError, IndexError, KeyError, OSError):
        return None  # not of this simple form: the caller reads it with ASE
    return frames or None


def read_structures(path: str | Path, frames=None, energy_unit: str | None = None, labels: str = "rmd17",
                    energy_key: str = "energy", forces_key: str = "forces", require_labels: bool = True,
                    forces_unit: str | None = None) -> list[Atoms]:
    """Read (labelled, unless not `require_labels`) frames: rMD17 npz files, the manifest.json of
    labelled shards, or anything ASE reads (by file suffix; see `read_ase` for the keys)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    from .shards import is_manifest, read_shards

    if is_manifest(path):  # shards of labelled frames in eV and eV/Å (anids_md.foundation)
        structures = read_shards(path)
        return structures if frames is None else [structures[k] for k in np.arange(len(structures))[frames]]
    if path.suffix == ".npz":
        if energy_unit not in (None, "kcal/mol") or forces_unit not in (None, "kcal/mol/Å"):
            raise ValueError("rMD17 npz files are in kcal/mol and kcal/mol/Å; do not pass other units")
        return read_rmd17(path, frames=frames, labels=labels)
    structures = read_ase(path, energy_unit=energy_unit or "eV", energy_key=energy_key, forces_key=forces_key, require_labels=require_labels,
                          forces_unit=forces_unit)
    if frames is not None:
        structures = [structures[k] for k in np.arange(len(structures))[frames]]
    return structures


def labels_of(atoms: Atoms) -> tuple[float, np.ndarray]:
    """(energy in eV, forces in eV/Å) of a labelled structure; an error if either is missing."""
    results = {} if atoms.calc is None else atoms.calc.results
    if results.get("energy") is None or results.get("forces") is None:
        raise ValueError(f"structure {atoms.get_chemical_formula()} has no energy and forces labels")
    return float(results["energy"]), np.asarray(results["forces"], dtype=np.float64)


def reference_energies_file(name_or_path: str | Path) -> Path:
    """A file of isolated-atom energies, or a set shipped in data/reference/ by name
    ("pbe-def2svp": H, C, N, O at PBE/def2-SVP, ORCA, the rMD17 level)."""
    return resolve_packaged(name_or_path, "data/reference", ".xyz", "isolated-atom energies")


def read_isolated_atom_energies(name_or_path: str | Path) -> dict[int, float]:
    """Per-element isolated-atom energies (eV) from an extxyz file of single atoms, or a
    shipped set by name (see `reference_energies_file`)."""
    path = reference_energies_file(name_or_path)
    energies = {}
    for atoms in read_ase(path):
        if len(atoms) != 1:
            raise ValueError(f"{path}: expected single atoms, found a structure of {len(atoms)}")
        energies[int(atoms.numbers[0])] = float(atoms.get_potential_energy())
    return energies
