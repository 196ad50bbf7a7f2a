"""`anids-md fit` end to end (issue: from a molecule to a validated force field): one molecule
from SMILES at PBE/def2-SVP, per sampler and seed; the report's figures, the wall time, and a
transfer check on the real rMD17 test frames of the molecule (ab-initio MD at 500 K at the same
level of theory, which the fit never saw), set beside the rmd17-50 figure of a model trained on
50 rMD17 frames.

    python benchmarks/fit_molecule.py --smiles CCO --name ethanol --samplers anids --seeds 0

The xTB route with a committee choosing the frames (issue: fit for drug-sized molecules):

    python benchmarks/fit_molecule.py --smiles CCO --name ethanol --samplers xtb-md --selection committee --committee 3 \
        --out benchmarks/results/fit_selection_ethanol --cache runs/fit-xtb/dft-cache --runs runs/fit-xtb

`--frames N` changes the first labelled set (default FitSettings.frames): normal-modes spends 6N
DFT gradients on its Hessian, so `--frames` 64 - 6N gives it the others' number of DFT calls.
`--rounds`, `--frames-per-round` and `--test-frames` shrink the chain for a bigger molecule:

    python benchmarks/fit_molecule.py --smiles "CC(=O)Oc1ccccc1C(=O)O" --name aspirin --samplers isotropic \
        --frames 32 --rounds 1 --frames-per-round 8 --test-frames 12 --cache runs/fit-aspirin/dft-cache --runs runs/fit-aspirin

The DFT cache is the user's (~/.cache/anids-md/dft): a run repeated is not a cold-start timing;
`--cache DIR` with a fresh DIR is."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from common import RESULTS, machine, rmd17_dir
from harness import provenance

from anids_md.calculator import AniDSCalculator
from anids_md.data import read_rmd17
from anids_md.evaluation import error_metrics
from anids_md.fit import FitSettings, fit


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplers = sorted({_arm(r) for r in rows})
    fig, ax = plt.subplots(figsize=(2.2 * len(samplers) + 1, 4))
    for k, key in enumerate(["heldout_forces_mae_meV_per_A", "rmd17_test_forces_mae_meV_per_A"]):
        values = [[r[key] for r in rows if _arm(r) == s] for s in samplers]
        ax.bar(np.arange(len(samplers)) + (k - 0.5) * 0.38, [np.mean(v) for v in values], 0.38,
               yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in values], capsize=3, label="held out (fit's own MD)" if k == 0 else "rMD17 test frames")
    calls = [max(r["n_dft_calls"] for r in rows if _arm(r) == s) for s in samplers]
    ax.set_xticks(range(len(samplers)), [f"{s}\n{c} DFT calls" for s, c in zip(samplers, calls)])
    ax.set_ylabel("force MAE (meV/Å)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _arm(row: dict) -> str:
    arm = f"{row['sampler']}, {row.get('frames', FitSettings.frames)} frames, {len(row['rounds']) - 1} rounds"
    if row.get("selection", "random") != "random" or row.get("committee", 1) > 1:
        arm += f"\n{row['selection']}, committee {row['committee']}"
    if row.get("prior_init"):
        arm += f"\nprior from {row['prior_init']}"
    if row.get("refit_steps") and len(row["rounds"]) > 1:  # rows from before it have every fit start from the prior
        # the fits between the first and the last run refit_steps; the last runs the fit's steps
        arm += "\neach fit from the previous one" + (f", refits of {row['refit_steps']} steps" if len(row["rounds"]) > 2 else "")
    return arm


def transfer_errors(model: Path, frames) -> dict:
    """Errors of the fitted model (a committee: its mean) on labelled frames, float64."""
    calc = AniDSCalculator(model, dtype="float64")
    energies, forces = [], []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return error_metrics(energies, forces, [f.get_potential_energy() for f in frames], [f.get_forces() for f in frames])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smiles", default="CCO")
    parser.add_argument("--name", default="ethanol", help="rMD17 molecule name for the transfer check")
    parser.add_argument("--samplers", nargs="+", default=["anids"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=FitSettings.frames, help="first labelled set, drawn by the sampler")
    parser.add_argument("--rounds", type=int, default=FitSettings.rounds)
    parser.add_argument("--frames-per-round", type=int, default=FitSettings.frames_per_round)
    parser.add_argument("--test-frames", type=int, default=FitSettings.test_frames)
    parser.add_argument("--selection", default=FitSettings.selection, help="random | farthest | committee")
    parser.add_argument("--committee", type=int, default=FitSettings.committee, help="models per fit")
    parser.add_argument("--refit-steps", default=str(FitSettings.refit_steps),
                        help="steps of each round's fit from the previous one; 'none': every fit from the prior for --steps")
    parser.add_argument("--time-budget", type=float, help="minutes after which no round starts (FitSettings.time_budget_min)")
    parser.add_argument("--prior-init", default=FitSettings.prior_init,
                        help="xtb-md: checkpoint the molecule prior's fit starts from, 'none' for from scratch")
    parser.add_argument("--cache", help="DFT cache folder (default the user's)")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--runs", default="runs/fit")
    parser.add_argument("--out", default=None, help="default benchmarks/results/fit_NAME")
    args = parser.parse_args()
    if args.prior_init.lower() in ("none", "null"):
        args.prior_init = None
    args.refit_steps = None if args.refit_steps.lower() in ("none", "null") else int(args.refit_steps)
    out = Path(args.out or RESULTS / f"fit_{args.name}")
    test_file = rmd17_dir(args.data) / f"rmd17_{args.name}_test_01.npz"
    test = read_rmd17(test_file)
    rows = []
    cold = args.cache is not None and not any(Path(args.cache).glob("*"))  # an empty cache: a cold-start timing
    for sampler in args.samplers:
        for seed in args.seeds:
            settings = FitSettings(sampler=sampler, seed=seed, workers=args.workers, frames=args.frames, rounds=args.rounds,
                                   frames_per_round=args.frames_per_round, test_frames=args.test_frames, selection=args.selection,
                                   committee=args.committee, prior_init=args.prior_init,
                                   refit_steps=args.refit_steps, time_budget_min=args.time_budget)
            frames = "" if args.frames == FitSettings.frames else f"-f{args.frames}"
            chooser = "" if args.selection == "random" and args.committee == 1 else f"-{args.selection}{args.committee}"
            start = f"-{Path(args.prior_init).stem}" if args.prior_init else ""
            folder = Path(args.runs) / f"{args.name}-{sampler}{frames}{chooser}{start}-s{seed}"
            report = fit(args.smiles, folder, settings, cache_dir=args.cache)
            transfer = transfer_errors(folder / "model.safetensors", test)
            rows.append({**asdict(report), "seed": seed, "frames": args.frames, "prior_init": args.prior_init, "refit_steps": args.refit_steps,
                         "rmd17_test_forces_mae_meV_per_A": transfer["forces_mae_meV_per_A"],
                         "rmd17_test_frames": transfer["n_structures"], "cold_cache": cold,
                         "provenance": provenance(models=[folder / "model.safetensors"], data=[test_file])})
            cold = False
            print(json.dumps({k: rows[-1][k] for k in ("sampler", "selection", "seed", "heldout_forces_mae_meV_per_A", "minimum_rmsd_A",
                                                       "nve_drift_meV_per_atom_per_ps", "md_stable", "n_dft_calls", "wall_s",
                                                       "rmd17_test_forces_mae_meV_per_A")}), flush=True)
    if out.with_suffix(".json").exists():  # keep rows of other samplers or seeds measured before
        done = {(_arm(r), r["seed"]) for r in rows}
        rows = [r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if (_arm(r), r["seed"]) not in done] + rows
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), "smiles": args.smiles, "rows": rows}, indent=2))
    plot(rows, out.with_suffix(".png"), f"anids-md fit {args.smiles} ({args.name}), PBE/def2-SVP")


if __name__ == "__main__":
    main()
