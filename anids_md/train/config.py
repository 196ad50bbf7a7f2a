"""Typed training configuration, loaded from YAML with `section.key=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..nn import ModelConfig


@dataclass
class DataConfig:
    train: str = ""  # rMD17 npz or any file ASE reads (labelled frames)
    test: str | None = None  # evaluated with the selected weights at the end, when given
    protocol: str | None = "rmd17-50"  # rmd17-50 | rmd17-1000 | null (seeded random split)
    n_train: int | None = None  # with protocol null: frames used (default all but n_valid)
    n_valid: int = 50  # with protocol null
    labels: str = "rmd17"  # rmd17 | md17 (original MD17 labels), npz only
    energy_unit: str | None = None  # unit of energies in non-npz files (eV if unset)
    reference_energies: str | None = None  # isolated-atom energies (extxyz); least squares if null


@dataclass
class OptimConfig:
    epochs: int = 500
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs)
    batch_size: int = 5
    lr: float = 5e-3
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.0
    energy_weight: float = 1.0  # on (ΔE / force_scale)^2 per structure
    forces_weight: float = 10.0  # on (ΔF / force_scale)^2 per component
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    patience: int = 100  # epochs without validation improvement before stopping


@dataclass
class TrainConfig:
    name: str = "model"
    output_dir: str = "runs"  # the run writes to output_dir/name
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _build(cls, values: dict, where: str):
    """A `cls` dataclass from a nested dict, refusing unknown keys with their location."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        target = values
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = yaml.safe_load(raw)
    return values


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file (optional) and command-line overrides."""
    values = {}
    if path is not None:
        with open(path) as handle:
            values = yaml.safe_load(handle) or {}
    values = apply_overrides(values, list(overrides))
    config = _build(TrainConfig, values, "config")
    if config.model.reference_energies:
        config.model.reference_energies = {int(z): float(e) for z, e in config.model.reference_energies.items()}
    return config


def config_to_dict(config: TrainConfig) -> dict:
    values = dataclasses.asdict(config)
    values["model"] = config.model.to_dict()
    return values
