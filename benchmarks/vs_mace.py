"""anids-md against MACE small at an equal training budget (issue: beat MACE), protocol rmd17-50.

Both codes train on frames 0-49 of `train_01`, select on frames 50-99, and are tested on all
1000 frames of `test_01`, one thread per run. MACE (mace-torch, in its own venv because it pins
e3nn 0.4.4; ../shared/tools/peer_mace_speed.sh makes one) runs its rMD17 recipe: 32x0e+32x1o,
max_ell 2, correlation 2, 2 interactions, 5 Å, batch 5, AMSGrad, lr 0.01, EMA 0.99, energy weight
1, forces weight 100, 600 epochs with the last quarter as its stage two (energy weight 1000). Its
process wall time, averaged over the seeds, is the budget: anids-md then trains for the same
seconds (`optim.max_wall_s`, its cosine stretched over them). The seeds of one code run
concurrently, `--workers` at a time, so every run shares the machine with one other training
run. Speed (ms per energy+forces call, float32, 1 thread) is measured for both codes in
alternating rounds on the first test frame (MACE through peer_mace_speed.py, same architecture).

    python benchmarks/vs_mace.py --molecules ethanol aspirin --seeds 0 1

A finished run (its result.json) is not repeated. `--set` passes recipe overrides to anids-md
and `--label` names that recipe in the results, so several recipes can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from ase.io import read, write
from common import RESULTS, machine, rmd17_dir
from harness import provenance
from speed import time_calculator, time_peer

from anids_md.data import protocol_split, read_isolated_atom_energies, read_structures
from anids_md.data.readers import labels_of, reference_energies_file
from anids_md.evaluation import error_metrics

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MACE_RECIPE = ["--model", "MACE", "--hidden_irreps", "32x0e + 32x1o", "--max_ell", "2", "--correlation", "2",
               "--num_interactions", "2", "--r_max", "5.0", "--batch_size", "5", "--valid_batch_size", "10",
               "--amsgrad", "--lr", "0.01", "--ema", "--ema_decay", "0.99", "--energy_weight", "1", "--forces_weight", "100",
               "--swa", "--default_dtype", "float32", "--device", "cpu", "--energy_key", "REF_energy", "--forces_key", "REF_forces"]


def write_frames(data: Path, molecule: str, folder: Path) -> dict[str, Path]:
    """The protocol's train/valid/test frames as extxyz in eV and eV/Å, which both codes read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {part: folder / f"{molecule}_{part}.xyz" for part in ("train", "valid", "test")}
    if all(p.exists() for p in paths.values()):
        return paths
    train_file = read_structures(data / f"rmd17_{molecule}_train_01.npz")
    train, valid = protocol_split("rmd17-50", len(train_file))
    parts = {"train": [train_file[i] for i in train], "valid": [train_file[i] for i in valid],
             "test": read_structures(data / f"rmd17_{molecule}_test_01.npz")}
    for part, frames in parts.items():
        out = []
        for atoms in frames:
            energy, forces = labels_of(atoms)
            plain = atoms.copy()
            plain.calc = None
            plain.info["REF_energy"] = energy
            plain.arrays["REF_forces"] = forces
            out.append(plain)
        write(paths[part], out, format="extxyz")
    return paths


