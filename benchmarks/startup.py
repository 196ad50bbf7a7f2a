"""Start-up of the command line: wall seconds of `anids-md --help` and `anids-md rmsd a.xyz b.xyz`
for this checkout and, alternating with it, another source tree (e.g. a `git worktree` of an
earlier commit); median of 7 runs each, every run a fresh process.

    python benchmarks/startup.py [--baseline /tmp/baseline]

Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine
from harness import REPO, git, provenance


def seconds(tree: Path, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "anids_md.cli", *argv], env=env, capture_output=True, check=True, cwd="/")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="source tree to compare with (holds anids_md/)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from ase.build import molecule
    from ase.io import write

    folder = Path(tempfile.mkdtemp())
    a, b = molecule("CH3CH2OH"), molecule("CH3CH2OH")
    b.positions[0] += 0.1
    write(folder / "a.xyz", a)
    write(folder / "b.xyz", b)
    commands = {"--help": ["--help"], "rmsd": ["rmsd", str(folder / "a.xyz"), str(folder / "b.xyz")]}
    trees = {"this checkout": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    times = {(t, c): [] for t in trees for c in commands}
    for _ in range(args.runs):
        for tree_name, tree in trees.items():
            for name, argv in commands.items():
                times[(tree_name, name)].append(seconds(tree, argv))
    stamp = provenance()
    if args.baseline:
        stamp["baseline_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.baseline, capture_output=True, text=True).stdout.strip()
    stamp["checkout_commit"] = git("rev-parse", "HEAD")
    rows = [{"tree": t, "command": c, "median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v], "provenance": stamp}
            for (t, c), v in times.items()]
    (RESULTS / "startup.json").write_text(json.dumps({"machine": machine(), "protocol": __doc__.split("\n\n")[0].replace("\n", " "),
                                                      "rows": rows}, indent=1))
    for row in rows:
        print(f"{row['tree']:>14} {row['command']:>7}: {row['median_s']:.2f} s")


if __name__ == "__main__":
    main()
