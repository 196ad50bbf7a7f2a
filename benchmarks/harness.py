"""What every benchmark script shares: the provenance stamped on each result row, the call timer
and the training launcher. Importing it does no work."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()


def provenance(models=(), data=()) -> dict:
    """Who made a row: the commit (and whether the package's files differed from it), the
    package version, the command and the time, and the sha256 of every model (file or shipped
    name) and data file it used."""
    from anids_md.checkpoint import resolve
    from anids_md.version import __version__

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "anids_md")),
        "package_version": __version__,
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": {str(m): sha256(resolve(m)) for m in models},
        "data": {Path(d).name: sha256(d) for d in data},
    }


def median_call_ms(call, calls: int = 50, warmup: int = 5) -> float:
    """Median wall time of `call()` in ms over `calls` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def train_run(overrides: list[str], config: str = "rmd17-50", threads: int = 1) -> tuple[int, float, str]:
    """`anids-md train --config CONFIG OVERRIDES` in its own process with `threads` threads:
    (exit status, wall seconds, the last lines it printed)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "anids_md.cli", "train", "--config", config, "--quiet", f"--threads={threads}", *overrides]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return done.returncode, time.perf_counter() - start, (done.stdout + done.stderr)[-2000:]