def run_timed(cmd: list[str], log: Path) -> float:
    """Run `cmd` on one thread, its output to `log`; the wall seconds (an error with the log's tail)."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(cmd, env={**os.environ, **ONE_THREAD}, stdout=handle, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed; the end of {log}:\n{log.read_text()[-3000:]}")
    return wall


def errors_against_labels(predicted: list, reference_file: Path) -> dict:
    """Errors of (energy, forces) predictions against the REF_ labels of `reference_file`."""
    ref = [(a.info["REF_energy"], a.arrays["REF_forces"]) for a in read(reference_file, ":")]
    return error_metrics([e for e, _ in predicted], [f for _, f in predicted], [e for e, _ in ref], [f for _, f in ref])


def train_mace(args, molecule: str, seed: int, frames: dict[str, Path]) -> dict:
    run = Path(args.runs) / f"mace-{molecule}-s{seed}"
    result = run / "result.json"
    if result.exists():
        return json.loads(result.read_text())
    run.mkdir(parents=True, exist_ok=True)
    # the isolated-atom energies anids-md uses, for the elements present (MACE sizes its table by them)
    present = {int(z) for z in read(frames["train"], 0).numbers}
    e0s = {z: e for z, e in read_isolated_atom_energies(reference_energies_file("pbe-def2svp")).items() if z in present}
    bin_dir = Path(args.mace_venv) / "bin"
    cmd = [str(bin_dir / "mace_run_train"), "--name", "mace", "--work_dir", str(run.resolve()), "--seed", str(seed),
           "--train_file", str(frames["train"].resolve()), "--valid_file", str(frames["valid"].resolve()),
           "--E0s", json.dumps({str(z): e for z, e in e0s.items()}).replace('"', ""), "--max_num_epochs", str(args.mace_epochs),
           *MACE_RECIPE]
    wall = run_timed(cmd, run / "train.log")
    model = next(p for p in (run / "mace_stagetwo.model", run / "mace.model") if p.exists())
    predictions = run / "test_predictions.xyz"
    run_timed([str(bin_dir / "mace_eval_configs"), "--configs", str(frames["test"].resolve()), "--model", str(model),
               "--output", str(predictions), "--device", "cpu", "--default_dtype", "float32", "--batch_size", "50"],
              run / "eval.log")
    predicted = [(a.info["MACE_energy"], a.arrays["MACE_forces"]) for a in read(predictions, ":")]
    row = {"molecule": molecule, "code": "MACE small", "recipe": "mace-torch rMD17 recipe", "protocol": "rmd17-50", "seed": seed,
           "wall_s": round(wall, 1), "epochs": args.mace_epochs, "model": str(model),
           **_rounded(errors_against_labels(predicted, frames["test"]))}
    result.write_text(json.dumps(row, indent=2))
    return row


def anids_run(args, molecule: str, seed: int) -> Path:
    """The run folder of anids-md's recipe `args.label` on `molecule` at `seed`."""
    return Path(args.runs) / f"{args.label}-{molecule}-s{seed}"


def train_anids(args, molecule: str, seed: int, budget_s: float) -> dict:
    run = anids_run(args, molecule, seed)
    result = run / "result.json"
    if result.exists():
        return json.loads(result.read_text())
    data = rmd17_dir(args.data)
    # The budget is for the whole process, as MACE's is: the loop gets it less a start-up allowance.
    cmd = [sys.executable, "-m", "anids_md.cli", "train", "--config", "rmd17-50", "--quiet", f"name={run.name}",
           f"output_dir={args.runs}", f"seed={seed}", f"data.train={data / f'rmd17_{molecule}_train_01.npz'}", "overwrite=true",
           f"optim.max_wall_s={budget_s - args.startup_s:.1f}", "optim.epochs=1000000", "optim.patience=1000000", *args.set]
    run.mkdir(parents=True, exist_ok=True)
    log = run.parent / f"{run.name}.log"  # beside the run folder, which the trainer claims
    wall = run_timed(cmd, log)
    metrics = run / "test.json"
    run_timed([sys.executable, "-m", "anids_md.cli", "evaluate", str(run / "model.safetensors"),
               str(data / f"rmd17_{molecule}_test_01.npz"), "--json", str(metrics)], run.parent / f"{run.name}-eval.log")
    summary = json.loads((run / "summary.json").read_text())
    row = {"molecule": molecule, "code": "anids-md", "recipe": args.label, "overrides": args.set, "protocol": "rmd17-50",
           "seed": seed, "wall_s": round(wall, 1), "budget_s": round(budget_s, 1), "steps": summary["steps"],
           "best_epoch": summary["best_epoch"], "valid_forces_mae_meV_per_A": round(summary["valid"]["forces_mae_meV_per_A"], 2),
           **_rounded(json.loads(metrics.read_text()))}
    result.write_text(json.dumps(row, indent=2))
    return row


