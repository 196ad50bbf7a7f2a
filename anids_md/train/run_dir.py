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


def check_run_dir(config) -> list[str]:
    """Refuse `config.run_dir` when it holds a run with other settings (naming the keys that
    differ), unless `config.resume` (continue it with the new settings, e.g. more epochs) or
    `config.overwrite` (start afresh). Writes nothing; returns the keys that differ."""
    run_dir = config.run_dir
    saved_path = run_dir / "config.yaml"
    if config.overwrite:
        return []
    if saved_path.exists():
        differing = config_differences(yaml.safe_load(saved_path.read_text()) or {}, config_to_dict(config))
        if differing and not config.resume:
            raise RunConflictError(
                f"{run_dir} holds a run with other settings ({', '.join(differing)} differ); add resume=true to continue "
                "it with the new settings, overwrite=true to start afresh, or choose another name=")
        return differing
    if (run_dir / "state.safetensors").exists() and not config.resume:
        raise RunConflictError(f"{run_dir} holds a run without saved settings; add resume=true to continue it or overwrite=true")
    return []


def claim_run_dir(config, writer: bool = True) -> None:
    """Check `config.run_dir` (see `check_run_dir`) and save the config in it, deleting an
    earlier run's files first with `config.overwrite`. Called once the inputs have been read
    and checked, so that a refused run never creates or claims its folder. `writer` is false
    on the processes of a data-parallel run that do not write files."""
    differing = check_run_dir(config)
    if differing:
        logger.warning("resume=true: continuing %s with changed settings: %s", config.run_dir, ", ".join(differing))
    if not writer:
        return
    if config.overwrite:
        for name in RUN_FILES:
            (config.run_dir / name).unlink(missing_ok=True)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(config.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))


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
