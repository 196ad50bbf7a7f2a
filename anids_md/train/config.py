"""Typed training configuration, loaded from YAML with `section.key=value` overrides.

The dataclass defaults are the base recipe (the few-label `rmd17-50` recipe); a packaged recipe
or a user's YAML file holds only what differs from them, or from another recipe named by its
`base:` key. Values are type-checked, unknown keys refused, and nothing is changed after loading."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..nn import ModelConfig
from ..nn.generator import GeneratorConfig
from ..noise import NoiseConfig
from ..options import DENOISE_KINDS, DENOISE_MODES, LOSS_FORMS
from ..packaged import resolve_packaged
from ..settings import PriorConfig

# Model fields derived from the training data (or the checkpoint it starts from) and stored in
# the checkpoint: never a user's setting.
DERIVED_MODEL_KEYS = ("force_scale", "energy_shift", "reference_energies", "avg_num_neighbors")


def check_run_name(name: str) -> None:
    """A run's name is one folder inside output_dir: never a path that could leave it."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"name must be a plain folder name inside output_dir (no '/', '\\', '.' or '..'), got {name!r}")


@dataclass
class DataConfig:
    train: str = ""  # rMD17 npz or any file ASE reads (labelled frames)
    test: str | None = None  # evaluated with the selected weights at the end, when given
    protocol: str | None = "rmd17-50"  # rmd17-50 | rmd17-1000 | null (seeded random split)
    n_train: int | None = None  # with protocol null: frames used (default all but n_valid)
    n_valid: int = 50  # with protocol null
    labels: str = "rmd17"  # rmd17 | md17 (original MD17 labels), npz only
    energy_unit: str | None = None  # unit of energies in non-npz files (eV if unset)
    forces_unit: str | None = None  # unit of forces in non-npz files (energy_unit/Å if unset; e.g. Hartree/Bohr)
    energy_key: str = "energy"  # non-npz files: where the energy label is (info key, e.g. REF_energy)
    forces_key: str = "forces"  # non-npz files: where the forces are (array key, e.g. REF_forces)
    # isolated-atom energies: an extxyz file of single atoms, or a shipped set by name
    # ("pbe-def2svp": H, C, N, O at the rMD17 level); least squares on the training data if null
    reference_energies: str | None = None


@dataclass
class OptimConfig:
    epochs: int = 1000
    max_steps: int | None = None  # stop after this many optimiser steps (overrides epochs)
    # s: a wall-clock budget (training and validation, this process). The cosine is stretched over
    # the steps the measured rate fits into it, re-estimated every epoch and every 100 steps;
    # epochs/max_steps still cap it.
    max_wall_s: float | None = None
    batch_size: int = 5
    lr: float = 5e-3
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 0.0
    amsgrad: bool = False  # AdamW's AMSGrad variant (the step size never grows back; MACE's choice)
    energy_weight: float = 1.0  # on (ΔE / force_scale)^2 per structure
    # on (ΔF / force_scale)^2 per component; MACE's 100 against 10: aspirin rmd17-50 test forces
    # 65.0 vs 72.7 meV/Å, ethanol 43.7 vs 43.8 (vs_mace_screen.json)
    forces_weight: float = 100.0
    loss: str = "mse"  # mse | dens (energy L1, forces and denoising L2MAE; see train/losses.py)
    ema_decay: float = 0.995
    grad_clip: float = 10.0
    patience: int = 300  # epochs without validation improvement before stopping
    # which EMA weights the run keeps: those of the best validation epoch, or the last epoch's (no
    # early stopping). A refit of a few frames picks an early epoch on its few validation frames,
    # before it has fitted its training frames (see anids_md/fit's refits).
    keep: str = "best"
    # Also save the resumable state every this many steps inside an epoch (long epochs, such as
    # pretraining on all of QM9); by default only at the end of each epoch.
    checkpoint_steps: int | None = None
    # Run the energy + force loss through torch.compile (train/compiled.py): each step about 2x
    # faster on CPU (docs/performance.md) after a first step that compiles for about a minute. On
    # CPU it needs a C++ compiler. Energy + force training only (not with auxiliary denoising).
    compile: bool = False

    def __post_init__(self):
        if self.loss not in LOSS_FORMS:
            raise ValueError(f"optim.loss must be one of {LOSS_FORMS}, got {self.loss!r}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"optim.keep must be 'best' or 'last', got {self.keep!r}")
        counts = {"epochs": self.epochs, "batch_size": self.batch_size, "patience": self.patience, "max_steps": self.max_steps,
                  "checkpoint_steps": self.checkpoint_steps}
        for name, value in counts.items():
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"optim.{name} must be a whole number of at least 1, got {value!r}")
        for name in ("max_wall_s", "lr", "grad_clip"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"optim.{name} must be positive, got {value}")