def _rounded(metrics: dict) -> dict:
    return {"forces_mae_meV_per_A": round(metrics["forces_mae_meV_per_A"], 2), "energy_mae_meV": round(metrics["energy_mae_meV"], 2),
            "n_test": metrics["n_structures"]}
def measure_speed(structure: Path, models: dict[str, Path], rounds: int) -> dict[str, float]:
    """Median ms per warm call over `rounds` alternating rounds (float32, 1 thread): each anids-md
    model, then MACE small."""
    calls = {name: [] for name in [*models, "MACE small"]}
    atoms = read(structure, 0)
    atoms.calc = None
    for _ in range(rounds):
        for name, model in models.items():
            calls[name].append(time_calculator(atoms, model, "float32", 1)[0])
        calls["MACE small"].append(time_peer(structure, "float32", 1)["ms_per_call_median"])
    return {name: round(statistics.median(times), 2) for name, times in calls.items()}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in sorted({(r["molecule"], r["code"], r["recipe"]) for r in rows}):
        group = [r for r in rows if (r["molecule"], r["code"], r["recipe"]) == key]
        forces = [r["forces_mae_meV_per_A"] for r in group]
        out.append({"molecule": key[0], "code": key[1], "recipe": key[2], "seeds": len(group),
                    "forces_mae_meV_per_A": round(float(np.mean(forces)), 2),
                    "forces_mae_std": round(float(np.std(forces, ddof=1)), 2) if len(group) > 1 else None,
                    "energy_mae_meV": round(float(np.mean([r["energy_mae_meV"] for r in group])), 2),
                    "wall_s": round(float(np.mean([r["wall_s"] for r in group])), 1),
                    "ms_per_call": group[0].get("ms_per_call"), "provenance": _merged_provenance(group)})
    return out


