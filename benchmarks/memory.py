"""Memory of the calculator and of MD on large systems: the peak resident memory of one
energy+forces call per neighbour pair (the constant behind the calculator's out-of-memory
check), and the peak of `run_md` on 10 000 atoms beside that of the model's own call (the
bond check must add little: it follows the bonds found at the start, not every pair).

Systems: water at liquid density (0.0334 molecules/Å³, ~52 neighbours within 5 Å, the densest
molecular case), non-periodic cubes of rigid ASE water molecules on a jittered grid, with
`rmd17-ethanol` (it knows H and O). Each measurement runs in its own process, so that its peak
resident memory is its own.

    python benchmarks/memory.py [--sizes 1000 3000] [--md-atoms 10000] [--md-steps 4]

Writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import RESULTS, machine
from harness import provenance

MODEL = "rmd17-ethanol"
SPACING_A = 3.104  # (1 / 0.0334 molecules per Å³) ** (1/3): liquid water


def water(n_atoms: int):
    import numpy as np
    from ase import Atoms
    from ase.build import molecule

    n_molecules = -(-n_atoms // 3)
    side = int(np.ceil(n_molecules ** (1 / 3)))
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:n_molecules]) * SPACING_A
    rng = np.random.default_rng(0)
    template = molecule("H2O")
    atoms = Atoms()
    for origin in grid:
        m = template.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COP")
        m.translate(origin + rng.uniform(-0.1, 0.1, 3))
        atoms += m
    return atoms


def measure(kind: str, n_atoms: int, dtype: str, md_steps: int) -> dict:
    """In this process: RSS before the first call, its peak after one call (and after MD)."""
    import resource
    import time

    from anids_md import AniDSCalculator
    from anids_md.data import neighbour_list
    from anids_md.simulate import run_md

    def peak_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB

    atoms = water(n_atoms)
    calc = AniDSCalculator(MODEL, dtype=dtype, num_threads=1)
    edges = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, calc.cutoff + calc.skin)[0].shape[1]
    atoms.calc = calc
    before = peak_mib()
    start = time.perf_counter()
    atoms.get_forces()
    row = {"atoms": len(atoms), "edges_cutoff_plus_skin": int(edges), "neighbours": round(edges / len(atoms), 1), "dtype": dtype,
           "rss_before_call_MiB": round(before, 1), "peak_after_call_MiB": round(peak_mib(), 1),
           "call_s": round(time.perf_counter() - start, 2)}
    row["call_bytes_per_edge"] = round((row["peak_after_call_MiB"] - before) * 2**20 / edges)
    if kind == "md":
        start = time.perf_counter()
        report = run_md(atoms, "nve", 300.0, 0.5, md_steps, interval=1)
        row.update(md_steps=md_steps, md_s=round(time.perf_counter() - start, 1), bonds_tracked=int(len(report.bonds)),
                   peak_after_md_MiB=round(peak_mib(), 1), md_stopped=report.stopped)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--md-atoms", type=int, default=10000)
    parser.add_argument("--md-steps", type=int, default=4)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, n, dtype, steps = args.child
        print(json.dumps(measure(kind, int(n), dtype, int(steps))))
        return
    jobs = [("call", n, dtype) for n in args.sizes for dtype in ("float32", "float64")] + [("md", args.md_atoms, "float32")]
    rows, stamp = [], provenance(models=[MODEL])
    for kind, n, dtype in jobs:
        out = subprocess.run([sys.executable, __file__, "--child", kind, str(n), dtype, str(args.md_steps)], capture_output=True,
                             text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        row = {"measurement": kind, **json.loads(out.stdout.strip().splitlines()[-1]), "provenance": stamp}
        print(row, flush=True)
        rows.append(row)
    result = {"machine": machine(), "protocol": __doc__.split("\n\n")[1].replace("\n", " "), "rows": rows}
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS / 'memory.json'}")


if __name__ == "__main__":
    main()
