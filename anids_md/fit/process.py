"""What keeps a `fit` honest about its process: termination signals (SIGTERM, SIGHUP) turned
into an interrupt, so that the code that ends the DFT workers runs. Its output folder is locked
with `anids_md.folder_lock`."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP; handled as an interrupt."""


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
