"""What the denoising objective buys (BENCHMARKS.md B): protocol rmd17-50, the same backbone,
steps and seeds for every objective, each without and with QM9 pretraining.

Pretraining runs come first (`anids-md pretrain --config pretrain_qm9
noise.kind=KIND name=qm9-KIND`, one per learned noise model and `fixed`). "With pretraining" starts
the backbone from the pretraining of the same noise model (`none` from the anisotropic one); the
learned objectives always take their frozen generator from that pretraining, since an untrained
generator has no meaning. Runs go `--workers` at a time, one thread each, and a finished run
(its summary.json) is not repeated.

    python benchmarks/ablation.py --steps 2000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import RESULTS, machine, rmd17_dir

OBJECTIVES = ["none", "fixed", "isotropic", "anisotropic", "anisotropic-add"]
REPO = Path(__file__).resolve().parents[1]


def run_name(molecule: str, objective: str, pretrained: bool, seed: int) -> str:
    return f"{molecule}-{objective}-{'pre' if pretrained else 'scratch'}-s{seed}"


def command(args, molecule: str, objective: str, pretrained: bool, seed: int) -> list[str]:
    data = rmd17_dir(args.data)
    pretraining = Path(args.pretrained)
    source = "anisotropic" if objective == "none" else objective
    cmd = [sys.executable, "-m", "anids_md.cli", "train", "--config", "rmd17-50", "--quiet",
           f"name={run_name(molecule, objective, pretrained, seed)}", f"output_dir={args.runs}", f"seed={seed}", f"noise={objective}",
           f"data.train={data / f'rmd17_{molecule}_train_01.npz'}", f"data.test={data / f'rmd17_{molecule}_test_01.npz'}",
           "data.reference_energies=pbe-def2svp", f"optim.max_steps={args.steps}",
           f"optim.patience={args.steps}", "device=cpu"]
    if pretrained:
        cmd.append(f"init={pretraining / f'qm9-{source}' / 'model.safetensors'}")
    if objective not in ("none", "fixed"):
        cmd.append(f"denoise.generator={pretraining / f'qm9-{objective}' / 'model.safetensors'}")
    return cmd


def run_one(args, job) -> dict:
    molecule, objective, pretrained, seed = job
    run_dir = Path(args.runs) / run_name(*job)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        start = time.perf_counter()
        done = subprocess.run(command(args, *job), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{run_dir.name} failed:\n{done.stderr[-2000:]}")
        print(f"{run_dir.name}: {time.perf_counter() - start:.0f} s", flush=True)
    summary = json.loads(summary_path.read_text())
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
    }


def plot(rows: list[dict], path: Path, budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    molecules = sorted({r["molecule"] for r in rows})
    fig, axes = plt.subplots(1, len(molecules), figsize=(5.5 * len(molecules), 4), squeeze=False)
    for ax, molecule in zip(axes[0], molecules):
        for k, pretrained in enumerate([False, True]):
            means, stds = [], []
            for objective in OBJECTIVES:
                values = [r["forces_mae_meV_per_A"] for r in rows if (r["molecule"], r["objective"], r["pretrained"]) == (molecule, objective, pretrained)]
                means.append(np.mean(values) if values else np.nan)
                stds.append(np.std(values) if values else 0.0)
            x = np.arange(len(OBJECTIVES)) + (k - 0.5) * 0.38
            ax.bar(x, means, 0.38, yerr=stds, capsize=3, label="QM9-pretrained" if pretrained else "from scratch")
        ax.set_xticks(np.arange(len(OBJECTIVES)), OBJECTIVES, rotation=20)
        ax.set(title=f"{molecule}, rmd17-50", ylabel="test force MAE (meV/Å)")
        ax.legend(fontsize=8)
    fig.suptitle(budget, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", nargs="+", default=["aspirin", "ethanol"])
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--pretrained", default="runs", help="folder holding the qm9-KIND pretraining runs")
    parser.add_argument("--runs", default="runs/ablation")
    parser.add_argument("--out", default=str(RESULTS / "ablation_rmd17-50.json"))
    args = parser.parse_args()

    jobs = [(m, o, p, s) for m in args.molecules for s in args.seeds for p in (False, True) for o in args.objectives]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda job: run_one(args, job), jobs))
    budget = (f"{args.steps} optimiser steps per run (batch 5), seeds {args.seeds}, {args.workers} runs at a time with 1 thread each "
              f"on {machine()['cpu']}; {time.perf_counter() - start:.0f} s for this invocation")
    Path(args.out).write_text(json.dumps(rows, indent=2))
    Path(args.out).with_name(Path(args.out).stem + "_budget.json").write_text(json.dumps({"budget": budget, "machine": machine()}, indent=2))
    plot(rows, Path(args.out).with_suffix(".png"), budget)
    print(budget)
    for molecule in args.molecules:
        for pretrained in (False, True):
            for objective in args.objectives:
                values = [r["forces_mae_meV_per_A"] for r in rows if (r["molecule"], r["objective"], r["pretrained"]) == (molecule, objective, pretrained)]
                print(f"{molecule:8s} {objective:16s} {'pretrained' if pretrained else 'scratch':10s} "
                      f"force MAE {sum(values) / len(values):7.2f} meV/Å  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
