"""What the denoising objective buys (issue: denoising that pays): protocol rmd17-50 at the
recipe's full budget, the same backbone, steps and seeds in every arm.

Arms: the plain recipe from scratch (baseline); the plain recipe from the anisotropic QM9
pretraining; and auxiliary denoising with fixed, isotropic and anisotropic noise, each starting
from its own QM9 pretraining (backbone and denoising head) and, for the learned noise, taking
its frozen generator from it. Pretraining runs come first:

    anids-md pretrain --config pretrain_qm9 noise.kind=KIND name=qm9-KIND     (KIND: fixed, isotropic, anisotropic)

Runs go `--workers` at a time, one thread each. A finished run (its summary.json) is not
repeated; an interrupted one resumes.

    python benchmarks/ablation.py --molecules ethanol --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import RESULTS, machine, rmd17_dir, seed_bars
from harness import provenance, train_run

# (objective, pretrained): the baseline first, then what each addition brings
ARMS = [("none", False), ("none", True), ("fixed", True), ("isotropic", True), ("anisotropic", True)]
CURVE_STEPS = (100, 500, 1000, 2000, 5000, 10000)


def arm_label(objective: str, pretrained: bool) -> str:
    return f"{objective}, {'pretrained' if pretrained else 'scratch'}"


def run_name(molecule: str, objective: str, pretrained: bool, seed: int) -> str:
    return f"{molecule}-{objective}-{'pre' if pretrained else 'scratch'}-s{seed}"


def overrides(args, molecule: str, objective: str, pretrained: bool, seed: int) -> list[str]:
    data = rmd17_dir(args.data)
    source = "anisotropic" if objective == "none" else objective
    cmd = [f"name={run_name(molecule, objective, pretrained, seed)}", f"output_dir={args.runs}", f"seed={seed}", f"denoise.kind={objective}",
           f"data.train={data / f'rmd17_{molecule}_train_01.npz'}", f"data.test={data / f'rmd17_{molecule}_test_01.npz'}",
           f"optim.max_steps={args.steps}", f"optim.patience={args.steps}", f"device={args.device}", "resume=true", *args.set]
    if pretrained:
        cmd.append(f"init={Path(args.pretrained) / f'qm9-{source}' / 'model.safetensors'}")
    return cmd


def run_one(args, job) -> dict:
    molecule, objective, pretrained, seed = job
    run_dir = Path(args.runs) / run_name(*job)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        status, wall, output = train_run(overrides(args, *job))
        if status != 0:
            raise RuntimeError(f"{run_dir.name} failed:\n{output}")
        print(f"{run_dir.name}: {wall:.0f} s", flush=True)
    summary = json.loads(summary_path.read_text())
    data = rmd17_dir(args.data)
    stamp = provenance(models=[run_dir / "model.safetensors"],
                       data=[data / f"rmd17_{molecule}_train_01.npz", data / f"rmd17_{molecule}_test_01.npz"])
    with open(run_dir / "log.csv") as handle:  # how fast each start learns: validation MAE along the run
        curve = {int(r["step"]): round(float(r["valid_forces_mae_meV_per_A"]), 2) for r in csv.DictReader(handle)}
    return {
        "molecule": molecule,
        "objective": objective,
        "pretrained": pretrained,
        "seed": seed,
        "forces_mae_meV_per_A": summary["test"]["forces_mae_meV_per_A"],
        "energy_mae_meV": summary["test"]["energy_mae_meV"],
        "steps": summary["steps"],
        "wall_s": summary["train_wall_s"],
        "noise_scale_A": summary.get("noise_scale_A"),
        "best_epoch": summary["best_epoch"],
        "valid_forces_mae_by_step": {step: curve[step] for step in CURVE_STEPS if step in curve},
        "provenance": stamp,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per molecule and arm: mean and standard deviation of the force MAE, its ratio to the
    baseline and the difference in pooled standard deviations. (Training overhead is measured
    by training_speed.py, where both objectives see the same machine state.)"""
    out = []
    for molecule in sorted({r["molecule"] for r in rows}):
        def pick(arm, molecule=molecule):
            return [r for r in rows if (r["molecule"], r["objective"], r["pretrained"]) == (molecule, *arm)]

        base = pick(ARMS[0])
        if not base:
            continue
        b = np.array([r["forces_mae_meV_per_A"] for r in base])
        for arm in ARMS:
            chosen = pick(arm)
            if not chosen:
                continue
            v = np.array([r["forces_mae_meV_per_A"] for r in chosen])
            pooled = np.sqrt((v.var(ddof=1) + b.var(ddof=1)) / 2) if len(v) > 1 and len(b) > 1 else float("nan")
            out.append({
                "molecule": molecule, "arm": arm_label(*arm), "n_seeds": len(v),
                "forces_mae_mean": round(float(v.mean()), 2), "forces_mae_std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else None,
                "ratio_to_baseline": round(float(v.mean() / b.mean()), 3),
                "difference_in_pooled_std": round(float((v.mean() - b.mean()) / pooled), 2) if pooled > 0 else None,
            })
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Top: test force MAE per arm (mean, spread, seeds). Bottom: validation force MAE along
    the run, mean over seeds: where pretraining's head start goes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    arms = [a for a in ARMS if any((r["objective"], r["pretrained"]) == a for r in rows)]  # the arms that were run
    fig, axes = plt.subplots(2, len(molecules), figsize=(5.5 * len(molecules), 8), squeeze=False)
    for column, molecule in enumerate(molecules):
        bars, curves = axes[0][column], axes[1][column]
        groups = []
        for arm in arms:
            chosen = [r for r in rows if (r["molecule"], r["objective"], r["pretrained"]) == (molecule, *arm)]
            if not chosen:
                continue
            groups.append((arm_label(*arm), [r["forces_mae_meV_per_A"] for r in chosen]))
            by_step = [{int(s): v for s, v in r["valid_forces_mae_by_step"].items()} for r in chosen]  # JSON keys are strings
            steps = sorted({s for curve in by_step for s in curve})
            mean = [np.mean([curve[s] for curve in by_step if s in curve]) for s in steps]
            curves.loglog(steps, mean, "o-", color=f"C{len(groups) - 1}", label=arm_label(*arm))  # its bar's colour
        seed_bars(bars, groups, "test force MAE (meV/Å)")
        bars.set_title(f"{molecule}, rmd17-50")
        curves.set(xlabel="optimiser step", ylabel="validation force MAE (meV/Å)")
        curves.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"])
    parser.add_argument("--arms", nargs="+", default=[arm_label(*a) for a in ARMS], choices=[arm_label(*a) for a in ARMS])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=10000, help="optimiser steps per run (the rmd17-50 recipe's budget)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run (e.g. optim.lr=0.001)")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--pretrained", default="runs", help="folder holding the qm9-KIND pretraining runs")
    parser.add_argument("--runs", default="runs/ablation")
    parser.add_argument("--out", default=str(RESULTS / "ablation_rmd17-50"))
    args = parser.parse_args()

    arms = [a for a in ARMS if arm_label(*a) in args.arms]
    jobs = [(m, *a, s) for m in args.molecules for s in args.seeds for a in arms]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda job: run_one(args, job), jobs))
    previous = Path(args.out + ".json")
    if previous.exists():  # keep rows of other molecules or arms measured before
        kept = [r for r in json.loads(previous.read_text()).get("rows", [])
                if (r["molecule"], r["objective"], r["pretrained"], r["seed"]) not in {j for j in jobs}]
        rows = kept + rows
    pretraining = {}
    for kind in ("fixed", "isotropic", "anisotropic"):
        summary = Path(args.pretrained) / f"qm9-{kind}" / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            pretraining[kind] = {k: s.get(k) for k in ("steps", "epochs", "train_wall_s", "valid")}
    out = {
        "machine": machine(), "protocol": "rmd17-50", "steps": args.steps, "workers": args.workers, "overrides": args.set,
        "wall_s_this_invocation": round(time.perf_counter() - start), "pretraining": pretraining,
        "summary": summarise(rows), "rows": rows,
    }
    Path(args.out + ".json").write_text(json.dumps(out, indent=2))
    plot(rows, Path(args.out + ".png"),
         f"rmd17-50, {args.steps} steps, test_01 (1000 frames), {args.workers} runs at a time, 1 thread each")
    for s in out["summary"]:
        print(json.dumps(s))


if __name__ == "__main__":
    main()
