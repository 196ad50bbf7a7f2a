"""ML minima against PySCF DFT minima (BENCHMARKS.md D): the first frames of rMD17 `test_01`,
relaxed with a model (BFGS, fmax 1e-3 eV/Å, float64) and with PBE/def2-SVP (RI-J, grid 3,
geomeTRIC); RMSD between the minima and to the start, RMSD reduction (AniDS Table 16), DFT energy
penalty of the ML minimum, wall times. DFT results are cached (`--cache`), so `--dft-only` can
compute the references ahead of the models.

    python benchmarks/dft_minima.py --pair ethanol=rmd17-ethanol --pair malonaldehyde=runs/x/model.safetensors --frames 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, machine, rmd17_dir

from anids_md.data import read_rmd17
from anids_md.validate import DFTLevel, MinimumComparison, as_json, compare_minima, dft_optimize, plot_comparison, summarize

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", action="append", required=True, help="MOLECULE=CHECKPOINT")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--cache", default=None, help="DFT cache folder (default ~/.cache/anids-md/dft)")
    parser.add_argument("--dft-only", action="store_true", help="only compute (and cache) the DFT minima")
    parser.add_argument("--out", default=str(RESULTS / "dft_minima.json"))
    args = parser.parse_args()
    level = DFTLevel()

    results = {}
    for pair in args.pair:
        molecule, checkpoint = pair.split("=", 1)
        starts = read_rmd17(rmd17_dir(args.data) / f"rmd17_{molecule}_test_01.npz")[: args.frames]
        if args.dft_only:
            for k, atoms in enumerate(starts):
                r = dft_optimize(atoms, cache_dir=args.cache)
                print(f"{molecule} frame {k}: {r.steps} gradients, {r.wall_s:.0f} s{' (cached)' if r.cached else ''}", flush=True)
            continue
        rows = compare_minima(checkpoint, starts, [f"{molecule} {k}" for k in range(len(starts))], level, cache_dir=args.cache)
        results[molecule] = {"checkpoint": checkpoint, "summary": summarize(rows), "structures": as_json(rows), "machine": machine()}
        s = results[molecule]["summary"]
        print(f"{molecule}: mean RMSD ML vs DFT minimum {s['mean_rmsd_ml_dft_A']:.4f} Å (max {s['max_rmsd_ml_dft_A']:.4f}), "
              f"reduction {s['mean_rmsd_reduction_A']:.4f} Å, energy penalty {s['mean_dft_energy_penalty_meV']:.2f} meV, "
              f"DFT/ML wall {s['dft_over_ml_wall']:.0f}×")
    if args.dft_only:
        return
    out = Path(args.out)
    # molecules of earlier invocations are kept, so one checkpoint can be re-validated on its own
    earlier = json.loads(out.read_text())["molecules"] if out.exists() else {}
    results = {**{m: r for m, r in earlier.items() if m not in results}, **results}
    all_rows = [r for m in results.values() for r in m["structures"]]
    overall = {"mean_rmsd_ml_dft_A": sum(r["rmsd_ml_dft_A"] for r in all_rows) / len(all_rows), "n_structures": len(all_rows)}
    out.write_text(json.dumps({"level": level.label() + " (RI-J def2-universal-jfit, grid 3, geomeTRIC)",
                               "ml_fmax_eV_per_A": 1e-3, "overall": overall, "molecules": results,
                               "machine": machine()}, indent=2))
    plot_comparison([MinimumComparison(**r) for r in all_rows], out.with_suffix(".png"), f"ML vs {level.label()} minima")
    print(f"all: mean RMSD {overall['mean_rmsd_ml_dft_A']:.4f} Å over {len(all_rows)} structures")


if __name__ == "__main__":
    main()