@dataclass
class DenoiseConfig:
    """Auxiliary denoising during energy+force training (docs/method.md)."""

    kind: str = "none"  # none | fixed | isotropic | anisotropic | anisotropic-add: the noise model, or no denoising
    probability: float = 0.25  # p: share of structures that are corrupted
    atom_ratio: float = 0.25  # r: share of atoms corrupted in such a structure
    # λ_denoise at the start; decays linearly to 0 at the last step. None: optim.forces_weight / 32,
    # half DeNS's ratio of denoising to force weight (5 : 80). On rmd17-50 at forces weight 100 with
    # density mixing, λ 3.125 against 6.25: ethanol test forces 38.8 vs 40.6 meV/Å (3 seeds), aspirin
    # 56.3 vs 56.4 (2 seeds); λ 12.5 made ethanol 44.4 (vs_mace_screen.json). Earlier, without mixing,
    # λ 6.25 lowered the error by 6 % (aspirin) and 2 % (ethanol) against none; at forces weight 10
    # (λ 0.625) by nothing; a λ of 5 at forces weight 10 made it 30-50 % worse (results/ablation_*).
    weight: float | None = None
    # Å: the mean noise scale √(tr Σ_i / 3) over the training atoms. `fixed` noise is σ·I; a learned
    # generator keeps its per-atom shape (anisotropy, relative scales) and is rescaled to this mean.
    mean_scale_A: float = 0.05
    # separate (as Frad/SliDe): the clean batch is supervised as in plain training, and a second,
    # noisy pass trains only through the denoising loss; no label is put on a displaced structure.
    # dens (as DeNS/AniDS): one pass: energy on every structure, forces on uncorrupted atoms and
    # the denoising target on corrupted ones. Both measured equal within the seeds' spread on
    # rmd17-50 (benchmarks/results/denoise_modes_rmd17-50.json); separate never fits a label to a
    # displaced structure.
    mode: str = "separate"
    generator: str | None = None  # checkpoint holding the generator (default: `init`)
    # AniDS eq. 27: train the generator with the model (its covariances recomputed every step,
    # KL to N(0, mean_scale² I) and the γ hinge on the displaced atoms); frozen otherwise
    train_generator: bool = False
    kl_weight: float = 1.0  # λ_KL, with train_generator
    gamma_weight: float = 1.0  # λ_γ, with train_generator (anisotropic models)

    def __post_init__(self):
        for name in ("probability", "atom_ratio"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"denoise.{name} must be in (0, 1], got {value}")
        if self.kind not in DENOISE_KINDS:
            raise ValueError(f"denoise.kind must be one of {DENOISE_KINDS}, got {self.kind!r}")
        if not self.mean_scale_A > 0:
            raise ValueError(f"denoise.mean_scale_A must be positive (Å), got {self.mean_scale_A}")
        if self.weight is not None and not self.weight >= 0:
            raise ValueError(f"denoise.weight must be 0 or more, got {self.weight}")
        if self.train_generator and self.kind in ("none", "fixed"):
            raise ValueError(f"denoise.train_generator needs a learned noise model, not denoise.kind={self.kind}")
        if not (self.kl_weight >= 0 and self.gamma_weight >= 0):
            raise ValueError("denoise.kl_weight and denoise.gamma_weight must be 0 or more")
        if self.mode not in DENOISE_MODES:
            raise ValueError(f"denoise.mode must be one of {DENOISE_MODES}, got {self.mode!r}")


