"""Validation against DFT: ML minima against PySCF minima (from `anids_md.reference`), RMSD."""

from ..reference import DFTLevel, dft_optimize, dft_single_point
from .rmsd import kabsch_rmsd

__all__ = ["DFTLevel", "dft_optimize", "dft_single_point", "kabsch_rmsd"]
from .compare import MinimumComparison, as_json, compare_minima, plot_comparison, summarize  # noqa: E402

__all__ += ["MinimumComparison", "as_json", "compare_minima", "plot_comparison", "summarize"]
