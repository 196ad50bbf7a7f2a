"""DFT labels (energy, forces) for many structures in parallel, through any
`concurrent.futures.Executor`: a local process pool, or a Dask cluster's executor for users who
outgrow one machine. Each result enters the DFT cache as its worker finishes, so a killed run
recomputes nothing it already had."""

from __future__ import annotations

import os
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from ..validate.dft import DFTLevel, dft_single_point

EXECUTORS = ("local", "dask")


def _limit_threads(threads: int) -> None:
    # Before PySCF or torch start their thread pools in the worker.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def make_executor(kind: str = "local", workers: int = 1, threads: int = 1, scheduler: str | None = None) -> Executor:
    """`local`: `workers` processes with `threads` threads each (spawned, so no forked thread
    pool can hang); `dask`: the executor of the cluster at `scheduler` (pip install distributed)."""
    if kind == "local":
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be positive, got {workers} and {threads}")
        return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_limit_threads, initargs=(threads,))
    if kind == "dask":
        if not scheduler:
            raise ValueError("the dask executor needs the address of a running scheduler (--scheduler tcp://HOST:8786)")
        return DaskExecutor(scheduler)
    raise ValueError(f"unknown executor {kind!r}; choose one of {EXECUTORS}")


class DaskExecutor(Executor):
    """The executor of a Dask cluster's client; shutting it down also closes the client."""

    def __init__(self, scheduler: str):
        try:
            from distributed import Client
        except ImportError:
            raise ImportError("the dask executor needs Dask: pip install 'anids-md[dask]'") from None
        self.client = Client(scheduler)
        self.executor = self.client.get_executor()

    def submit(self, fn, /, *args, **kwargs):
        return self.executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, **kwargs) -> None:
        self.executor.shutdown(wait=wait)
        self.client.close()


def label_structures(frames: list[Atoms], level: DFTLevel, executor: Executor, cache_dir: str | Path | None = None,
                     progress: bool = True, desc: str = "DFT labels") -> tuple[list[Atoms], int]:
    """The frames with their DFT energy and forces attached (SinglePointCalculator, eV and
    eV/Å), in the given order, and how many were computed rather than found in the cache."""
    futures = {executor.submit(dft_single_point, Atoms(numbers=a.numbers, positions=a.positions), level, cache_dir): k
               for k, a in enumerate(frames)}
    labelled: list[Atoms | None] = [None] * len(frames)
    computed = 0
    for future in tqdm(as_completed(futures), total=len(futures), disable=not progress, desc=desc, unit="frame"):
        result = future.result()
        atoms = result.atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=result.energy_eV, forces=result.forces_eV_per_A)
        labelled[futures[future]] = atoms
        computed += not result.cached
    return labelled, computed
