"""Molecule priors: before a fine-tune on a few expensive labels, learn the molecule's own
surface at a cheap level. For each molecule: its GFN2-xTB minimum; Langevin MD at the
temperature from several independent starts with xTB forces; the frames of those runs, with the
xTB energies and forces already computed along them; and a short fit on them (from `init`, or
from scratch). The fine-tune on DFT labels then starts from that model.

Everything lands in one folder named by a digest of the molecules and the settings, so the same
prior asked for again is reused, and a killed build resumes: MD runs that finished are read
back, the fit resumes from its saved state."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from .atomic import write_text_atomically
from .reference import XTBConvergenceError, XTBLevel, xtb_calculator
from .reference.xtb import check_xtb_structure
from .simulate import optimize, run_md

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorSettings:
    """How a molecule prior is built (lengths Å, times fs, temperatures K)."""

    level: XTBLevel = field(default_factory=XTBLevel)
    temperature_K: float = 500.0
    frames: int = 1000  # per molecule, spread over the starts
    starts: int = 4  # independent MD runs from the minimum, each with its own velocities
    equilibration_steps: int = 2000  # 1 ps of 0.5 fs steps before a run's frames are kept
    interval: int = 40  # MD steps between kept frames (20 fs)
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    epochs: int = 60  # of the fit on the xTB frames
    n_valid: int = 50  # xTB frames held out to select the fit's best epoch
    init: str | None = None  # checkpoint the fit starts from (None: from scratch)
    seed: int = 0

    def __post_init__(self):
        for name in ("frames", "starts", "equilibration_steps", "interval", "epochs", "n_valid"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= (0 if name == "equilibration_steps" else 1)):
                raise ValueError(f"prior.{name} must be a whole number of at least {0 if name == 'equilibration_steps' else 1}, got {value!r}")
        if not self.temperature_K > 0 or not self.timestep_fs > 0:
            raise ValueError("prior.temperature_K and prior.timestep_fs must be positive")
        if self.frames <= self.n_valid:
            raise ValueError(f"prior.frames ({self.frames}) must exceed prior.n_valid ({self.n_valid})")

    def to_dict(self) -> dict:
        return asdict(self)


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


def distinct_molecules(structures: list[Atoms]) -> list[Atoms]:
    """The first structure of each chemical formula, in order of appearance."""
    seen, molecules = set(), []
    for atoms in structures:
        formula = atoms.get_chemical_formula()
        if formula not in seen:
            seen.add(formula)
            molecules.append(Atoms(numbers=atoms.numbers, positions=atoms.positions))
    return molecules


def prior_digest(molecules: list[Atoms], settings: PriorSettings) -> str:
    payload = {"molecules": [[a.numbers.tolist(), np.round(a.positions, 6).tolist()] for a in molecules],
               "settings": settings.to_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


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


def sample_with_xtb(minimum: Atoms, settings: PriorSettings, folder: Path, tag: str, progress: bool) -> tuple[list[Atoms], int, float]:
    """Frames of `settings.starts` Langevin runs from `minimum`, labelled with the xTB energy and
    forces computed along them. A finished run is read back from its file; a run that xTB cannot
    finish is skipped and counted. Returns the frames, the failed runs and the xTB seconds spent now."""
    per_start = -(-settings.frames // settings.starts)
    keep_from = settings.equilibration_steps // settings.interval + 1  # recorded frames: steps 0, interval, ...
    frames, failed, seconds = [], 0, 0.0
    for start in range(settings.starts):
        done = folder / f"{tag}_run{start}.extxyz"
        if not done.exists():
            begin = time.perf_counter()
            atoms = minimum.copy()
            atoms.calc = xtb_calculator(settings.level)
            partial = folder / f"{tag}_run{start}.partial.extxyz"
            report = run_md(atoms, "langevin", settings.temperature_K, settings.timestep_fs,
                            settings.equilibration_steps + per_start * settings.interval, trajectory=partial,
                            interval=settings.interval, friction_per_fs=settings.friction_per_fs, seed=settings.seed + 1000 * start,
                            progress=progress)
            seconds += time.perf_counter() - begin
            if report.stopped or not report.stable:
                failed += 1
                logger.warning("xTB MD run %d of %s skipped: %s", start, tag, report.stopped or "bonds broke")
                partial.unlink(missing_ok=True)
                continue
            partial.rename(done)
        run = read(done, index=":")[keep_from:]
        frames.extend(run[:per_start])
    return frames[: settings.frames], failed, seconds


def build_prior(structures: list[Atoms], root: str | Path, settings: PriorSettings | None = None, progress: bool = True) -> PriorReport:
    """The molecule prior of the molecules among `structures` (one per formula), in
    `root`/prior-<digest>/; reused when it exists there."""
    from .train import load_config, train

    s = settings or PriorSettings()
    molecules = distinct_molecules(structures)
    if not molecules:
        raise ValueError("a molecule prior needs at least one structure")
    for atoms in molecules:
        check_xtb_structure(atoms)  # named errors (periodic cells, elements xTB lacks) before any work
    folder = Path(root) / f"prior-{prior_digest(molecules, s)}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"xtb_wall_s": 0.0}
    frames_file = folder / "xtb_frames.extxyz"
    if not frames_file.exists():
        frames, failed = [], 0
        for k, atoms in enumerate(molecules):
            begin = time.perf_counter()
            minimum = xtb_minimum(atoms, s.level)
            manifest["xtb_wall_s"] += time.perf_counter() - begin
            try:
                sampled, skipped, seconds = sample_with_xtb(minimum, s, folder, f"molecule{k}", progress)
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
                        level=asdict(s.level), settings=s.to_dict())
        write_text_atomically(manifest_path, json.dumps(manifest, indent=2))
    overrides = [f"output_dir={folder}", "name=fit", f"data.train={frames_file}", "data.protocol=null", f"data.n_valid={s.n_valid}",
                 f"optim.epochs={s.epochs}", f"optim.patience={s.epochs}", f"seed={s.seed}", "resume=true",
                 "description=" + json.dumps(f"molecule prior: {s.level.label()} MD frames at {s.temperature_K:g} K")]
    if s.init:
        overrides.append(f"init={s.init}")
    config = load_config("own-data", overrides)
    summary_path = config.run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else train(config, progress=progress)
    manifest = json.loads(manifest_path.read_text())
    return PriorReport(model=config.run_dir / "model.safetensors", frames_file=frames_file, n_frames=manifest["n_frames"],
                       n_failed_runs=manifest["n_failed_runs"], xtb_wall_s=round(manifest["xtb_wall_s"], 1),
                       fit_wall_s=summary["train_wall_s"], valid_forces_mae_meV_per_A=summary["valid"]["forces_mae_meV_per_A"],
                       folder=folder)
