"""Shared bits of the benchmark scripts: machine description, result paths, the per-arm bar plot."""

import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from anids_md.runtime import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_RMD17 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17"


def rmd17_dir(given: str | None = None) -> Path:
    """The folder of the rMD17 split files: `given`, else $ANIDS_RMD17, else ../shared/data/rmd17;
    a missing folder ends the script with a message saying where the data come from."""
    path = Path(given or os.environ.get("ANIDS_RMD17") or DEFAULT_RMD17)
    if not path.is_dir():
        raise SystemExit(
            f"rMD17 data not found at {path}. Pass --data DIR or set ANIDS_RMD17 to a folder of "
            "rmd17_<molecule>_{train,test}_01.npz files: rMD17 (CC0) is on figshare, doi:10.6084/m9.figshare.12672038 "
            "(see docs/benchmarks.md)")
    return path


def machine() -> dict:
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python"] + sys.argv),
    }


def seed_bars(ax, groups: list[tuple[str, list[float]]], ylabel: str) -> None:
    """One bar per arm (mean, with the seeds' standard deviation) and a dot per seed."""
    for k, (_, values) in enumerate(groups):
        ax.bar(k, np.mean(values), yerr=np.std(values, ddof=1) if len(values) > 1 else 0, capsize=3, color=f"C{k}")
        ax.plot([k] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
