"""Loss form and auxiliary-denoising mode on rmd17-50 (issue: denoising that pays): the same
backbone, steps and seeds in every arm; only the loss form (`optim.loss`), the denoising mode
(`denoise.mode`), the noise and the starting weights change. Denoising arms use λ_denoise = 0.625,
DeNS's ratio of denoising to force weight (5 : 80) at this recipe's force weight 10, and the
calibrated noise scale σ = 0.05 Å. Runs go `--workers` at a time, one thread each; a finished
run is not repeated and an interrupted one resumes.

    python benchmarks/denoise_modes.py --molecules ethanol --seeds 0 1 --workers 2
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import RESULTS, machine, rmd17_dir, seed_bars
from harness import provenance, train_run

DENOISE = ["denoise.weight=0.625", "denoise.mean_scale_A=0.05"]
ARMS = {
    "none, mse": ["optim.loss=mse"],
    "none, dens": ["optim.loss=dens"],
    "none, dens, pretrained": ["optim.loss=dens", "init=qm9-anids"],
    "fixed, dens mode": ["optim.loss=dens", "denoise.kind=fixed", "denoise.mode=dens", *DENOISE],
    "fixed, separate": ["optim.loss=dens", "denoise.kind=fixed", "denoise.mode=separate", *DENOISE],
    "anisotropic, dens mode, pretrained": ["optim.loss=dens", "init=qm9-anids", "denoise.kind=anisotropic", "denoise.mode=dens", *DENOISE],
    "anisotropic, separate, pretrained": ["optim.loss=dens", "init=qm9-anids", "denoise.kind=anisotropic", "denoise.mode=separate", *DENOISE],
}


def run_name(molecule: str, arm: str, seed: int) -> str:
    return f"{molecule}-{arm.replace(', ', '-').replace(' ', '_')}-s{seed}"


def run_one(args, job) -> dict | None:
    molecule, arm, seed = job
    run_dir = Path(args.runs) / run_name(*job)
    summary_path = run_dir / "summary.json"
    data = rmd17_dir(args.data)
    files = [data / f"rmd17_{molecule}_train_01.npz", data / f"rmd17_{molecule}_test_01.npz"]
    if not summary_path.exists():
        status, wall, output = train_run([f"name={run_dir.name}", f"output_dir={args.runs}", f"seed={seed}", f"data.train={files[0]}",
                                          f"data.test={files[1]}", f"optim.max_steps={args.steps}", f"optim.patience={args.steps}",
                                          "device=cpu", *ARMS[arm]])
        if status != 0:
            print(f"{run_dir.name} failed: {output.strip().splitlines()[-1:]}", flush=True)
            return None
        print(f"{run_dir.name}: {wall:.0f} s", flush=True)
    summary = json.loads(summary_path.read_text())
    return {"molecule": molecule, "arm": arm, "overrides": ARMS[arm], "seed": seed,
            "forces_mae_meV_per_A": summary["test"]["forces_mae_meV_per_A"], "energy_mae_meV": summary["test"]["energy_mae_meV"],
            "steps": summary["steps"], "wall_s": summary["train_wall_s"], "noise_scale_A": summary.get("noise_scale_A"),
            "best_epoch": summary["best_epoch"], "provenance": provenance(models=[run_dir / "model.safetensors"], data=files)}


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    fig, axes = plt.subplots(1, len(molecules), figsize=(6 * len(molecules), 4.5), squeeze=False)
    for ax, molecule in zip(axes[0], molecules):
        groups = [(arm, [r["forces_mae_meV_per_A"] for r in rows if (r["molecule"], r["arm"]) == (molecule, arm)]) for arm in ARMS]
        seed_bars(ax, [g for g in groups if g[1]], "test force MAE (meV/Å)")
        ax.set_title(f"{molecule}, rmd17-50")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=10000, help="optimiser steps per run (the rmd17-50 recipe's budget)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--runs", default="runs/denoise_modes")
    parser.add_argument("--out", default=str(RESULTS / "denoise_modes_rmd17-50"))
    parser.add_argument("--note", default="", help="stored in the JSON, e.g. where the runs were trained")
    args = parser.parse_args()
    jobs = [(m, a, s) for m in args.molecules for s in args.seeds for a in args.arms]
    with ThreadPoolExecutor(args.workers) as pool:
        rows = [r for r in pool.map(lambda job: run_one(args, job), jobs) if r is not None]
    out = {"machine": machine(), "note": args.note, "protocol": "rmd17-50", "steps": args.steps, "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(out, indent=2))
    plot(rows, Path(args.out + ".png"), f"rmd17-50, {args.steps} steps, test_01 (1000 frames); one thread per run")
    for r in rows:
        print(f"{r['molecule']:>8} {r['arm']:>36} s{r['seed']}: {r['forces_mae_meV_per_A']:.1f} meV/Å, {r['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
