"""The on-disk cache of reference results: one JSON file per result, named by a hash of the task,
the structure (positions rounded to 1e-6 Å) and the level of theory, with a prefix per method
(`sp-`/`opt-` for DFT, `xtb-sp-` for xTB), so that DFT and xTB entries never collide. Written
whole or not at all; an unreadable entry is recomputed; an unwritable folder costs the cache,
never the result."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms

from ..atomic import write_text_atomically

logger = logging.getLogger(__name__)

PREFIXES = {("dft", "single point"): "sp", ("dft", "optimisation"): "opt", ("xtb", "single point"): "xtb-sp"}


@dataclass
class ReferenceResult:
    atoms: Atoms  # the structure (the minimum for an optimisation), positions in Å
    energy_eV: float
    forces_eV_per_A: np.ndarray
    wall_s: float  # of the original computation (a cache hit costs nothing)
    steps: int  # gradient evaluations (1 for a single point)
    converged: bool
    cached: bool
    # an optimisation's gradient evaluations: positions (S, N, 3) Å, energies (S,) eV, forces (S, N, 3) eV/Å
    path_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3)))
    path_energies_eV: np.ndarray = field(default_factory=lambda: np.zeros(0))
    path_forces_eV_per_A: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3)))

    def path_frames(self) -> list[Atoms]:
        """The optimisation's gradient evaluations as labelled structures (DFT data near the minimum)."""
        from ase.calculators.singlepoint import SinglePointCalculator

        frames = []
        for positions, energy, forces in zip(self.path_positions, self.path_energies_eV, self.path_forces_eV_per_A):
            atoms = Atoms(numbers=self.atoms.numbers, positions=positions)
            atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=forces)
            frames.append(atoms)
        return frames


def default_cache_dir() -> Path:
    return Path(os.environ.get("ANIDS_MD_CACHE", Path.home() / ".cache" / "anids-md")) / "dft"


def cache_key(task: str, atoms: Atoms, level, extra: dict | None = None) -> str:
    """Hash of the task, elements, positions (rounded to 1e-6 Å) and level of theory."""
    payload = {"task": task, "numbers": atoms.numbers.tolist(), "positions": np.round(atoms.positions, 6).tolist(),
               "level": asdict(level), **(extra or {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def cache_path(method: str, task: str, atoms: Atoms, level, cache_dir: str | Path | None = None, extra: dict | None = None) -> Path:
    """The cache file of a result: `method` "dft" or "xtb", `task` "single point" or "optimisation"."""
    prefix = PREFIXES[(method, task)]
    return Path(cache_dir or default_cache_dir()) / f"{prefix}-{cache_key(task, atoms, level, extra)}.json"


def load_result(path: Path, numbers) -> ReferenceResult | None:
    """The cached result, or None when there is none or it cannot be read (then it is
    recomputed and overwritten)."""
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
        atoms = Atoms(numbers=numbers, positions=np.array(d["positions"]))
        path = {key: np.array(d[key]) for key in ("path_positions", "path_energies_eV", "path_forces_eV_per_A") if key in d}
        return ReferenceResult(atoms, d["energy_eV"], np.array(d["forces_eV_per_A"]), d["wall_s"], d["steps"], d["converged"], True,
                               **path)
    except (OSError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        logger.warning("ignoring the unreadable cache entry %s (%s: %s); recomputing", path, type(error).__name__, error)
        return None


def cached_single_point(method: str, atoms: Atoms, level, cache_dir, compute: Callable[[], tuple[float, np.ndarray]]) -> ReferenceResult:
    """The cached single point of `atoms` at `level`, or `compute()` (energy eV, forces eV/Å),
    timed and stored."""
    path = cache_path(method, "single point", atoms, level, cache_dir)
    cached = load_result(path, atoms.numbers)
    if cached is not None:
        return cached
    start = time.perf_counter()
    energy, forces = compute()
    result = ReferenceResult(atoms.copy(), energy, forces, time.perf_counter() - start, 1, True, False)
    store_result(path, result, level)
    return result


_unwritable_warned: set[str] = set()


def store_result(path: Path, result: ReferenceResult, level) -> None:
    """Cache `result`; a folder that cannot be written costs the cache, never the result (one
    warning per folder)."""
    record = {"level": asdict(level), "positions": result.atoms.positions.tolist(), "energy_eV": result.energy_eV,
              "forces_eV_per_A": result.forces_eV_per_A.tolist(), "wall_s": result.wall_s, "steps": result.steps,
              "converged": result.converged, "units": {"positions": "Å", "energy": "eV", "forces": "eV/Å"}}
    if len(result.path_energies_eV):
        record.update(path_positions=result.path_positions.tolist(), path_energies_eV=result.path_energies_eV.tolist(),
                      path_forces_eV_per_A=result.path_forces_eV_per_A.tolist())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(record))
    except OSError as error:
        if str(path.parent) not in _unwritable_warned:
            _unwritable_warned.add(str(path.parent))
            logger.warning("cannot write to the reference cache %s (%s); results are returned but not cached", path.parent, error)
