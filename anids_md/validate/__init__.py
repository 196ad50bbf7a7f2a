"""Validation against DFT: PySCF references (cached) and RMSD between ML and DFT minima."""

from .dft import DFTLevel, DFTResult, dft_optimize, dft_single_point
from .rmsd import kabsch_rmsd

__all__ = ["DFTLevel", "DFTResult", "dft_optimize", "dft_single_point", "kabsch_rmsd"]
from .compare import MinimumComparison, as_json, compare_minima, plot_comparison, summarize  # noqa: E402

__all__ += ["MinimumComparison", "as_json", "compare_minima", "plot_comparison", "summarize"]