def _merged_provenance(group: list[dict]) -> dict | None:
    """A summary row's provenance: its last seed's, with the models of every seed."""
    stamps = [r["provenance"] for r in group if "provenance" in r]
    return {**stamps[-1], "models": {k: v for s in stamps for k, v in s["models"].items()}} if stamps else None


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    fig, axes = plt.subplots(1, len(molecules), figsize=(5 * len(molecules), 4), squeeze=False)
    for ax, molecule in zip(axes[0], molecules):
        mine = [r for r in rows if r["molecule"] == molecule and r.get("ms_per_call")]
        for i, recipe in enumerate(sorted({r["recipe"] for r in mine})):
            group = [r for r in mine if r["recipe"] == recipe]
            x = group[0]["ms_per_call"]
            y = [r["forces_mae_meV_per_A"] for r in group]
            colour = "tab:red" if group[0]["code"] == "MACE small" else f"C{i}"
            ax.scatter([x] * len(y), y, color=colour, alpha=0.4)
            ax.errorbar(x, np.mean(y), yerr=np.std(y, ddof=1) if len(y) > 1 else None, fmt="o", color=colour, capsize=4,
                        label=f"{group[0]['code']}: {recipe} ({np.mean([r['wall_s'] for r in group]):.0f} s)")
        ax.set_xlim(left=0)
        ax.set_xlabel("ms per energy+forces call (float32, 1 thread)")
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(f"{molecule}, rmd17-50, equal training wall time")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--data", help="folder of rMD17 npz files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--runs", default="runs/vs-mace")
    parser.add_argument("--mace-venv", default=os.environ.get("PEER_MACE_VENV", "/tmp/peer-mace-venv"),
                        help="venv with mace-torch (bash ../shared/tools/peer_mace_speed.sh makes it)")
    parser.add_argument("--mace-epochs", type=int, default=600)
    parser.add_argument("--mace-from", help="take MACE's rows (and so the budget) from this earlier results JSON instead of "
                                            "training MACE again, e.g. benchmarks/results/vs_mace.json when screening recipes")
    parser.add_argument("--label", default="rmd17-50", help="name of the anids-md recipe in the results")
    parser.add_argument("--set", nargs="*", default=[], help="anids-md recipe overrides, e.g. optim.loss=dens")
    parser.add_argument("--startup-s", type=float, default=25.0,
                        help="seconds of the budget left for anids-md's start-up and final save (the loop gets the rest)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "vs_mace"))
    args = parser.parse_args()
    if not args.mace_from and not (Path(args.mace_venv) / "bin" / "mace_run_train").exists():
        raise SystemExit(f"no mace-torch in {args.mace_venv}: run `bash ../shared/tools/peer_mace_speed.sh --help` once, or pass --mace-venv")
    data = rmd17_dir(args.data)
    out = Path(args.out)
    rows = []
    for molecule in args.molecules:
        frames = write_frames(data, molecule, Path(args.runs) / "frames")
        if args.mace_from:
            earlier = json.loads(Path(args.mace_from).read_text())["rows"]
            mace = [r for r in earlier if r["code"] == "MACE small" and r["molecule"] == molecule and r["seed"] in args.seeds]
            if len(mace) != len(args.seeds):
                raise SystemExit(f"{args.mace_from} lacks MACE rows for {molecule}, seeds {args.seeds}")
        else:
            with ThreadPoolExecutor(args.workers) as pool:
                mace = list(pool.map(partial(train_mace, args, molecule, frames=frames), args.seeds))
        budget = float(np.mean([r["wall_s"] for r in mace]))
        print(f"{molecule}: MACE {[r['forces_mae_meV_per_A'] for r in mace]} meV/Å in {budget:.0f} s", flush=True)
        with ThreadPoolExecutor(args.workers) as pool:
            ours = list(pool.map(partial(train_anids, args, molecule, budget_s=budget), args.seeds))
        print(f"{molecule}: anids-md {[r['forces_mae_meV_per_A'] for r in ours]} meV/Å in "
              f"{np.mean([r['wall_s'] for r in ours]):.0f} s", flush=True)
        if args.speed_rounds:  # (0 when screening recipes with other runs beside: timings would mean nothing)
            speed = measure_speed(frames["test"], {args.label: anids_run(args, molecule, args.seeds[0]) / "model.safetensors"},
                                  args.speed_rounds)
            for row in mace + ours:
                row["ms_per_call"] = speed["MACE small" if row["code"] == "MACE small" else args.label]
        files = [data / f"rmd17_{molecule}_train_01.npz", data / f"rmd17_{molecule}_test_01.npz"]
        for row in mace + ours:
            model = row["model"] if row["code"] == "MACE small" else anids_run(args, molecule, row["seed"]) / "model.safetensors"
            row["provenance"] = provenance(models=[model], data=files)
        rows += mace + ours
    # rows of other molecules or recipes from earlier (or concurrent) invocations are kept
    previous = json.loads(out.with_suffix(".json").read_text())["rows"] if out.with_suffix(".json").exists() else []
    same = {(r["molecule"], r["code"], r["recipe"], r["seed"]) for r in rows}
    rows = [r for r in previous if (r["molecule"], r["code"], r["recipe"], r["seed"]) not in same] + rows
    result = {"what": "test force/energy MAE on all 1000 test_01 frames after rmd17-50 training of MACE small and anids-md for "
                      "the same wall time (MACE's recipe, for the epochs in its rows, sets it), one thread per run, two runs at a time",
              "machine": machine(), "rows": rows, "summary": summarise(rows)}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    if any(r.get("ms_per_call") for r in rows if r["code"] == "anids-md"):  # screens run without timings have nothing to plot
        plot(rows, out.with_suffix(".png"))
    for row in result["summary"]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