@dataclass
class TrainConfig:
    name: str = "model"
    output_dir: str = "runs"  # the run writes to output_dir/name
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"
    description: str = ""
    # checkpoint (or shipped name) whose architecture and weights start the training; model keys
    # that differ from its architecture are refused
    init: str | None = None
    # A run folder that already holds a run with other settings is refused unless one of these
    # is set: resume continues it with the new settings (e.g. more epochs), overwrite starts afresh.
    resume: bool = False
    overwrite: bool = False
    # density mixing: ethanol rmd17-50 test forces 41.1 vs 43.7 meV/Å at MACE's training time (vs_mace_screen.json)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(density_mixing=True))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    # a molecule prior built first and used as init (anids-md train builds it; anids_md.prior.train_with_prior)
    prior: PriorConfig | None = None

    def __post_init__(self):
        check_run_name(self.name)
        if self.prior is not None and self.init is not None:
            raise ValueError("prior: and init: both choose the starting weights; set prior.init to start the prior's fit from a checkpoint")
        if self.optim.compile and self.denoise.kind != "none":
            raise ValueError(f"optim.compile applies to energy + force training only; auxiliary denoising (denoise.kind="
                             f"{self.denoise.kind}) is not compiled: set one of them off")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


@dataclass
class PretrainDataConfig:
    source: str = "qm9"  # qm9 (from the qm9pack package) or a file of structures ASE reads
    qm9_dir: str | None = None  # folder of qm9pack's CSV files (default: the installed package's)
    elements: list[int] = field(default_factory=lambda: [1, 6, 7, 8, 9])  # keep molecules made of these
    max_atoms: int | None = None
    n_structures: int | None = None  # a seeded random subset of this many (default all)
    n_valid: int = 500


@dataclass
class PretrainConfig:
    """Denoising pretraining on equilibrium structures (METHOD.md §3.1): every atom corrupted,
    generator and denoiser trained together."""

    name: str = "pretrain"
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    description: str = ""
    resume: bool = False  # as in TrainConfig
    overwrite: bool = False
    model: ModelConfig = field(default_factory=lambda: ModelConfig(elements=[1, 6, 7, 8, 9], density_mixing=True))
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=10, batch_size=32, lr=4e-4, warmup_steps=200, patience=1000))

    def __post_init__(self):
        check_run_name(self.name)
        if self.optim.compile:
            raise ValueError("optim.compile applies to energy + force training (anids-md train); denoising pretraining is not compiled")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _build(cls, values: dict, where: str):
    """A `cls` dataclass from a nested dict, refusing unknown keys and values of the wrong type
    with their location."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    defaults = cls()
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        optional = [OPTIONAL_SECTIONS[t.strip()] for t in types[name].split("|") if t.strip() in OPTIONAL_SECTIONS]
        if dataclasses.is_dataclass(default) and not dataclasses.is_dataclass(value):
            # fill from the field's own default (e.g. the pretraining optimiser's), not the class's
            value = _build(type(default), {**_shallow(default), **value}, f"{where}.{name}")
        elif optional and isinstance(value, dict):  # a section that is off (null) unless given
            value = _build(optional[0], value, f"{where}.{name}")
        else:
            value = _typed(value, types[name], f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


OPTIONAL_SECTIONS = {"PriorConfig": PriorConfig}


def _typed(value, annotation: str, where: str):
    """`value` checked against a field's annotation ("int", "float | None", "list[int]", ...);
    YAML's strings for numbers without a dot ("1e-3") become floats."""
    allowed = {part.strip() for part in annotation.split("|")}
    if value is None:
        if "None" in allowed:
            return None
    elif "float" in allowed and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    elif "float" in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif any(_is(value, kind) for kind in allowed):
        return value
    elif "str" in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # name=2026
    names = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string", "None": "null"}
    expected = " or ".join(names.get(kind.split("[")[0], kind) for kind in sorted(allowed))
    raise ValueError(f"{where} must be {expected}, got {value!r}")


