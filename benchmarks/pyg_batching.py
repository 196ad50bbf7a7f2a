"""Is torch-geometric's batching fast enough to use? Training throughput on rMD17 aspirin with a
hand-written join of graphs (what `collate` was) against `collate` on
`torch_geometric.data.Batch.from_data_list` (what PyG's DataLoader calls), everything else
identical: the same model, loss and optimiser step, alternating epochs in one process. Decision
rule (issue 9): use PyG if it is at most 5 % slower.

    python benchmarks/pyg_batching.py [--data DIR] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from common import RESULTS, machine, rmd17_dir

from anids_md.data import AtomicGraph, collate
from anids_md.train import Trainer, load_config
from anids_md.train.losses import energy_force_loss


def join(graphs: list[AtomicGraph]) -> AtomicGraph:
    """The hand-written join `collate` was before it used PyG (the baseline)."""
    offsets = np.cumsum([0] + [g.n_atoms for g in graphs[:-1]])
    return AtomicGraph(
        positions=torch.cat([g.positions for g in graphs]),
        numbers=torch.cat([g.numbers for g in graphs]),
        edge_index=torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1),
        shifts=torch.cat([g.shifts for g in graphs]),
        batch=torch.cat([torch.full((g.n_atoms,), k, dtype=torch.long) for k, g in enumerate(graphs)]),
        n_structures=len(graphs),
        energy=torch.cat([g.energy for g in graphs]),
        forces=torch.cat([g.forces for g in graphs]),
    )


def epoch(trainer: Trainer, make_batch, seed: int) -> tuple[float, float]:
    """(structures per second for the whole training step, seconds spent batching)."""
    o = trainer.config.optim
    order = np.random.default_rng(seed).permutation(len(trainer.train_graphs))
    batching = 0.0
    start = time.perf_counter()
    for first in range(0, len(order), o.batch_size):
        indices = order[first : first + o.batch_size]
        begin = time.perf_counter()
        batch = make_batch(indices).to(dtype=trainer.dtype)
        batching += time.perf_counter() - begin
        losses = energy_force_loss(trainer.model, batch, o.energy_weight, o.forces_weight)
        trainer.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        trainer.optimizer.step()
    return len(order) / (time.perf_counter() - start), batching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder of the rMD17 split files (default $ANIDS_RMD17 or ../shared/data/rmd17)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default=str(RESULTS / "pyg_batching.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = rmd17_dir(args.data)
    config = load_config("rmd17-1000", ["name=pyg-batching", "output_dir=/tmp/anids-pyg-batching", "overwrite=true", "device=cpu",
                                        f"data.train={data / 'rmd17_aspirin_train_01.npz'}", f"optim.batch_size={args.batch_size}"])
    trainer = Trainer(config, progress=False)
    graphs = trainer.train_graphs
    ways = {"hand-written join": lambda idx: join([graphs[i] for i in idx]),
            "collate (torch_geometric Batch)": lambda idx: collate([graphs[i] for i in idx])}
    # Same numbers either way.
    a, b = ways["hand-written join"]([0, 5, 9]), ways["collate (torch_geometric Batch)"]([0, 5, 9])
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("positions", "numbers", "edge_index", "shifts", "batch", "forces"))
    for make in ways.values():  # warm-up
        epoch(trainer, make, 0)
    rates = {name: [] for name in ways}
    batching = {name: [] for name in ways}
    for k in range(args.rounds):
        for name, make in ways.items():
            rate, seconds = epoch(trainer, make, k + 1)
            rates[name].append(rate)
            batching[name].append(seconds * 1e3 / len(graphs) * args.batch_size)
    result = {name: {"structures_per_s": statistics.median(rates[name]), "rounds": rates[name],
                     "ms_batching_per_batch": statistics.median(batching[name])} for name in ways}
    slowdown = 1 - result["collate (torch_geometric Batch)"]["structures_per_s"] / result["hand-written join"]["structures_per_s"]
    out = {"machine": machine(), "molecule": "aspirin", "frames": len(graphs), "batch_size": args.batch_size, "dtype": "float32",
           "threads": 1, "results": result, "pyg_slower_by": slowdown, "adopt": slowdown <= 0.05}
    with open(args.out, "w") as handle:
        json.dump(out, handle, indent=2)
    for name, r in result.items():
        print(f"{name:>22}: {r['structures_per_s']:.1f} structures/s, batching {r['ms_batching_per_batch']:.2f} ms per batch")
    print(f"torch_geometric slower by {100 * slowdown:.1f} %; wrote {args.out}")


if __name__ == "__main__":
    main()
