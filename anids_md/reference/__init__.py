"""Reference calculations: DFT through PySCF and GFN-xTB through tblite, at a named level of
theory, with one on-disk cache and parallel labelling through any `concurrent.futures.Executor`.
`validate`, `fit` and the molecule prior sit above it."""

from pathlib import Path

from ase import Atoms

from .cache import ReferenceResult, default_cache_dir
from .dft import DFTConvergenceError, DFTLevel, dft_optimize, dft_single_point
from .xtb import XTBConvergenceError, XTBLevel, xtb_calculator, xtb_single_point

Level = DFTLevel | XTBLevel
SCF_FAILURES = (DFTConvergenceError, XTBConvergenceError)  # a structure the method cannot converge: skipped and counted


def single_point(atoms: Atoms, level: Level, cache_dir: str | Path | None = None) -> ReferenceResult:
    """Energy (eV) and forces (eV/Å) of `atoms` at a DFT or xTB `level`, cached."""
    if isinstance(level, XTBLevel):
        return xtb_single_point(atoms, level, cache_dir)
    if isinstance(level, DFTLevel):
        return dft_single_point(atoms, level, cache_dir)
    raise TypeError(f"level must be a DFTLevel or an XTBLevel, got {type(level).__name__}")


__all__ = ["DFTConvergenceError", "DFTLevel", "Level", "ReferenceResult", "SCF_FAILURES", "XTBConvergenceError", "XTBLevel",
           "default_cache_dir", "dft_optimize", "dft_single_point", "single_point", "xtb_calculator", "xtb_single_point"]