def _is(value, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind.startswith("list"):
        return isinstance(value, list) and (kind != "list[int]" or all(_is(v, "int") for v in value))
    if kind.startswith("dict"):
        return isinstance(value, dict)
    return True  # a type this check does not know: the dataclass's own checks decide


def _shallow(instance) -> dict:
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


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
            if not isinstance(target, dict):
                raise ValueError(f"override {item!r}: {part} is not a section")
        target[last] = yaml.safe_load(raw)
    return values


def _merge(base: dict, delta: dict) -> dict:
    """`base` with `delta`'s keys replacing its own, section by section."""
    merged = dict(base)
    for key, value in delta.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def read_recipe(path: str | Path, chain: tuple = ()) -> dict:
    """A recipe's values: a packaged recipe by name or a YAML file, on top of its `base:` (a
    recipe name or a file, resolved the same way)."""
    file = resolve_packaged(path, "configs", ".yaml", "config")
    if file in chain:
        raise ValueError(f"recipe {path}: its base: chain loops ({' -> '.join(map(str, chain))})")
    with open(file) as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path}: expected a mapping of settings")
    base = values.pop("base", None)
    return _merge(read_recipe(base, (*chain, file)), values) if base else values


def load_config(path: str | Path | None = None, overrides: list[str] = (), kind=TrainConfig):
    """A `kind` config (TrainConfig or PretrainConfig) from a YAML file or packaged recipe name
    (optional) and command-line overrides."""
    values = read_recipe(path) if path is not None else {}
    values = apply_overrides(values, list(overrides))
    model = values.get("model") or {}
    derived = sorted(set(model) & set(DERIVED_MODEL_KEYS))
    if derived:
        raise ValueError(f"{', '.join('model.' + k for k in derived)}: derived from the training data and stored in the "
                         "checkpoint, not a setting")
    config = _build(kind, values, "config")
    if kind is TrainConfig and config.init and model:
        _check_against_init(config.init, model)
    return config


def _check_against_init(init: str, model: dict) -> None:
    """With `init`, the architecture is the checkpoint's: a model key that says otherwise would
    be ignored, so it is refused by name."""
    from ..checkpoint import read_metadata

    try:
        stored = read_metadata(init)["model"]
    except FileNotFoundError:
        return  # reported with every other missing input file when training starts
    differing = [f"model.{k}={v!r} (the checkpoint has {stored.get(k)!r})" for k, v in model.items() if stored.get(k) != v]
    if differing:
        raise ValueError(f"init={init} fixes the architecture, and these settings differ from it: {', '.join(differing)}; "
                         "remove them, or train without init")


def config_to_dict(config) -> dict:
    """The settings as a run folder's config.yaml records them, loadable again with --config: the
    model section is the architecture trained (with `init`, the checkpoint's), without the keys
    derived from the data."""
    from ..checkpoint import read_metadata

    values = dataclasses.asdict(config)
    model = config.model.to_dict()
    if getattr(config, "init", None):
        try:
            model = read_metadata(config.init)["model"]
        except FileNotFoundError:
            pass  # reported with every other missing input file when training starts
    values["model"] = {k: v for k, v in model.items() if k not in DERIVED_MODEL_KEYS}
    return values


RUN_CONTROL = ("resume", "overwrite")  # how to start, not what is trained: never compared


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (run-control keys ignored)."""
    keys = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in RUN_CONTROL:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys
