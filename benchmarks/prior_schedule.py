"""How long, with which energy weight and at which learning rate should a fine-tune that starts
from a molecule prior train? rmd17-50 (50 PBE frames, validation on 50 more, test on all 1000 test
frames), the plain recipe started from a given prior checkpoint, for each (steps, energy weight,
peak learning rate) of the grid; the forces weight stays 100. Fine-tune seed 0 (the prior has its own), one thread per run.

    python benchmarks/prior_schedule.py --molecule ethanol --prior PRIOR/fit/model.safetensors --grid 1000:1 2000:1 2000:3:1e-3

Writes benchmarks/results/prior_schedule_rmd17-50.json (or `--out`) and .png (rows gathered by
molecule, the prior's epochs, frames, their spacing and seed, steps, energy weight and learning rate; a run folder that holds a
summary is read, not trained again, so a grid on another prior needs its own `--runs`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from common import RESULTS, machine, rmd17_dir
from harness import provenance, train_run

from anids_md.train.config import OptimConfig

OUT = RESULTS / "prior_schedule_rmd17-50.json"
LR = OptimConfig.lr  # the plain recipe's peak learning rate
# rows written before a column of the prior existed: 30-epoch fits on 1000 xTB frames 20 fs apart, seed 0
EARLIER_PRIOR = {"prior_epochs": 30, "prior_frames": 1000, "prior_frame_spacing_fs": 20.0, "prior_seed": 0}


def prior_of(row: dict, column: str):
    return row.get(column, EARLIER_PRIOR[column])


def run(args, steps: int, energy_weight: float, lr: float) -> dict:
    data = rmd17_dir(args.data)
    files = [data / f"rmd17_{args.molecule}_train_01.npz", data / f"rmd17_{args.molecule}_test_01.npz"]
    name = f"{args.molecule}-s{steps}" + ("" if energy_weight == 1 else f"e{energy_weight:g}") + ("" if lr == LR else f"lr{lr:g}")
    summary_path = Path(args.runs) / name / "summary.json"
    if not summary_path.exists():
        status, _, output = train_run([f"name={name}", f"output_dir={args.runs}", "seed=0", f"data.train={files[0]}",
                                       f"data.test={files[1]}", f"init={args.prior}", "device=cpu", f"optim.max_steps={steps}",
                                       f"optim.patience={steps}", f"optim.energy_weight={energy_weight}",
                                       f"optim.lr={lr}"])
        if status != 0:
            raise RuntimeError(f"{name} failed:\n{output}")
    summary = json.loads(summary_path.read_text())
    prior = json.loads((Path(args.prior).parent / "summary.json").read_text())  # the prior's own fit: how long, how good
    sampled = json.loads((Path(args.prior).parents[1] / "manifest.json").read_text())  # the prior's xTB MD
    spacing_fs = sampled["settings"]["interval"] * sampled["settings"]["timestep_fs"]
    compiled = yaml.safe_load((Path(args.prior).parent / "config.yaml").read_text())["optim"].get("compile", False)
    return {"molecule": args.molecule, "prior_epochs": prior["epochs"], "prior_frames": sampled["n_frames"], "prior_frame_spacing_fs": spacing_fs,
            "prior_seed": sampled["seed"],
            "prior_valid_xtb_forces_mae_meV_per_A": prior["valid"]["forces_mae_meV_per_A"],
            "prior_xtb_wall_s": round(sampled["xtb_wall_s"], 1), "prior_fit_wall_s": prior["train_wall_s"], "prior_compiled": compiled,
            "steps": steps, "energy_weight": energy_weight, "lr": lr, "best_epoch": summary["best_epoch"],
            "test_forces_mae_meV_per_A": summary["test"]["forces_mae_meV_per_A"], "test_energy_mae_meV": summary["test"]["energy_mae_meV"],
            "finetune_wall_s": summary["train_wall_s"],
            "provenance": provenance(models=[Path(args.runs) / name / "model.safetensors", args.prior], data=files)}


PRIOR_LABELS = {"prior_epochs": ", prior {} ep", "prior_frames": ", {} frames", "prior_frame_spacing_fs": " {:g} fs apart",
                "prior_seed": ", prior seed {}"}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    fig, axes = plt.subplots(1, len(molecules), figsize=(4.2 * len(molecules), 3.4), squeeze=False)
    for ax, molecule in zip(axes[0], molecules):
        mine = [r for r in rows if r["molecule"] == molecule]
        for r in mine:
            ax.scatter(r["test_energy_mae_meV"], r["test_forces_mae_meV_per_A"], color=f"C{sorted({m['steps'] for m in mine}).index(r['steps'])}")
            ax.annotate(f"{r['steps']}, E×{r['energy_weight']:g}" + ("" if r.get("lr", LR) == LR else f", lr {r['lr']:g}")
                        + "".join(label.format(r[column]) for column, label in PRIOR_LABELS.items()
                                  if prior_of(r, column) != EARLIER_PRIOR[column]) + (", compiled" if r.get("prior_compiled") else ""),
                        (r["test_energy_mae_meV"], r["test_forces_mae_meV_per_A"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("test energy MAE (meV)")
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(molecule)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", required=True)
    parser.add_argument("--prior", required=True, help="the molecule prior's checkpoint (anids-md prior ... -o DIR: DIR/prior-*/fit/model.safetensors)")
    parser.add_argument("--grid", nargs="+", default=["1000:1", "2000:1", "3000:1", "2000:10"],
                        help=f"STEPS:ENERGY_WEIGHT[:LR] (LR default {LR:g})")
    parser.add_argument("--runs", default="runs/prior-schedule")
    parser.add_argument("--out", default=str(OUT), help="results JSON (a grid on other priors belongs in a file of its own)")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    args = parser.parse_args()
    grid = [(int(s), float(w), float(lr[0]) if lr else LR) for s, w, *lr in (item.split(":") for item in args.grid)]
    new = [run(args, *point) for point in grid]
    out = Path(args.out)
    old = json.loads(out.read_text())["rows"] if out.exists() else []

    def key(r):
        return (r["molecule"], *(prior_of(r, column) for column in EARLIER_PRIOR), r["steps"], r["energy_weight"],
                r.get("lr", LR))  # rows without lr ran at LR

    done = {key(r) for r in new}
    rows = sorted([r for r in old if key(r) not in done] + new, key=key)
    out.write_text(json.dumps({"machine": machine(), "protocol": __doc__.split("\n\n")[0].replace("\n", " "), "rows": rows}, indent=1))
    plot(rows, out.with_suffix(".png"))
    for r in new:
        print(r["molecule"], r["prior_epochs"], r["steps"], r["energy_weight"], r["lr"], f"forces {r['test_forces_mae_meV_per_A']:.1f} meV/Å, "
              f"energy {r['test_energy_mae_meV']:.1f} meV")


if __name__ == "__main__":
    main()
