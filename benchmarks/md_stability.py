"""Molecular dynamics checks (BENCHMARKS.md E): NVE energy drift (0.5 fs, 10 ps from 300 K) in
float64 and float32, and bond stability in 500 K Langevin dynamics (100 ps), with shipped models.

    python benchmarks/md_stability.py --nve-model rmd17-ethanol --langevin-model rmd17-aspirin
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from ase.build import molecule
from common import RESULTS, machine, rmd17_dir
from harness import provenance

from anids_md import AniDSCalculator
from anids_md.data import read_rmd17
from anids_md.simulate import optimize, run_md

REPO = Path(__file__).resolve().parents[1]


def nve(model: str, dtype: str, steps: int) -> dict:
    atoms = molecule("CH3CH2OH")
    atoms.calc = AniDSCalculator(model, dtype=dtype)
    optimize(atoms, fmax=0.01)
    start = time.perf_counter()
    report = run_md(atoms, "nve", temperature_K=300, timestep_fs=0.5, steps=steps, interval=20)
    return {"model": model, "molecule": "ethanol", "dtype": dtype, "steps": steps, "time_ps": steps * 0.5 / 1000,
            "drift_meV_per_atom_per_ps": report.drift_meV_per_atom_per_ps, "mean_temperature_K": report.mean_temperature_K,
            "stable": report.stable, "wall_s": time.perf_counter() - start}


def langevin(model: str, test_file: Path, steps: int, dtype: str) -> dict:
    atoms = read_rmd17(test_file, frames=[0])[0]
    atoms.calc = AniDSCalculator(model, dtype=dtype)
    optimize(atoms, fmax=0.01)
    start = time.perf_counter()
    report = run_md(atoms, "langevin", temperature_K=500, timestep_fs=0.5, steps=steps, interval=50, friction_per_fs=0.01,
                    trajectory=RESULTS / "langevin_aspirin_500K.extxyz" if steps <= 20000 else None, progress=True)
    return {"model": model, "molecule": "aspirin", "dtype": dtype, "temperature_K": 500, "steps": steps, "time_ps": steps * 0.5 / 1000,
            "mean_temperature_K": report.mean_temperature_K, "n_bonds": len(report.bonds), "stable": report.stable,
            "unstable_bonds": report.unstable_bonds, "min_bond_ratio": float(report.min_bond_ratio.min()),
            "max_bond_ratio": float(report.max_bond_ratio.max()), "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nve-model", default="rmd17-ethanol")
    parser.add_argument("--langevin-model", default="rmd17-aspirin")
    parser.add_argument("--nve-steps", type=int, default=20000)
    parser.add_argument("--langevin-steps", type=int, default=200000)
    parser.add_argument("--langevin-dtype", default="float32")
    parser.add_argument("--skip", nargs="*", default=[], choices=["nve", "langevin"])
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "md_stability.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    # the check not run this time keeps its earlier rows, each with the provenance that made it
    rows = [r for r in (json.loads(out.read_text())["rows"] if out.exists() else []) if r["check"] in args.skip]
    if "nve" not in args.skip:
        for dtype in ("float64", "float32"):
            r = nve(args.nve_model, dtype, args.nve_steps)
            rows.append({"check": "nve", **r, "machine": machine(), "provenance": provenance(models=[args.nve_model])})
            print(f"NVE {r['dtype']}: drift {r['drift_meV_per_atom_per_ps']:+.4f} meV/atom/ps over {r['time_ps']} ps")
    if "langevin" not in args.skip:
        data = rmd17_dir(args.data) / "rmd17_aspirin_test_01.npz"
        r = langevin(args.langevin_model, data, args.langevin_steps, args.langevin_dtype)
        rows.append({"check": "langevin", **r, "machine": machine(), "provenance": provenance(models=[args.langevin_model], data=[data])})
        print(f"Langevin 500 K {r['time_ps']} ps: {'stable' if r['stable'] else 'UNSTABLE'}; bond ratios "
              f"{r['min_bond_ratio']:.3f}-{r['max_bond_ratio']:.3f}")
    out.write_text(json.dumps({"rows": rows}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
