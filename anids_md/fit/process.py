"""What keeps a `fit` honest about its process: a lock on its output folder (two fits writing
one folder would interleave their frames and corrupt the report), and termination signals
(SIGTERM, SIGHUP) turned into an interrupt, so that the code that ends the DFT workers runs."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = "fit.lock"


class FolderInUseError(RuntimeError):
    """Another live `fit` owns the output folder."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP; handled as an interrupt."""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def _owner(path: Path) -> tuple[int, str] | None:
    """(PID, host) written in a lock file, or None when it cannot be read."""
    try:
        pid, host = path.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


@contextmanager
def folder_lock(folder: Path):
    """Own `folder` for the duration: refused by name while another live process on this host
    holds it; a lock left by a killed process is taken over with a warning."""
    path, host = folder / LOCK_NAME, socket.gethostname()
    mine = folder / f".{LOCK_NAME}.{os.getpid()}"
    mine.write_text(f"{os.getpid()} {host}\n")
    try:
        while True:
            try:
                os.link(mine, path)  # atomic: the lock appears with its owner already written in it
                break
            except FileExistsError:
                owner = _owner(path)
                if owner is not None and (owner[1] != host or _running(owner[0])):
                    raise FolderInUseError(
                        f"{folder} is in use by another anids-md fit (PID {owner[0]} on {owner[1]}); wait for it to finish "
                        f"or choose another output folder (if that process is gone, delete {path})") from None
                logger.warning("taking over %s: the fit that locked it (PID %s) is no longer running", folder,
                               owner[0] if owner else "unknown")
                path.unlink(missing_ok=True)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield path
    finally:
        if _owner(path) == (os.getpid(), host):
            path.unlink(missing_ok=True)


@contextmanager
def termination_as_interrupt():
    """Within the block, SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt), so that
    `finally` clauses run, as they do for Ctrl-C. Only the main thread can install handlers;
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Terminated(f"received {signal.Signals(signum).name}")

    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {name: signal.signal(getattr(signal, name), interrupt) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
