"""Molecule priors: before a fine-tune on a few expensive labels, learn the molecule's own
surface at a cheap level. For each molecule: its GFN2-xTB minimum; Langevin MD at the
temperature from several independent starts with xTB forces; the frames of those runs, with the
xTB energies and forces already computed along them; and a short fit on them (from `init`, or
from scratch). The fine-tune on DFT labels then starts from that model.

The frames land in a folder named by a digest of the molecules and the sampling settings, each
fit on them in a subfolder named by a digest of the fit's settings (epochs, init), so the same
prior asked for again is reused, a new fit reuses the frames, and a killed build resumes: MD
runs that finished are read back, the fit resumes from its saved state."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from .atomic import write_text_atomically
from .checkpoint import check_elements, read_metadata, resolve
from .data.shards import sha256_of
from .folder_lock import folder_lock
from .reference import XTBConvergenceError, XTBLevel, xtb_calculator
from .reference.xtb import check_xtb_structure
from .runtime import check_compiler, compiler_found, resolve_device
from .settings import PriorConfig
from .simulate import optimize, run_md
from .train.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class PriorReport:
    model: Path
    frames_file: Path
    n_frames: int
    n_failed_runs: int  # MD starts that xTB could not finish (SCF failures), skipped
    xtb_wall_s: float  # minimum and MD with xTB (summed over the runs, including earlier invocations)
    fit_wall_s: float
    valid_forces_mae_meV_per_A: float  # of the fit, on held-out xTB frames
    folder: Path
    compiled: bool  # the fit ran through torch.compile


def distinct_molecules(structures: list[Atoms]) -> list[Atoms]:
    """The first structure of each chemical formula, in order of appearance."""
    seen, molecules = set(), []
    for atoms in structures:
        formula = atoms.get_chemical_formula()
        if formula not in seen:
            seen.add(formula)
            molecules.append(Atoms(numbers=atoms.numbers, positions=atoms.positions))
    return molecules


FIT_FIELDS = ("epochs", "n_valid", "init", "compile")  # settings of the fit alone: changing them reuses the MD frames


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def prior_digest(molecules: list[Atoms], settings: PriorConfig, seed: int) -> str:
    """Names the folder of the prior's xTB frames: the molecules and the sampling settings."""
    sampling = {k: v for k, v in asdict(settings).items() if k not in FIT_FIELDS}
    return _digest({"molecules": [[a.numbers.tolist(), np.round(a.positions, 6).tolist()] for a in molecules],
                    "settings": sampling, "seed": seed})


def fit_digest(settings: PriorConfig, seed: int) -> str:
    """Names the folder of one fit on those frames; the checkpoint given as `init` (a file or a
    shipped model's name) enters by its content, so a retrained foundation is a new fit."""
    init = settings.init and sha256_of(resolve(settings.init))
    fit = {k: getattr(settings, k) for k in FIT_FIELDS if k != "compile" or settings.compile}  # uncompiled fits keep their names
    return _digest({"fit": fit, "init": init, "seed": seed})


def with_compile_resolved(settings: PriorConfig) -> PriorConfig:
    """`settings` with `compile` true or false: "auto" compiles on CPU where a C++ compiler is found
    (the fit runs on the device train picks). Checked before any MD: a missing compiler would
    otherwise stop the run at the fit."""
    device = resolve_device("auto")
    if settings.compile == "auto":
        return replace(settings, compile=device.type == "cpu" and compiler_found(device))
    if settings.compile:
        check_compiler(device)
    return settings


def xtb_minimum(atoms: Atoms, level: XTBLevel) -> Atoms:
    """`atoms` relaxed with xTB (LBFGS, fmax 0.01 eV/Å)."""
    check_xtb_structure(atoms)
    minimum = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    minimum.calc = xtb_calculator(level)
    result = optimize(minimum, fmax=0.01, optimizer="LBFGS", steps=1000)
    if not result.converged:
        logger.warning("the xTB optimisation of %s stopped before converging; sampling around its last structure",
                       atoms.get_chemical_formula())
    return Atoms(numbers=minimum.numbers, positions=minimum.positions)


