"""How many torch threads for a calculator call? ms per energy+forces call of the shipped models
(float64, ASE calculator) with 1 and 2 threads, on an idle machine and with one core kept busy
by another process, as on a shared machine. The command line's --threads default comes from this.

    python benchmarks/threads.py
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import subprocess
import sys
import time

from common import RESULTS, machine

PROBE = """
import sys, time, torch
from ase.build import molecule
from anids_md import AniDSCalculator
from anids_md.data import read_rmd17
torch.set_num_threads(int(sys.argv[1]))
atoms = molecule("CH3CH2OH") if sys.argv[2] == "ethanol" else read_rmd17(sys.argv[3], frames=[0])[0]
atoms.calc = AniDSCalculator("rmd17-" + sys.argv[2], dtype="float64")
times = []
for k in range(220):
    atoms.positions[0, 0] += 1e-5
    start = time.perf_counter()
    atoms.get_forces()
    times.append(time.perf_counter() - start)
print(sorted(times[20:])[100] * 1e3)
"""


def busy() -> None:
    while True:
        pass


def main() -> None:
    from pathlib import Path

    aspirin = str(Path(__file__).resolve().parents[1] / "tests" / "data" / "rmd17_aspirin_test_01_first32.npz")
    rows = []
    for load in ("idle", "one core busy"):
        worker = multiprocessing.Process(target=busy, daemon=True) if load != "idle" else None
        if worker:
            worker.start()
            time.sleep(1)
        for molecule in ("ethanol", "aspirin"):
            for threads in (1, 2):
                runs = [float(subprocess.run([sys.executable, "-c", PROBE, str(threads), molecule, aspirin], capture_output=True,
                                             text=True, check=True).stdout) for _ in range(3)]
                rows.append({"load": load, "molecule": molecule, "threads": threads, "ms_per_call": statistics.median(runs),
                             "runs_ms": runs})
                print(f"{load:>14} {molecule:>8} {threads} thread(s): {statistics.median(runs):.2f} ms")
        if worker:
            worker.terminate()
    out = RESULTS / "threads.json"
    out.write_text(json.dumps({"machine": machine(), "protocol": "median of 200 warm calls (after 20), median of 3 processes; "
                               "float64 shipped models through AniDSCalculator", "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
