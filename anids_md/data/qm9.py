"""QM9 equilibrium structures (B3LYP/6-31G(2df,p)) from the data files of the PyPI package
`qm9pack`, for denoising pretraining. The package is located, not imported (importing it needs
setuptools' pkg_resources)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ..units import HARTREE_IN_EV

QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


def qm9_directory() -> Path:
    """The folder holding qm9pack's CSV files; a clear error when the package is missing."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("QM9 needs the qm9pack package: pip install 'anids-md[pretrain]' (or pip install qm9pack)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def read_qm9(
    directory: str | Path | None = None, elements: list[int] | None = None, max_atoms: int | None = None,
    limit: int | None = None, seed: int = 0,
) -> list[Atoms]:
    """QM9 molecules as ASE Atoms (positions in Å; info: `qm9_index`, `smiles`, `energy_U0_eV`).
    `elements` keeps molecules made only of those atomic numbers, `max_atoms` those no larger;
    `limit` keeps a random (seeded) subset of that many."""
    folder = Path(directory) if directory else qm9_directory()
    paths = [folder / name for name in QM9_FILES if (folder / name).exists()]
    if not paths:
        raise FileNotFoundError(f"no QM9 files {QM9_FILES} in {folder}")
    allowed = set(chemical_symbols[z] for z in elements) if elements else None
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                symbols = _symbols(row)
                if max_atoms is not None and len(symbols) > max_atoms:
                    continue
                if allowed is not None and not set(symbols) <= allowed:
                    continue
                rows.append((row, symbols, path))
    if limit is not None and limit < len(rows):
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
        rows = [rows[i] for i in keep]
    return [_molecule(row, symbols, path) for row, symbols, path in rows]


def _symbols(row: dict) -> list[str]:
    return [s.strip(" '\"") for s in row["Elements"].strip("[]").split(",")]


def _molecule(row: dict, symbols: list[str], path: Path) -> Atoms:
    try:
        numbers = row["XYZ_Ang"].replace("[", " ").replace("]", " ").split(",")  # "0." is a valid float here
        positions = np.array([float(x) for x in numbers], dtype=np.float64).reshape(-1, 3)
        energy = float(row["InternalEnergy_0K_au"]) * HARTREE_IN_EV
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: unreadable QM9 row {row.get('Index')!r} ({error})") from None
    if positions.shape != (len(symbols), 3) or not np.isfinite(positions).all():
        raise ValueError(f"{path}: QM9 row {row.get('Index')!r} has malformed coordinates")
    return Atoms(symbols, positions, info={"qm9_index": int(row["Index"]), "smiles": row["SMILES"], "energy_U0_eV": energy})
