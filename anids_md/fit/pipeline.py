"""`fit`: from a molecule to a validated force field in one call.

1. the structure (SMILES through RDKit, or a file);  2. its DFT minimum;  3. configurations
drawn around it by a sampler and labelled with DFT in parallel;  4. fine-tuning from the
pretrained backbone with the denoising recipe (80/20 train/validation);  5. rounds: Langevin MD
with the current model, frames spread over it labelled, added, and the model refitted;
6. a last MD run with the final model gives the held-out test frames, labelled but never
trained on;  7. the report: held-out errors, ML vs DFT minimum, NVE drift, MD stability, wall
time per stage and DFT calls.

Everything lands in the output folder; DFT results are cached and training runs resume, so a
killed fit started again redoes nothing it had finished."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.io import read, write

from ..atomic import write_text_atomically
from ..calculator import AniDSCalculator
from ..checkpoint import check_elements, load_checkpoint, read_metadata
from ..evaluation import evaluate
from ..folder_lock import folder_lock
from ..reference import DFTLevel, dft_optimize
from ..reference.labelling import label_structures, labelling_pool
from ..simulate import optimize, run_md
from ..train import load_config, train
from ..validate.rmsd import kabsch_rmsd
from .molecule import Molecule, molecule_from_input
from .process import termination_as_interrupt
from .sampling import hessian_displacements, hessian_from_forces, sample_configurations
from .settings import FitSettings

logger = logging.getLogger(__name__)


@dataclass
class FitReport:
    level: str
    formula: str
    source: str
    sampler: str
    heldout_forces_mae_meV_per_A: float
    heldout_energy_mae_meV: float
    minimum_rmsd_A: float  # ML minimum vs DFT minimum, Kabsch, all atoms
    minimum_rmsd_heavy_A: float
    nve_drift_meV_per_atom_per_ps: float
    md_stable: bool
    n_dft_calls: int  # single points and optimisation gradients the fit used (cached or not)
    n_dft_computed: int  # of those, computed in this invocation
    n_train_frames: int
    n_heldout_frames: int
    wall_s: float
    stage_wall_s: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)  # per fit: validation force MAE, frames


def _write_frames(path: Path, frames: list[Atoms]) -> None:
    write(path, frames, format="extxyz")


def fit(source: str | Molecule, out_dir: str | Path, settings: FitSettings | None = None, charge: int | None = None,
        spin: int | None = None, cache_dir: str | Path | None = None, progress: bool = True) -> FitReport:
    """Fit a force field to `source` (SMILES string, structure file or Molecule) and validate
    it against DFT; writes `out_dir`/{dft_minimum.xyz, ml_minimum.xyz, model.safetensors,
    report.json, report.png} and returns the report. The folder is locked while the fit runs
    (a second fit into it is refused); SIGTERM and SIGHUP end it as Ctrl-C does, workers included."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out), termination_as_interrupt():
        return _fit(source, out, settings, charge, spin, cache_dir, progress)


class StageClock:
    """Wall time per stage (s), summed over a stage's visits: `with clock("training"): ...`."""

    def __init__(self):
        self.start, self.stages = time.perf_counter(), {}

    @contextmanager
    def __call__(self, name: str):
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - begin, 1)

    @property
    def total_s(self) -> float:
        return round(time.perf_counter() - self.start, 1)


@dataclass
class DFTCalls:
    """Single points and optimisation gradients a fit used, and how many were computed now
    rather than found in the cache."""

    used: int = 0
    computed: int = 0

    def add(self, used: int, computed: int) -> None:
        self.used, self.computed = self.used + used, self.computed + computed


@dataclass
class Validation:
    errors: dict  # held-out metrics (evaluation.error_metrics)
    ml_minimum: Atoms
    nve: object  # MDReport, float64
    stability: object  # MDReport, Langevin at the temperature