def sample_with_xtb(minimum: Atoms, settings: PriorConfig, level: XTBLevel, seed: int, folder: Path, tag: str,
                    progress: bool, frames: int | None = None, temperature_K: float | None = None) -> tuple[list[Atoms], int, float]:
    """`frames` (default `settings.frames`) frames of `settings.starts` Langevin runs from `minimum`
    at `temperature_K` (default `settings.temperature_K`), labelled with the xTB energy and forces
    computed along them. A finished run is read back from its file; a run that xTB cannot finish
    is skipped and counted. Returns the frames, the failed runs and the xTB seconds spent now."""
    wanted = frames or settings.frames
    temperature_K = temperature_K or settings.temperature_K
    per_start = -(-wanted // settings.starts)
    keep_from = settings.equilibration_steps // settings.interval + 1  # recorded frames: steps 0, interval, ...
    kept, failed, seconds = [], 0, 0.0
    for start in range(settings.starts):
        done = folder / f"{tag}_run{start}.extxyz"
        if not done.exists():
            begin = time.perf_counter()
            atoms = minimum.copy()
            atoms.calc = xtb_calculator(level)
            partial = folder / f"{tag}_run{start}.partial.extxyz"
            try:
                report = run_md(atoms, "langevin", temperature_K, settings.timestep_fs,
                                settings.equilibration_steps + per_start * settings.interval, trajectory=partial,
                                interval=settings.interval, friction_per_fs=settings.friction_per_fs, seed=seed + 1000 * start,
                                progress=progress)
                problem = report.stopped or (None if report.stable else "bonds broke")
            except RuntimeError as error:  # tblite's SCF failures
                problem = f"xTB failed: {error}"
            seconds += time.perf_counter() - begin
            if problem:
                failed += 1
                logger.warning("xTB MD run %d of %s skipped: %s", start, tag, problem)
                partial.unlink(missing_ok=True)
                continue
            partial.rename(done)
        run = read(done, index=":")[keep_from:]
        kept.extend(run[:per_start])
    return kept[:wanted], failed, seconds


def build_prior(structures: list[Atoms], root: str | Path, settings: PriorConfig | None = None, seed: int = 0,
                progress: bool = True) -> PriorReport:
    """The molecule prior of the molecules among `structures` (one per formula), in
    `root`/prior-<digest>/; reused when it exists there."""
    s = settings or PriorConfig()
    level = XTBLevel(method=s.method)
    if not structures:
        raise ValueError("a molecule prior needs at least one structure")
    for atoms in structures:
        check_xtb_structure(atoms)  # named errors (periodic cells, elements xTB lacks) before any work
    molecules = distinct_molecules(structures)
    if s.init:  # the fit from a foundation needs elements it knows: said before any MD
        try:
            check_elements(read_metadata(s.init), [z for atoms in molecules for z in atoms.numbers])
        except ValueError as error:
            raise ValueError(f"the molecule prior starts from {s.init}: {error}; prior.init=null fits it from scratch") from None
    s = with_compile_resolved(s)
    folder = Path(root) / f"prior-{prior_digest(molecules, s, seed)}"
    fit_dir = folder / f"fit-{fit_digest(s, seed)}"  # before any MD: names a missing init
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder, "prior"):  # two builds of one prior would run the same MD twice and race on its files
        frames_file, manifest = _sample_frames(molecules, folder, s, level, seed, progress)
    # each fit has its own folder, locked by train: fits with other settings on these frames can run at once
    summary, model = fit_prior(frames_file, fit_dir, s, level, seed, progress)
    return PriorReport(model=model, frames_file=frames_file, n_frames=manifest["n_frames"],
                       n_failed_runs=manifest["n_failed_runs"], xtb_wall_s=round(manifest["xtb_wall_s"], 1),
                       fit_wall_s=summary["train_wall_s"], valid_forces_mae_meV_per_A=summary["valid"]["forces_mae_meV_per_A"],
                       folder=folder, compiled=s.compile)


def _sample_frames(molecules: list[Atoms], folder: Path, s: PriorConfig, level: XTBLevel, seed: int,
                   progress: bool) -> tuple[Path, dict]:
    """The prior's xTB frames in `folder` (made, or found) and their manifest."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"xtb_wall_s": 0.0}
    frames_file = folder / "xtb_frames.extxyz"
    if not frames_file.exists():
        frames, failed = [], 0
        for k, atoms in enumerate(molecules):
            begin = time.perf_counter()
            try:
                minimum = xtb_minimum(atoms, level)
                manifest["xtb_wall_s"] += time.perf_counter() - begin
                sampled, skipped, seconds = sample_with_xtb(minimum, s, level, seed, folder, f"molecule{k}", progress)
            except XTBConvergenceError as error:
                raise RuntimeError(f"xTB could not treat {atoms.get_chemical_formula()}: {error}") from None
            frames += sampled
            failed += skipped
            manifest["xtb_wall_s"] += seconds
        if len(frames) <= s.n_valid:
            raise RuntimeError(f"only {len(frames)} xTB frames were made ({failed} MD runs failed); the prior needs more than "
                               f"{s.n_valid}")
        write(frames_file, frames, format="extxyz")
        manifest.update(n_frames=len(frames), n_failed_runs=failed, formulae=[a.get_chemical_formula() for a in molecules],
                        level=asdict(level), settings=asdict(s), seed=seed)
        write_text_atomically(manifest_path, json.dumps(manifest, indent=2))
    return frames_file, json.loads(manifest_path.read_text())


def fit_prior(frames_file: Path, run_dir: Path, s: PriorConfig, level: XTBLevel, seed: int, progress: bool,
              model: tuple[str, ...] = ()) -> tuple[dict, Path]:
    """The prior's fit on xTB-labelled frames, in `run_dir` (resumed, or reused when it
    finished): its training summary and model file. `model` (e.g. "model.channels=64") sizes
    a prior fitted from scratch otherwise than the plain recipe."""
    from .train import load_config, train

    overrides = [f"output_dir={run_dir.parent}", f"name={run_dir.name}", f"data.train={frames_file}", "data.protocol=null", f"data.n_valid={s.n_valid}",
                 "data.reference_energies=null",  # fitted by least squares to the xTB energies
                 f"optim.epochs={s.epochs}", f"optim.patience={s.epochs}", f"seed={seed}", "resume=true", "denoise.kind=none",
                 f"optim.compile={str(s.compile).lower()}",
                 f"init={s.init or 'null'}",
                 "description=" + json.dumps(f"molecule prior: {level.label()} MD frames at {s.temperature_K:g} K"), *model]
    config = load_config(None, overrides)  # the package's defaults: the plain recipe's model and optimiser
    summary_path = config.run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else train(config, progress=progress)
    return summary, config.run_dir / "model.safetensors"


def train_with_prior(config: TrainConfig, progress: bool = True) -> dict:
    """`train(config)`, after building `config.prior` for the molecules of its training data
    (under `output_dir`/priors/) and starting from it; the summary gains the prior's cost."""
    from .data import read_structures
    from .train import train

    if config.prior is None:
        return train(config, progress)
    d = config.data
    structures = read_structures(d.train, energy_unit=d.energy_unit, labels=d.labels, energy_key=d.energy_key, forces_key=d.forces_key,
                                 forces_unit=d.forces_unit)
    report = build_prior(structures, Path(config.output_dir) / "priors", config.prior, config.seed, progress)
    logger.info("molecule prior: %d %s frames (%.0f s), fit %.0f s, held-out xTB forces %.1f meV/Å; %s", report.n_frames,
                config.prior.method, report.xtb_wall_s, report.fit_wall_s, report.valid_forces_mae_meV_per_A, report.model)
    summary = train(replace(config, init=str(report.model), prior=None), progress)
    summary["prior"] = {"model": str(report.model), "n_frames": report.n_frames, "n_failed_runs": report.n_failed_runs,
                        "xtb_wall_s": report.xtb_wall_s, "fit_wall_s": report.fit_wall_s, "fit_compiled": report.compiled,
                        "valid_xtb_forces_mae_meV_per_A": report.valid_forces_mae_meV_per_A}
    write_text_atomically(config.run_dir / "summary.json", json.dumps(summary, indent=2))  # the run's record includes the prior's cost
    return summary
