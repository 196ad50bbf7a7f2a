"""A lock on a folder that one process writes: two processes writing one training run, prior
or fit would interleave their logs, states and frames."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class FolderInUseError(RuntimeError):
    """Another live process owns the folder."""


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
def folder_lock(folder: Path, what: str = "fit"):
    """Own `folder` for the duration (a lock file `<what>.lock` in it): refused by name while
    another live process on this host holds it; a lock left by a killed process is taken over
    with a warning. `what` names the holder in messages: fit, train, prior."""
    name = f"{what}.lock"
    path, host = folder / name, socket.gethostname()
    mine = folder / f".{name}.{os.getpid()}"
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
                        f"{folder} is in use by another anids-md {what} (PID {owner[0]} on {owner[1]}); wait for it to finish "
                        f"or choose another folder (if that process is gone, delete {path})") from None
                logger.warning(f"taking over %s: the {what} that locked it (PID %s) is no longer running", folder,
                               owner[0] if owner else "unknown")
                path.unlink(missing_ok=True)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield path
    finally:
        if _owner(path) == (os.getpid(), host):
            path.unlink(missing_ok=True)
