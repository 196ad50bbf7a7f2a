"""Accuracy on rMD17 (BENCHMARKS.md A): evaluate models on all of their test file, in float64,
and compare with published anchors. Usage:

    python benchmarks/accuracy.py rmd17-50-ethanol rmd17-50-aspirin rmd17-ethanol rmd17-aspirin

Each model is a shipped name, a checkpoint file or a run folder of `anids-md train`
(model.safetensors = EMA weights selected on validation); its test file is the one named in its
metadata, looked up in --data. Writes benchmarks/results/accuracy.json and accuracy.png.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from common import RESULTS, machine, rmd17_dir  # noqa: E402

from anids_md.checkpoint import load_checkpoint  # noqa: E402
from anids_md.data import read_structures  # noqa: E402
from anids_md.evaluation import evaluate  # noqa: E402

# Published force MAE (meV/Å), BENCHMARKS.md A.
ANCHORS = {
    ("aspirin", "rmd17-1000"): {"MACE": 6.6, "NequIP": 8.2},
    ("ethanol", "rmd17-1000"): {"MACE": 2.1, "NequIP": 2.8},
    ("aspirin", "rmd17-50"): {"MACE": 43.9, "NequIP": 52.0, "AniDS-EquiformerV2": 40.2},
    ("ethanol", "rmd17-50"): {"MACE": 32.6, "NequIP": 40.2},
}


def molecule_of(path: str) -> str:
    return Path(path).name.split("_")[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="shipped model names, checkpoint files or run folders")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--out", default=str(RESULTS / "accuracy.json"))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        model, metadata = load_checkpoint(Path(name) / "model.safetensors" if Path(name).is_dir() else name, dtype=torch.float64)
        training, results = metadata["training"], metadata["results"]
        test_file = str(rmd17_dir(args.data) / Path(results["test_file"]).name)
        metrics = evaluate(model, read_structures(test_file))
        molecule = molecule_of(test_file)
        rows.append({
            "name": name,
            "run": results["name"],
            "molecule": molecule,
            "protocol": training["protocol"],
            "seed": training["seed"],
            "n_train": training["n_train"],
            "n_valid": training["n_valid"],
            "test_file": test_file,
            **metrics,
            "steps": results["steps"],
            "epochs": results["epochs"],
            "best_epoch": results["best_epoch"],
            "train_wall_s": results["train_wall_s"],
            "train_device": results["device"],
            "train_threads": results["torch_threads"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "model": metadata["model"] | {"reference_energies": "see checkpoint"},
            "published_forces_mae_meV_per_A": ANCHORS.get((molecule, training["protocol"]), {}),
        })
        print(f"{molecule:10s} {training['protocol']:11s} force MAE {metrics['forces_mae_meV_per_A']:.2f} meV/Å, "
              f"energy MAE {metrics['energy_mae_meV']:.2f} meV  (published: {rows[-1]['published_forces_mae_meV_per_A']})")
    Path(args.out).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    plot(rows, Path(args.out).with_suffix(".png"))


def plot(rows, path):
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(rows), 4))
    labels, width = [], 0.2
    for k, row in enumerate(rows):
        bars = {"anids-md": row["forces_mae_meV_per_A"], **row["published_forces_mae_meV_per_A"]}
        for j, (name, value) in enumerate(bars.items()):
            ax.bar(k + (j - (len(bars) - 1) / 2) * width, value, width, color=f"C{j}", label=name if name not in labels else None)
            labels.append(name)
            ax.text(k + (j - (len(bars) - 1) / 2) * width, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [f"{r['molecule']}\n{r['protocol']}\n{r['name']}" for r in rows])
    ax.set_ylabel("force MAE on test_01 (meV/Å)")
    ax.set_title("rMD17 accuracy: anids-md vs published")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
