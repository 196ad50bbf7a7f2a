"""On a GPU: the calculator on CUDA against the CPU in float64 (energies and forces of rMD17
frames), and ms per call on the GPU. Needs a CUDA build of torch and a GPU.

    python benchmarks/cuda_consistency.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from harness import median_call_ms

from anids_md import AniDSCalculator
from anids_md.data import read_rmd17

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main() -> None:
    print(torch.__version__, torch.cuda.get_device_name())
    for name in ("ethanol", "aspirin"):
        atoms = read_rmd17(DATA / f"rmd17_{name}_test_01_first32.npz", frames=[0])[0]
        atoms.calc = None
        reference = atoms.copy()
        reference.calc = AniDSCalculator(f"rmd17-{name}", dtype="float64")
        for dtype in ("float32", "float64"):
            gpu = atoms.copy()
            gpu.calc = AniDSCalculator(f"rmd17-{name}", device="cuda", dtype=dtype)
            de = abs(gpu.get_potential_energy() - reference.get_potential_energy())
            df = np.abs(gpu.get_forces() - reference.get_forces()).max()

            def call(gpu=gpu):
                gpu.positions[0, 0] += 1e-5
                gpu.get_forces()

            print(f"{name} cuda {dtype}: |dE| {de:.2e} eV, max|dF| {df:.2e} eV/Å against CPU float64; "
                  f"median {median_call_ms(call, calls=200, warmup=20):.2f} ms per call")


if __name__ == "__main__":
    main()