def _fit(source, out: Path, settings, charge, spin, cache_dir, progress) -> FitReport:
    s = settings or FitSettings()
    clock, calls = StageClock(), DFTCalls()
    with clock("structure"):
        molecule = source if isinstance(source, Molecule) else molecule_from_input(source, charge, spin, s.seed)
        check_elements(read_metadata(s.init), molecule.atoms.numbers)  # the pretrained backbone's elements
        level = DFTLevel(**{**asdict(s.level or DFTLevel()), "charge": molecule.charge, "spin": molecule.spin})
        write(out / "start.xyz", molecule.atoms)
    with clock("dft_minimum"):
        minimum = _dft_minimum(molecule.atoms, level, cache_dir, progress, calls)
        write(out / "dft_minimum.xyz", minimum)
    with labelling_pool(s.executor, s.workers, s.threads, s.scheduler) as executor:
        def label(frames: list[Atoms], what: str) -> list[Atoms]:
            with clock("sampling_and_labelling"):
                labelled, computed = label_structures(frames, level, executor, cache_dir, progress, f"DFT labels ({what})")
                calls.add(len(labelled), computed)
                return labelled

        hessian = None
        if s.sampler == "normal-modes":
            hessian = hessian_from_forces([a.get_forces() for a in label(hessian_displacements(minimum), "Hessian")])
        with clock("sampling_and_labelling"):
            proposals = sample_configurations(minimum, s.frames, s.sampler, s.temperature_K, s.seed, s.init, hessian)
        train_frames, heldout, model_path, fits = _active_rounds(out, minimum, label(proposals, "sampled"), label, s, clock,
                                                                 progress)
    _write_frames(out / "train_frames.extxyz", train_frames)
    _write_frames(out / "heldout_frames.extxyz", heldout)
    shutil.copyfile(model_path, out / "model.safetensors")
    model, _ = load_checkpoint(out / "model.safetensors", dtype=torch.float64)
    checks = _validate(out, model, minimum, heldout, s, clock, progress)

    report = FitReport(
        level=level.label(), formula=molecule.atoms.get_chemical_formula(), source=molecule.source, sampler=s.sampler,
        heldout_forces_mae_meV_per_A=checks.errors["forces_mae_meV_per_A"], heldout_energy_mae_meV=checks.errors["energy_mae_meV"],
        minimum_rmsd_A=kabsch_rmsd(minimum, checks.ml_minimum),
        minimum_rmsd_heavy_A=kabsch_rmsd(minimum, checks.ml_minimum, heavy_atoms_only=True),
        nve_drift_meV_per_atom_per_ps=checks.nve.drift_meV_per_atom_per_ps, md_stable=checks.nve.stable and checks.stability.stable,
        n_dft_calls=calls.used, n_dft_computed=calls.computed, n_train_frames=len(train_frames), n_heldout_frames=len(heldout),
        wall_s=clock.total_s, stage_wall_s=clock.stages, rounds=fits,
    )
    write_text_atomically(out / "report.json", json.dumps({**asdict(report), "settings": _settings_dict(s, level)}, indent=2))
    plot_report(report, model, heldout, checks.nve, out / "report.png")
    return report


def _dft_minimum(atoms: Atoms, level: DFTLevel, cache_dir, progress: bool, calls: DFTCalls) -> Atoms:
    minimum = dft_optimize(atoms, level, cache_dir=cache_dir, progress=progress)
    if not minimum.converged:
        logger.warning("the DFT optimisation stopped before converging (%d steps); sampling around its last structure", minimum.steps)
    calls.add(minimum.steps, 0 if minimum.cached else minimum.steps)
    return minimum.atoms


def _active_rounds(out: Path, minimum: Atoms, train_frames: list[Atoms], label, s: FitSettings, clock: StageClock, progress: bool):
    """Fit on the first frames; then per round, MD with the current model, its frames labelled
    and added, and a refit; a last MD run gives the held-out frames. Returns the training frames,
    the held-out frames, the final model's path and a summary per fit."""
    fits = []
    with clock("training"):
        model_path = _fit_model(out, 0, train_frames, s, progress, fits)
    for round_index in range(1, s.rounds + 2):  # the extra pass gives the held-out frames
        last = round_index == s.rounds + 1
        with clock("md_rounds"):
            md_frames = _md_frames(model_path, minimum, s, s.test_frames if last else s.frames_per_round,
                                   out / f"md_round{round_index}.extxyz", round_index, progress)
        labelled = label(md_frames, f"round {round_index}")
        if last:
            return train_frames, labelled, model_path, fits
        train_frames = train_frames + labelled
        with clock("training"):
            model_path = _fit_model(out, round_index, train_frames, s, progress, fits)


def _validate(out: Path, model, minimum: Atoms, heldout: list[Atoms], s: FitSettings, clock: StageClock, progress: bool) -> Validation:
    """Held-out errors, the ML minimum (from the DFT one), NVE in float64 and Langevin MD at the temperature."""
    with clock("validation_minimum"):
        errors = evaluate(model, heldout)
        ml = Atoms(numbers=minimum.numbers, positions=minimum.positions)
        ml.calc = AniDSCalculator(out / "model.safetensors", dtype="float64")
        optimize(ml, fmax=1e-3, steps=2000)
        write(out / "ml_minimum.xyz", ml)
    with clock("validation_md"):
        nve_atoms = ml.copy()
        nve_atoms.calc = AniDSCalculator(out / "model.safetensors", dtype="float64")
        nve = run_md(nve_atoms, "nve", s.temperature_K, 0.5, s.nve_steps, interval=10, seed=s.seed, progress=progress)
        stable_atoms = ml.copy()
        stable_atoms.calc = AniDSCalculator(out / "model.safetensors")
        stability = run_md(stable_atoms, "langevin", s.temperature_K, 0.5, s.md_steps, interval=10, seed=s.seed + 1, progress=progress)
    return Validation(errors, ml, nve, stability)


