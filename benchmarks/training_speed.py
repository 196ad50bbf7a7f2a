"""Training throughput with and without auxiliary denoising (target ≤ 15 % overhead), and with
the energy + force loss through torch.compile (`optim.compile`): rMD17 aspirin, the recipe's
batch of 5, float32, epochs of each arm's trainer alternating in one process, so all see the same
machine state. Denoising arms include the denoising head; the compiled arm compiles in its
warm-up.

    python benchmarks/training_speed.py --generator runs/qm9-anisotropic/model.safetensors
    python benchmarks/training_speed.py --arms none "none, compiled" --out benchmarks/results/training_speed_compiled.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import RESULTS, machine, rmd17_dir
from harness import provenance

from anids_md.train import Trainer, load_config

REPO = Path(__file__).resolve().parents[1]


ARMS = {
    "none": ["denoise.kind=none"],
    "none, compiled": ["denoise.kind=none", "optim.compile=true"],  # optim.compile: torch.compile (train/compiled.py)
    "fixed, separate": ["denoise.kind=fixed", "denoise.mode=separate"],
    "anisotropic, separate": ["denoise.kind=anisotropic", "denoise.mode=separate"],
    "anisotropic, dens mode": ["denoise.kind=anisotropic", "denoise.mode=dens"],
}


def trainer(args, arm: str) -> Trainer:
    data = rmd17_dir(args.data)
    overrides = [f"name=speed-{arm.replace(', ', '-').replace(' ', '_')}", "output_dir=/tmp/anids-training-speed", "device=cpu",
                 f"data.train={data / 'rmd17_aspirin_train_01.npz'}", "data.test=null", "data.protocol=rmd17-1000",
                 "data.reference_energies=pbe-def2svp", "optim.epochs=1000", "overwrite=true", *ARMS[arm]]
    if "denoise.kind=anisotropic" in ARMS[arm]:
        overrides.append(f"denoise.generator={args.generator}")
    return Trainer(load_config("rmd17-50", overrides), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="runs/qm9-anisotropic/model.safetensors")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "training_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    trainers = {arm: trainer(args, arm) for arm in args.arms}
    n = len(next(iter(trainers.values())).train_graphs)
    warmup_s = {}
    for noise, t in trainers.items():  # warm-up (the compiled arm compiles here)
        t.progress_state["step"] = t.total_steps - 5
        start = time.perf_counter()
        t.train_epoch(0)
        warmup_s[noise] = time.perf_counter() - start
    rates = {noise: [] for noise in trainers}
    for k in range(args.rounds):
        for noise, t in trainers.items():
            t.progress_state["step"] = 0
            start = time.perf_counter()
            t.train_epoch(k + 1)
            rates[noise].append(n / (time.perf_counter() - start))
    result = {noise: {"structures_per_s": statistics.median(r), "rounds": r, "first_5_steps_s": round(warmup_s[noise], 1)}
              for noise, r in rates.items()}
    base = result["none"]["structures_per_s"] if "none" in result else None
    for noise, r in result.items():
        if base:
            r["overhead_vs_none"] = base / r["structures_per_s"] - 1.0
        print(f"{noise:24s} {r['structures_per_s']:7.1f} structures/s" + (f"  overhead {100 * r['overhead_vs_none']:+.1f} %" if base else ""))
    Path(args.out).write_text(json.dumps({"settings": {"molecule": "aspirin", "batch_size": 5, "dtype": "float32",
                                                       "threads": args.threads, "epoch_structures": n,
                                                       "denoise": "p = 0.25, r = 0.25"},
                                          "results": result, "machine": machine(),
                                          "provenance": provenance(models=[args.generator] if any("anisotropic" in a for a in args.arms) else [],
                                                                   data=[rmd17_dir(args.data) / "rmd17_aspirin_train_01.npz"])},
                                         indent=2))


if __name__ == "__main__":
    main()
