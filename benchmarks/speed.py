"""Speed (BENCHMARKS.md C): ms per energy+forces call on aspirin through the ASE calculator,
float32 and float64, 1 and 2 threads, and compiled (`compile=True`, 1 thread), alternating in one run with MACE small timed by
../shared/tools/peer_mace_speed.sh (same protocol: 0.01 Å random displacements, median of 50
warm calls); MD steps per second; training throughput (structures/s, aspirin, batch 8).

    python benchmarks/speed.py [--rounds 3] [--no-peer]

Writes benchmarks/results/speed.json and speed.png.
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.io import write  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from common import RESULTS, machine, rmd17_dir  # noqa: E402
from harness import median_call_ms, provenance  # noqa: E402

from anids_md import AniDSCalculator  # noqa: E402
from anids_md.checkpoint import load_checkpoint  # noqa: E402
from anids_md.data import collate, graph_from_atoms, read_rmd17  # noqa: E402
from anids_md.train.losses import energy_force_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "tools" / "peer_mace_speed.sh"


def time_calculator(atoms, model, dtype, threads, compiled=False, calls=50):
    """Median ms per warm call, and the first call's seconds (the compilation, when compiled)."""
    torch.set_num_threads(threads)
    atoms = atoms.copy()
    atoms.calc = AniDSCalculator(model, dtype=dtype, compile=compiled)
    rng = np.random.default_rng(0)
    base = atoms.positions.copy()

    def call():
        atoms.positions = base + 0.01 * rng.standard_normal(base.shape)
        atoms.get_forces()

    start = time.perf_counter()
    call()
    first_s = time.perf_counter() - start
    return median_call_ms(call, calls=calls, warmup=4), first_s


def time_peer(structure, dtype, threads):
    out = subprocess.run(["bash", str(PEER), str(structure), "--size", "small", "--threads", str(threads), "--dtype", dtype],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def md_steps_per_second(atoms, model, dtype, steps=200):
    torch.set_num_threads(1)
    atoms = atoms.copy()
    atoms.calc = AniDSCalculator(model, dtype=dtype)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(10)
    start = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - start)


def training_throughput(model_name, train_file: Path, threads, batch_size=8, steps=30):
    torch.set_num_threads(threads)
    model, _ = load_checkpoint(model_name)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    frames = read_rmd17(train_file, frames=slice(0, batch_size * steps))
    graphs = [graph_from_atoms(a, model.config.cutoff, with_labels=True) for a in frames]
    batches = [collate(graphs[k : k + batch_size]).to(dtype=torch.float32) for k in range(0, len(graphs), batch_size)]
    def step(batch):
        loss = energy_force_loss(model, batch, 1.0, 10.0)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for batch in batches[:3]:
        step(batch)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    return len(graphs) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rmd17-aspirin")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    args = parser.parse_args()
    data = rmd17_dir(args.data)
    test_file, train_file = data / "rmd17_aspirin_test_01.npz", data / "rmd17_aspirin_train_01.npz"
    (atoms,) = read_rmd17(test_file, frames=[0])
    atoms.calc = None
    structure = Path(tempfile.gettempdir()) / "anids_speed_aspirin.xyz"
    write(structure, atoms)
    settings = [(dtype, threads, False) for threads in (1, 2) for dtype in ("float32", "float64")]
    settings += [("float32", 1, True), ("float64", 1, True)]
    ours = {s: [] for s in settings}
    first_call_s = {s: [] for s in settings}
    peer = {s: [] for s in settings}
    for round_ in range(args.rounds):  # alternate: ours, MACE, ours, MACE ...
        for setting in settings:
            dtype, threads, compiled = setting
            ms, first = time_calculator(atoms, args.model, dtype, threads, compiled)
            ours[setting].append(ms)
            first_call_s[setting].append(first)
            if not args.no_peer:  # MACE eager in every setting: its compiled path is not what users run
                peer[setting].append(time_peer(structure, dtype, threads)["ms_per_call_median"])
            print(f"round {round_}: {dtype} {threads} thread(s){' compiled' if compiled else ''}: anids-md {ms:.2f} ms"
                  + ("" if args.no_peer else f", MACE small {peer[setting][-1]:.2f} ms"), flush=True)
    calls, stamp = [], provenance(models=[args.model], data=[test_file, train_file])
    for setting in settings:
        dtype, threads, compiled = setting
        row = {"dtype": dtype, "threads": threads, "compiled": compiled, "anids_md_ms_per_call": statistics.median(ours[setting]),
               "anids_md_rounds_ms": ours[setting], "first_call_s": first_call_s[setting]}
        if not args.no_peer:
            row |= {"mace_small_ms_per_call": statistics.median(peer[setting]), "mace_small_rounds_ms": peer[setting]}
            row["speedup_vs_mace_small"] = row["mace_small_ms_per_call"] / row["anids_md_ms_per_call"]
        calls.append({**row, "provenance": stamp})
    throughput = [{"quantity": "velocity-Verlet MD steps per second", "dtype": dtype, "threads": 1,
                   "value": md_steps_per_second(atoms, args.model, dtype), "provenance": stamp} for dtype in ("float32", "float64")]
    throughput += [{"quantity": "training structures per second, batch 8", "dtype": "float32", "threads": t,
                    "value": training_throughput(args.model, train_file, t), "provenance": stamp} for t in (1, 2)]
    model, _ = load_checkpoint(args.model)
    result = {
        "machine": machine(),
        "structure": "aspirin (21 atoms), rmd17_aspirin_test_01 frame 0",
        "model": args.model,
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "model_config": {k: v for k, v in model.config.to_dict().items() if k != "reference_energies"},
        "protocol": "ASE calculator get_forces after 0.01 Å random displacements; median of 50 warm calls per round; "
                    "median over rounds; anids-md and MACE small (random weights) alternate in each round; first_call_s is the "
                    "first call of each round (with compile=True: the compilation, from torch's on-disk cache after round 0)",
        "calls": calls,
        "throughput": throughput,
        "provenance": stamp,  # the whole file's too: model_config and the text above come from the same run
    }
    (RESULTS / "speed.json").write_text(json.dumps(result, indent=2))
    plot(calls, RESULTS / "speed.png", not args.no_peer)
    print(json.dumps({"calls": calls, "throughput": throughput}, indent=2))


def plot(calls, path, with_peer):
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(calls))
    ax.bar(x - 0.2, [c["anids_md_ms_per_call"] for c in calls], 0.4, label="anids-md")
    if with_peer:
        ax.bar(x + 0.2, [c["mace_small_ms_per_call"] for c in calls], 0.4, label="MACE small")
    ax.axhline(5.0, color="k", ls="--", lw=0.8, label="target 5 ms (float32, 1 thread)")
    ax.set_xticks(x, [f"{c['dtype']}\n{c['threads']} thread(s){chr(10) + 'compiled' if c['compiled'] else ''}" for c in calls])
    ax.set_ylabel("ms per energy+forces call")
    ax.set_title("aspirin, ASE calculator, CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
