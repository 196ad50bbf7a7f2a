"""Reference labels (energy, forces; DFT or xTB) for many structures in parallel, through any
`concurrent.futures.Executor`: a local process pool, or a Dask cluster's executor for users who
outgrow one machine. Each result enters the DFT cache as its worker finishes, so a killed run
recomputes nothing it already had."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from ..options import EXECUTORS
from . import SCF_FAILURES, Level, single_point

logger = logging.getLogger(__name__)


def _start_worker(threads: int, parent: int) -> None:
    """In each local worker, before PySCF or torch start their thread pools: limit the threads,
    and end the worker when its parent is gone (killed with -9, it could not end the workers)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="anids-md-parent-watch").start()


def make_executor(kind: str = "local", workers: int = 1, threads: int = 1, scheduler: str | None = None) -> Executor:
    """`local`: `workers` processes with `threads` threads each (spawned, so no forked thread
    pool can hang); `dask`: the executor of the cluster at `scheduler` (pip install distributed)."""
    if kind == "local":
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be positive, got {workers} and {threads}")
        return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(threads, os.getpid()))
    if kind == "dask":
        if not scheduler:
            raise ValueError("the dask executor needs the address of a running scheduler (--scheduler tcp://HOST:8786)")
        return DaskExecutor(scheduler)
    raise ValueError(f"unknown executor {kind!r}; choose one of {EXECUTORS}")


@contextmanager
def labelling_pool(kind: str = "local", workers: int = 1, threads: int = 1, scheduler: str | None = None):
    """`make_executor`'s executor for the block. Left normally, it is shut down after its work;
    left by an exception or an interrupt, queued work is cancelled and local workers are ended
    at once (finished labels are already in the DFT cache)."""
    executor = make_executor(kind, workers, threads, scheduler)
    try:
        yield executor
    except BaseException:
        abort_executor(executor)
        raise
    executor.shutdown()


def abort_executor(executor: Executor, grace_s: float = 2.0) -> None:
    """Cancel queued work and end running work now: local worker processes are terminated
    (killed if they linger), a Dask executor's futures cancelled and its client closed."""
    processes = list((getattr(executor, "_processes", None) or {}).values())  # ProcessPoolExecutor's workers
    executor.shutdown(wait=False, cancel_futures=True)
    call_queue = getattr(executor, "_call_queue", None)
    if call_queue is not None:  # its feeder thread must not hold up the exit writing to workers that are gone
        call_queue.cancel_join_thread()
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(grace_s)
        if process.is_alive():
            process.kill()


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

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.executor.shutdown(wait=wait and not cancel_futures)  # Dask's executor cancels pending work when not waiting
        self.client.close()


def submit_labels(frames: list[Atoms], level: Level, executor: Executor, cache_dir: str | Path | None = None) -> dict:
    """Start labelling `frames` on the executor; `collect_labels` waits for them. Other work can
    run in between (fit fits its molecule prior while the first frames are labelled)."""
    return {executor.submit(single_point, Atoms(numbers=a.numbers, positions=a.positions), level, cache_dir): k
            for k, a in enumerate(frames)}


def collect_labels(futures: dict, progress: bool = True, desc: str = "DFT labels") -> tuple[list[Atoms], int, int]:
    """The frames of `submit_labels` with their reference energy and forces attached
    (SinglePointCalculator, eV and eV/Å), in the given order, how many were computed rather than
    found in the cache, and how many were left out because their SCF did not converge (never
    labelled with a wrong number)."""
    labelled: list[Atoms | None] = [None] * len(futures)
    computed = failed = 0
    try:
        for future in tqdm(as_completed(futures), total=len(futures), disable=not progress, desc=desc, unit="frame"):
            try:
                result = future.result()
            except SCF_FAILURES as error:
                failed += 1
                logger.warning("frame %d left out: %s", futures[future], error)
                continue
            atoms = result.atoms.copy()
            atoms.calc = SinglePointCalculator(atoms, energy=result.energy_eV, forces=result.forces_eV_per_A)
            labelled[futures[future]] = atoms
            computed += not result.cached
    except BaseException:  # an interrupt or a failed label: queued frames are not computed
        for future in futures:
            future.cancel()
        raise
    return [a for a in labelled if a is not None], computed, failed


def label_structures(frames: list[Atoms], level: Level, executor: Executor, cache_dir: str | Path | None = None,
                     progress: bool = True, desc: str = "DFT labels") -> tuple[list[Atoms], int, int]:
    """`frames` labelled on the executor: `collect_labels` of `submit_labels`."""
    return collect_labels(submit_labels(frames, level, executor, cache_dir), progress, desc)
