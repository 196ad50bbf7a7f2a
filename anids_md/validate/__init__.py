"""Validation against DFT: ML minima against PySCF minima (from `anids_md.reference`), RMSD.
Names load their module on first use (anids_md/lazy.py)."""

from ..lazy import lazy_exports

_MODULES = {
    **dict.fromkeys(["DFTLevel", "dft_optimize", "dft_single_point"], "..reference"),
    "kabsch_rmsd": ".rmsd",
    **dict.fromkeys(["MinimumComparison", "as_json", "compare_minima", "plot_comparison", "summarize"], ".compare"),
}
__getattr__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(_MODULES)
