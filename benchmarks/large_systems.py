"""Large systems (issue: beat MACE): ms per energy+forces call, µs per atom and peak memory for
clusters of 1000 and 3000 atoms, anids-md (float32, 1 thread, eager and compiled) beside MACE
small (../shared/tools/peer_mace_speed.sh, random weights), each measurement in its own process
so that its peak resident memory is its own.

Clusters: aspirin molecules (rMD17 test frames, randomly rotated so that no two molecules come
closer than 1.8 Å) on a cubic grid 7 Å apart, non-periodic; the JSON gives the mean number of
neighbours within 5 Å.

    python benchmarks/large_systems.py [--sizes 1000 3000] [--no-peer]

Writes benchmarks/results/large_systems.json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import RESULTS, machine, rmd17_dir

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "tools" / "peer_mace_speed.sh"
SPACING_A = 7.0


def cluster(n_atoms: int, path: Path) -> tuple[int, float]:
    """Write a cluster of aspirin molecules with at least `n_atoms` atoms; returns its size and
    the mean number of neighbours within 5 Å. Each molecule gets the first of its random
    rotations that keeps it 1.8 Å from the molecules placed before it."""
    from ase import Atoms
    from ase.io import write
    from scipy.spatial import cKDTree
    from scipy.spatial.transform import Rotation

    from anids_md.data import read_rmd17

    n_molecules = math.ceil(n_atoms / 21)
    frames = read_rmd17(rmd17_dir() / "rmd17_aspirin_test_01.npz", frames=slice(0, n_molecules))
    side = math.ceil(n_molecules ** (1 / 3))
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:n_molecules]) * SPACING_A
    rotations = iter(Rotation.random(100 * n_molecules, random_state=0).as_matrix())
    placed = np.zeros((0, 3))
    numbers = []
    for atoms, origin in zip(frames, grid):
        centred = atoms.positions - atoms.positions.mean(axis=0)
        others = cKDTree(placed) if len(placed) else None
        for rotation in rotations:
            candidate = centred @ rotation.T + origin
            if others is None or others.query(candidate)[0].min() > 1.8:
                break
        else:
            raise RuntimeError(f"no rotation keeps molecule {len(numbers)} 1.8 Å from the others; use a larger spacing")
        placed = np.concatenate([placed, candidate])
        numbers.append(atoms.numbers)
    system = Atoms(numbers=np.concatenate(numbers), positions=placed)
    write(path, system)
    neighbours = (len(cKDTree(placed).query_pairs(5.0)) * 2) / len(system)
    return len(system), neighbours


# anids-md timed as speed.py times it, in a process of its own: BENCHMARKS_DIR STRUCTURE COMPILED CALLS
OURS = ("import json, sys; sys.path.insert(0, sys.argv[1]); from ase.io import read; from speed import time_calculator;"
        "ms, first = time_calculator(read(sys.argv[2]), 'rmd17-aspirin', 'float32', 1, sys.argv[3] == '1', int(sys.argv[4]));"
        "print(json.dumps({'ms_per_call_median': ms, 'first_call_s': first}))")


def measured(command: list[str]) -> dict:
    """Run `command` in a fresh process (through a wrapper whose only child it is); its last JSON
    line plus its peak resident memory in MiB."""
    wrapper = ("import resource, subprocess, sys; out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout;"
               "print(out.strip().splitlines()[-1]); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    lines = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True).stdout.splitlines()
    return {**json.loads(lines[-2]), "peak_memory_MiB": int(lines[-1]) / 1024}  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        path = Path(tempfile.gettempdir()) / f"anids_cluster_{size}.xyz"
        n, neighbours = cluster(size, path)
        here = str(Path(__file__).resolve().parent)
        runs = {"anids-md": [sys.executable, "-c", OURS, here, str(path), "0", str(args.calls)],
                "anids-md compiled": [sys.executable, "-c", OURS, here, str(path), "1", str(args.calls)]}
        if not args.no_peer:
            runs["MACE small"] = ["bash", str(PEER), str(path), "--size", "small", "--threads", "1", "--dtype", "float32",
                                  "--calls", str(args.calls)]
        for code, command in runs.items():
            result = measured(command)
            row = {"atoms": n, "neighbours_within_5A": round(neighbours, 1), "code": code, "ms_per_call": round(result["ms_per_call_median"], 1),
                   "us_per_atom": round(1e3 * result["ms_per_call_median"] / n, 1),
                   "peak_memory_MiB": round(result["peak_memory_MiB"]), "first_call_s": result.get("first_call_s")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"machine": machine(), "protocol": f"float32, 1 thread, median of {args.calls} calls after 5 warm-up calls (0.01 Å "
           "random displacements; speed.py's timing for anids-md), one process per measurement; model rmd17-aspirin; MACE small with random weights",
           "spacing_A": SPACING_A, "rows": rows}
    (RESULTS / "large_systems.json").write_text(json.dumps(out, indent=2))
    plot(rows, RESULTS / "large_systems.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for code in dict.fromkeys(r["code"] for r in rows):
        chosen = [r for r in rows if r["code"] == code]
        time_ax.plot([r["atoms"] for r in chosen], [r["us_per_atom"] for r in chosen], "o-", label=code)
        memory_ax.plot([r["atoms"] for r in chosen], [r["peak_memory_MiB"] for r in chosen], "o-", label=code)
    time_ax.set(xlabel="atoms", ylabel="µs per atom per call", title="aspirin clusters, float32, 1 thread")
    memory_ax.set(xlabel="atoms", ylabel="peak resident memory (MiB)")
    time_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
