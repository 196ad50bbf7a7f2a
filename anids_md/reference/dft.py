"""DFT references with PySCF: single points (energy and forces, for labelling) and geometry
optimisations with geomeTRIC, at a given level of theory (default PBE/def2-SVP with RI-J, the
level of the rMD17 labels). gpu4pyscf is used when CUDA and the package are present. Results
are cached on disk, keyed by the structure and the level, so a repeat costs nothing."""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ..data import check_structure
from ..units import HARTREE_IN_EV, HARTREE_PER_BOHR_IN_EV_PER_A
from .cache import ReferenceResult, cache_path, cached_single_point, load_result, store_result

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DFTLevel:
    xc: str = "PBE"
    basis: str = "def2-SVP"
    dispersion: str | None = None  # None or "d3bj" (needs pyscf-dispersion)
    density_fit: bool = True  # RI-J with def2-universal-jfit
    grid_level: int = 3
    charge: int = 0
    spin: int = 0  # 2S

    def label(self) -> str:
        return f"{self.xc}{'-D3BJ' if self.dispersion else ''}/{self.basis}"


def _method(atoms: Atoms, level: DFTLevel, verbose: int = 0):
    """A PySCF Kohn-Sham object for `atoms` at `level` (on the GPU when gpu4pyscf can)."""
    from pyscf import dft, gto

    check_structure(atoms, "structure")
    mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)], basis=level.basis,
                unit="Angstrom", charge=level.charge, spin=level.spin, verbose=verbose)
    mf = dft.RKS(mol, xc=level.xc) if level.spin == 0 else dft.UKS(mol, xc=level.xc)
    mf.grids.level = level.grid_level
    if level.density_fit:
        mf = mf.density_fit(auxbasis="def2-universal-jfit")
    if level.dispersion:
        if importlib.util.find_spec("pyscf.dispersion") is None:
            raise ImportError("dispersion='d3bj' needs pyscf-dispersion: pip install pyscf-dispersion")
        mf.disp = level.dispersion
    if gpu_available():
        mf = mf.to_gpu()
    return mf


def gpu_available() -> bool:
    if importlib.util.find_spec("gpu4pyscf") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CUDA runtime: stay on the CPU
        return False


class DFTConvergenceError(RuntimeError):
    """PySCF's SCF did not converge for a structure."""


def _energy_forces(mf) -> tuple[float, np.ndarray]:
    energy = mf.kernel()
    if not mf.converged:
        raise DFTConvergenceError("the SCF did not converge")
    gradient = np.asarray(mf.nuc_grad_method().kernel())
    return float(energy) * HARTREE_IN_EV, -gradient * HARTREE_PER_BOHR_IN_EV_PER_A


def dft_single_point(atoms: Atoms, level: DFTLevel = DFTLevel(), cache_dir: str | Path | None = None) -> ReferenceResult:
    """Energy (eV) and forces (eV/Å) of `atoms` at `level`, cached."""
    return cached_single_point("dft", atoms, level, cache_dir, lambda: _energy_forces(_method(atoms, level)))


def dft_optimize(atoms: Atoms, level: DFTLevel = DFTLevel(), max_steps: int = 100, cache_dir: str | Path | None = None,
                 progress: bool = False) -> ReferenceResult:
    """Relax `atoms` at `level` (charge and spin included) with PySCF + geomeTRIC (its default
    convergence criteria) and return the minimum, its energy and forces, and every gradient
    evaluation on the way (`path_frames()`); cached by structure and level of theory. `progress`
    shows a bar with a tick per gradient (minutes each for a 20-atom molecule on a laptop)."""
    # "path": entries record every gradient evaluation (earlier ones did not, and are not read)
    path = cache_path("dft", "optimisation", atoms, level, cache_dir, {"max_steps": max_steps, "path": True})
    cached = load_result(path, atoms.numbers)
    if cached is not None:
        return cached
    from pyscf.geomopt.geometric_solver import kernel
    from tqdm.auto import tqdm

    start = time.perf_counter()
    steps = []  # (positions Å, energy Hartree, gradient Hartree/Bohr) of every gradient evaluation
    bar = tqdm(total=max_steps, disable=not progress, desc=f"DFT minimum ({level.label()})", unit="gradient")

    def record(env):
        steps.append((env["mol"].atom_coords(unit="Angstrom"), env["energy"], np.asarray(env["gradients"])))
        bar.update()
        bar.set_postfix_str(f"E {env['energy'] * HARTREE_IN_EV:.4f} eV, "
                            f"max |F| {np.abs(steps[-1][2]).max() * HARTREE_PER_BOHR_IN_EV_PER_A:.3f} eV/Å")

    try:
        with tempfile.TemporaryDirectory(prefix="anids-md-geometric-") as scratch:  # never under HOME or the cache
            converged, mol = kernel(_method(atoms, level), maxsteps=max_steps, assert_convergence=False,
                                    logIni=str(_quiet_geometric_log(Path(scratch))), callback=record)
    finally:
        bar.close()
    minimum = Atoms(numbers=atoms.numbers, positions=mol.atom_coords(unit="Angstrom"))
    last_positions, last_energy, last_gradient = steps[-1]
    if np.array_equal(last_positions, minimum.positions):  # the optimiser's last evaluation is the minimum
        energy, forces = float(last_energy) * HARTREE_IN_EV, -last_gradient * HARTREE_PER_BOHR_IN_EV_PER_A
    else:
        energy, forces = _energy_forces(_method(minimum, level))
    result = ReferenceResult(minimum, energy, forces, time.perf_counter() - start, len(steps), bool(converged), False,
                             path_positions=np.array([p for p, _, _ in steps]),
                             path_energies_eV=np.array([e for _, e, _ in steps]) * HARTREE_IN_EV,
                             path_forces_eV_per_A=-np.array([g for _, _, g in steps]) * HARTREE_PER_BOHR_IN_EV_PER_A)
    store_result(path, result, level)
    return result


def _quiet_geometric_log(folder: Path) -> Path:
    """A logging configuration in `folder` that keeps geomeTRIC's step-by-step report off the terminal."""
    path = folder / "geometric-quiet.ini"
    path.write_text(
        "[loggers]\nkeys=root,geometric\n\n[handlers]\nkeys=null\n\n[formatters]\nkeys=\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_geometric]\nlevel=WARNING\nhandlers=null\nqualname=geometric\npropagate=0\n\n"
        "[handler_null]\nclass=NullHandler\nargs=()\n"
    )
    return path
