"""Is a change of the code slower? The calculator's call and a training step of this checkout
against another source tree (e.g. a `git worktree` of an earlier commit), side by side: rounds
alternate between the two trees, each measurement in a fresh process, float32, one thread.

- call: ms per energy+forces call through AniDSCalculator on aspirin (rMD17 test frame 0 from
  tests/data), median of 200 calls after 20, each after a 0.01 Å random displacement;
- training step: ms per optimiser step of the energy+force loss (forces weight 100) on batches
  of 5 aspirin frames, median of 60 steps after 5.

    git worktree add /tmp/baseline <commit>
    python benchmarks/code_speed.py --baseline /tmp/baseline [--rounds 5]

Writes benchmarks/results/code_speed.json: per round and tree the two medians, and the ratio of
the medians over rounds (this checkout / baseline; below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, machine
from harness import REPO, git, provenance

PROBE = """
import json, time
import numpy as np, torch
from harness import median_call_ms
from anids_md import AniDSCalculator
from anids_md.checkpoint import load_checkpoint
from anids_md.data import collate, graph_from_atoms, read_rmd17
from anids_md.train.losses import energy_force_loss

torch.set_num_threads(1)
frames = read_rmd17("{data}", frames=slice(0, 30))
atoms = frames[0].copy()
atoms.calc = AniDSCalculator("{model}", dtype="float32")
rng = np.random.default_rng(0)

def call():
    atoms.positions = frames[0].positions + rng.normal(0, 0.01, atoms.positions.shape)
    atoms.get_forces()

call_ms = median_call_ms(call, calls=200, warmup=20)

model, _ = load_checkpoint("{model}")
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
graphs = [graph_from_atoms(a, model.config.cutoff, with_labels=True) for a in frames]
batches = [collate(graphs[k:k + 5]).to(dtype=torch.float32) for k in range(0, 30, 5)]
times = []
for k in range(65):
    start = time.perf_counter()
    loss = energy_force_loss(model, batches[k % len(batches)], 1.0, 100.0)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    times.append(time.perf_counter() - start)
print(json.dumps({{"call_ms": call_ms, "train_step_ms": 1e3 * float(np.median(times[5:]))}}))
"""


def measure(tree: Path, data: Path, model: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO / 'benchmarks'}", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(data=data, model=model)], env=env, capture_output=True, text=True,
                         check=True, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, type=Path, help="source tree to compare with (holds anids_md/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="rmd17-50-aspirin", help="shipped model name (each tree loads its own file)")
    args = parser.parse_args()
    data = REPO / "tests" / "data" / "rmd17_aspirin_test_01_first32.npz"
    trees = {"this checkout": REPO, "baseline": args.baseline.resolve()}
    rounds = []
    for k in range(args.rounds):
        for name, tree in trees.items():
            result = measure(tree, data, args.model)
            rounds.append({"round": k, "tree": name, **result})
            print(rounds[-1], flush=True)
    medians = {name: {key: statistics.median(r[key] for r in rounds if r["tree"] == name) for key in ("call_ms", "train_step_ms")}
               for name in trees}
    baseline_commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.baseline, capture_output=True, text=True).stdout.strip()
    stamp = {**provenance(models=[args.model], data=[data]), "baseline_commit": baseline_commit, "checkout_commit": git("rev-parse", "HEAD")}
    result = {
        "machine": machine(),
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "rows": [{**r, "provenance": stamp} for r in rounds],
        "medians": medians,
        "ratio_this_over_baseline": {key: medians["this checkout"][key] / medians["baseline"][key] for key in ("call_ms", "train_step_ms")},
    }
    (RESULTS / "code_speed.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["ratio_this_over_baseline"]))


if __name__ == "__main__":
    main()
