"""Does a prior pay? rmd17-50 test errors (all 1000 test frames) of the plain recipe started from
scratch; from the molecule's GFN2-xTB prior (anids_md.prior: xTB minimum of train frame 0,
Langevin MD at 500 K from 4 starts, 1000 frames, a 60-epoch fit); from a foundation trained on
xTB-labelled QM9 conformers (`--foundation`, the recipe foundation-xtb); and from a molecule prior
whose fit starts from that foundation. All at the recipe's full budget (10 000 steps), the same
seed, one thread each.

    python benchmarks/priors.py --molecules ethanol aspirin --seeds 0 --arms scratch prior [--workers 2]
    python benchmarks/priors.py --molecules ethanol --arms foundation foundation-prior --foundation runs/foundation-xtb/model.safetensors

Writes benchmarks/results/priors_rmd17-50.json and .png (rows gathered by molecule, arm and seed;
each row carries its own provenance). The prior's cost (xTB seconds, fit seconds) is in its row.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import RESULTS, machine, rmd17_dir, seed_bars
from harness import provenance, train_run

ARMS = ("scratch", "prior", "foundation", "foundation-prior")
OUT = RESULTS / "priors_rmd17-50.json"


def build_prior_in_process(molecule: str, data: Path, runs: Path, seed: int, init: str | None = None) -> dict:
    """The prior, built in a child process with one thread (xTB and torch)."""
    import subprocess
    import sys

    code = (
        "import json, sys; from anids_md.data import read_rmd17; from anids_md.prior import build_prior; "
        "from anids_md.settings import PriorConfig; settings = PriorConfig(init=sys.argv[4] or None); "
        "r = build_prior(read_rmd17(sys.argv[1], frames=[0]), sys.argv[2], settings, seed=int(sys.argv[3]), progress=False); "
        "print(json.dumps({'model': str(r.model), 'n_frames': r.n_frames, 'n_failed_runs': r.n_failed_runs, "
        "'xtb_wall_s': r.xtb_wall_s, 'fit_wall_s': r.fit_wall_s, 'valid_xtb_forces_mae_meV_per_A': r.valid_forces_mae_meV_per_A}))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(data / f"rmd17_{molecule}_train_01.npz"), str(runs / "priors"), str(seed),
                           init or ""],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {molecule} prior failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_arm(args, molecule: str, arm: str, seed: int) -> dict:
    data = rmd17_dir(args.data)
    files = [data / f"rmd17_{molecule}_train_01.npz", data / f"rmd17_{molecule}_test_01.npz"]
    name = f"{molecule}-{arm}-s{seed}"
    overrides = [f"name={name}", f"output_dir={args.runs}", f"seed={seed}", f"data.train={files[0]}", f"data.test={files[1]}",
                 "optim.max_steps=10000", "optim.patience=10000", "device=cpu", "resume=true"]
    prior = None
    if arm in ("prior", "foundation-prior"):
        prior = build_prior_in_process(molecule, data, Path(args.runs), seed, args.foundation if arm == "foundation-prior" else None)
        overrides.append(f"init={prior['model']}")
    elif arm == "foundation":
        overrides.append(f"init={args.foundation}")
    summary_path = Path(args.runs) / name / "summary.json"
    if not summary_path.exists():
        status, wall, output = train_run(overrides)
        if status != 0:
            raise RuntimeError(f"{name} failed:\n{output}")
        print(f"{name}: {wall:.0f} s", flush=True)
    summary = json.loads(summary_path.read_text())
    models = [Path(args.runs) / name / "model.safetensors"] + ([prior["model"]] if prior else [])
    models += [args.foundation] if arm.startswith("foundation") else []
    return {"molecule": molecule, "arm": arm, "seed": seed, "test_forces_mae_meV_per_A": summary["test"]["forces_mae_meV_per_A"],
            "test_energy_mae_meV": summary["test"]["energy_mae_meV"], "n_test_frames": summary["test"]["n_structures"],
            "steps": summary["steps"], "finetune_wall_s": summary["train_wall_s"], "dft_labels": 100,  # 50 train + 50 validation
            "prior": prior, "provenance": provenance(models=models, data=files)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    fig, axes = plt.subplots(1, len(molecules), figsize=(3.5 * len(molecules), 3.6), squeeze=False)
    for ax, molecule in zip(axes[0], molecules):
        groups = [(arm, [r["test_forces_mae_meV_per_A"] for r in rows if r["molecule"] == molecule and r["arm"] == arm])
                  for arm in ARMS]
        seed_bars(ax, [(a, v) for a, v in groups if v], "test force MAE (meV/Å)")
        ax.set_title(f"{molecule}, rmd17-50")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=1, help="arms run at once, one thread each")
    parser.add_argument("--runs", default="runs/priors-benchmark")
    parser.add_argument("--foundation", help="checkpoint of the foundation (the foundation arms)")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    args = parser.parse_args()
    if any(a.startswith("foundation") for a in args.arms) and not args.foundation:
        parser.error("the foundation arms need --foundation CHECKPOINT")
    jobs = [(m, a, s) for m in args.molecules for a in args.arms for s in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        new = list(pool.map(lambda job: run_arm(args, *job), jobs))
    old = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    keep = [r for r in old if (r["molecule"], r["arm"], r["seed"]) not in {(m, a, s) for m, a, s in jobs}]
    rows = sorted(keep + new, key=lambda r: (r["molecule"], r["arm"], r["seed"]))
    OUT.write_text(json.dumps({"machine": machine(), "protocol": __doc__.split("\n\n")[0].replace("\n", " "), "rows": rows}, indent=1))
    plot(rows, OUT.with_suffix(".png"))
    for r in new:
        print(r["molecule"], r["arm"], r["seed"], f"forces {r['test_forces_mae_meV_per_A']:.1f} meV/Å, energy {r['test_energy_mae_meV']:.1f} meV")


if __name__ == "__main__":
    main()