def _settings_dict(s: FitSettings, level: DFTLevel) -> dict:
    return {**asdict(s), "level": asdict(level)}


def _fit_model(out: Path, index: int, frames: list[Atoms], s: FitSettings, progress: bool, fits: list) -> Path:
    """Fine-tune from the pretrained backbone on `frames` (80/20 split) with the denoising
    recipe. The run folder is named by a digest of the frames and settings: the same fit
    started again resumes (or reuses) it, other frames or settings never do."""
    data = out / f"fit{index}_frames.extxyz"
    _write_frames(data, frames)
    n_valid = max(1, round(0.2 * len(frames)))
    # the denoising recipe: the plain one from the pretrained backbone, with auxiliary anisotropic denoising
    recipe = [f"seed={s.seed}", f"init={s.init}", "denoise.kind=anisotropic", "data.protocol=null", f"data.n_valid={n_valid}", "data.reference_energies=null",
              f"optim.max_steps={s.steps}", f"optim.patience={s.steps}", "device=cpu"]
    # the whole resolved recipe goes into the digest, so a changed packaged recipe never reuses an old fit
    resolved = asdict(load_config("rmd17-50", [*recipe, f"data.train={data}"]))
    digest = hashlib.sha256(data.read_bytes() + json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]
    config = load_config("rmd17-50", [
        *recipe, f"name=fit{index}-{digest}", f"output_dir={out / 'training'}", f"data.train={data}", "resume=true",
        "description=" + json.dumps(f"anids-md fit, round {index}: {len(frames) - n_valid} training frames"),  # quoted for YAML
    ])
    summary_path = config.run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else train(config, progress=progress)
    fits.append({"fit": index, "n_frames": len(frames), "valid_forces_mae_meV_per_A": summary["valid"]["forces_mae_meV_per_A"],
                 "train_wall_s": summary["train_wall_s"]})
    return config.run_dir / "model.safetensors"


def _md_frames(model_path: Path, start: Atoms, s: FitSettings, count: int, trajectory: Path, round_index: int,
               progress: bool) -> list[Atoms]:
    """`count` frames spread over a Langevin run at the temperature with the current model;
    frames after a failure (broken bonds, non-finite steps) are not used."""
    atoms = Atoms(numbers=start.numbers, positions=start.positions)
    atoms.calc = AniDSCalculator(model_path)
    interval = max(1, s.md_steps // count)
    report = run_md(atoms, "langevin", s.temperature_K, 0.5, interval * count, trajectory=trajectory, interval=interval,
                    seed=s.seed + 100 * round_index, progress=progress)
    frames = [Atoms(numbers=a.numbers, positions=a.positions) for a in read(trajectory, index=":")][1 : count + 1]
    if not report.stable:
        logger.warning("MD round %d with the current model was unstable (%s); labelling the frames it made",
                       round_index, report.stopped or f"{len(report.unstable_bonds)} bonds left their limits")
    if not frames:
        raise RuntimeError(f"MD round {round_index} gave no frames to label: {report.stopped}")
    return frames


def plot_report(report: FitReport, model, heldout: list[Atoms], nve, path: Path) -> None:
    """Held-out force parity, NVE total energy, wall time per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data import graph_from_atoms
    from ..evaluation import predict

    _, predicted = predict(model, [graph_from_atoms(a, model.config.cutoff) for a in heldout])
    reference = np.concatenate([a.get_forces().ravel() for a in heldout])
    predicted = np.concatenate([f.ravel() for f in predicted])
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.8))
    a.plot(reference, predicted, ".", ms=3, alpha=0.6)
    lim = [min(reference.min(), predicted.min()), max(reference.max(), predicted.max())]
    a.plot(lim, lim, "k:", lw=1)
    a.set(xlabel="DFT force component (eV/Å)", ylabel="model (eV/Å)",
          title=f"held out: MAE {report.heldout_forces_mae_meV_per_A:.1f} meV/Å")
    energies = np.asarray(nve.total_energies_eV)
    b.plot(nve.times_ps, (energies - energies[0]) * 1000 / nve.n_atoms)
    b.set(xlabel="time (ps)", ylabel="total energy change (meV/atom)",
          title=f"NVE, float64: drift {report.nve_drift_meV_per_atom_per_ps:.3f} meV/atom/ps")
    names = list(report.stage_wall_s)
    c.barh(names, [report.stage_wall_s[n] for n in names])
    c.set(xlabel="wall time (s)", title=f"{report.n_dft_calls} DFT calls, {report.wall_s:.0f} s in all")
    fig.suptitle(f"{report.formula} at {report.level}, sampler {report.sampler}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
