"""A run folder: its saved settings (`config.yaml`), which decide whether a new command may
resume it, and its CSV log, which a resume trims back to the saved state."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import yaml

from ..atomic import write_text_atomically
from .config import config_differences, config_to_dict

logger = logging.getLogger(__name__)

RUN_FILES = ("state.safetensors", "best.safetensors", "model.safetensors", "log.csv", "summary.json", "config.yaml")


class RunConflictError(ValueError):
    """A run folder holds a run with other settings."""


def claim_run_dir(config, writer: bool = True) -> None:
    """Check `config.run_dir` before training there, and save the config in it.

    An unfinished or finished run there with other settings is refused (naming the keys that
    differ) unless `config.resume` (continue it with the new settings, e.g. more epochs) or
    `config.overwrite` (delete it and start afresh). `writer` is false on the processes of a
    data-parallel run that do not write files."""
    run_dir = config.run_dir
    saved_path = run_dir / "config.yaml"
    current = config_to_dict(config)
    if config.overwrite and writer:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    elif saved_path.exists():
        differing = config_differences(yaml.safe_load(saved_path.read_text()) or {}, current)
        if differing and not config.resume:
            raise RunConflictError(
                f"{run_dir} holds a run with other settings ({', '.join(differing)} differ); add resume=true to continue "
                "it with the new settings, overwrite=true to start afresh, or choose another name=")
        if not differing:
            return
        logger.warning("resume=true: continuing %s with changed settings: %s", run_dir, ", ".join(differing))
    elif (run_dir / "state.safetensors").exists() and not config.resume:
        raise RunConflictError(f"{run_dir} holds a run without saved settings; add resume=true to continue it or overwrite=true")
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(saved_path, yaml.safe_dump(current, sort_keys=False))


def open_log(path: Path, fields: list[str], step: int) -> None:
    """Start the CSV log of a fresh run (step 0), or trim a resumed run's log to the rows up to
    its saved `step`: a kill between a log write and the state save leaves a row the resumed
    run writes again."""
    rows = []
    if step > 0 and path.exists():
        with open(path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
