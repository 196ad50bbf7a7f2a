"""`fit`: from a molecule to a validated force field in one call.

1. the structure (SMILES through RDKit, with its conformers, or a file);  2. candidates: drawn
around the DFT minimum by a displacement sampler, or (`xtb-md`) from Langevin MD with GFN2-xTB
around the molecule's distinct xTB minima, whose frames also train a molecule prior that every
DFT fit starts from;  3. the DFT minimum, whose optimisation gradients are training data too;
4. the candidates to label chosen by the selection (random, farthest-point in the model's
feature space, or committee disagreement) and labelled with DFT in parallel. With `xtb-md` the
DFT work overlaps the xTB work: the optimisations start on the workers from the xTB minima
before the MD, and randomly chosen first frames are labelled while the prior is fitted;  5. fine-tuning
(80/20 train/validation), one model per committee member;  6. rounds: Langevin MD with the
current model, candidates spread over it, the chosen ones and the model's own minima labelled,
added, and the models refitted;  7. a last MD run with the final model gives the held-out test frames, labelled but
never trained on;  8. the report: held-out errors (and, for a committee, how well its spread
ranks them), ML vs DFT minimum, NVE drift, MD stability, wall time and DFT calls per stage, and
whether the validation passed (minimum within `max_rmsd_A`, MD stable).

Everything lands in the output folder; DFT results are cached and training runs resume, so a
killed fit started again redoes nothing it had finished."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write
from tqdm.auto import tqdm

from ..atomic import write_text_atomically
from ..calculator import AniDSCalculator
from ..checkpoint import check_elements, load_checkpoint, load_force_fields, read_metadata, save_committee
from ..evaluation import error_metrics
from ..folder_lock import folder_lock
from ..prior import fit_prior
from ..reference import DFTLevel, XTBLevel, dft_optimize
from ..reference.labelling import collect_labels, labelling_pool, submit_labels
from ..settings import PriorConfig
from ..simulate import optimize, run_md
from ..train import load_config, train
from ..validate.rmsd import kabsch_rmsd
from .molecule import Molecule, molecule_from_input
from .process import termination_as_interrupt
from .sampling import hessian_displacements, hessian_from_forces, sample_configurations
from .selection import force_spread, largest, select_frames
from .settings import FitSettings
from .xtb_sampling import xtb_minima, xtb_pool

logger = logging.getLogger(__name__)


@dataclass
class FitReport:
    level: str
    formula: str
    source: str
    sampler: str
    selection: str
    committee: int  # models per fit
    heldout_forces_mae_meV_per_A: float
    heldout_energy_mae_meV: float
    minimum_rmsd_A: float  # ML minimum vs DFT minimum (the lowest conformer), Kabsch, all atoms
    minimum_rmsd_heavy_A: float
    conformers: list  # per DFT conformer minimum, lowest DFT energy first: its energy and the ML minimum's RMSDs
    nve_drift_meV_per_atom_per_ps: float
    md_stable: bool
    passed: bool  # the validation: minimum within max_rmsd_A and MD stable
    failures: list  # why it did not pass, in words
    # committee only: Spearman rank correlation, over the held-out frames, of the largest per-atom
    # force spread and the frame's force MAE (does disagreement point at the errors?)
    spread_error_spearman: float | None
    n_dft_calls: int  # single points and optimisation gradients the fit used (cached or not)
    n_dft_computed: int  # of those, computed in this invocation
    n_dft_scf_failures: int  # frames left out because their SCF did not converge
    dft_calls_per_stage: dict
    n_train_frames: int
    n_heldout_frames: int
    xtb: dict  # xtb-md: the pool and the molecule prior
    wall_s: float
    stage_wall_s: dict = field(default_factory=dict)  # in this process; xtb-md's DFT minimum runs on the workers beside xtb_sampling and prior
    rounds: list = field(default_factory=list)  # per fit: validation force MAE, frames
    rounds_stopped: str = ""  # why the rounds ended


def _write_frames(path: Path, frames: list[Atoms]) -> None:
    write(path, frames, format="extxyz")


def fit(source: str | Molecule, out_dir: str | Path, settings: FitSettings | None = None, charge: int | None = None,
        spin: int | None = None, cache_dir: str | Path | None = None, progress: bool = True) -> FitReport:
    """Fit a force field to `source` (SMILES string, structure file or Molecule) and validate
    it against DFT; writes `out_dir`/{dft_minimum.xyz, ml_minimum.xyz, model.safetensors,
    report.json, report.png} and returns the report (`report.passed` says whether the
    validation passed). The folder is locked while the fit runs (a second fit into it is
    refused); SIGTERM and SIGHUP end it as Ctrl-C does, workers included."""
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
    """Single points and optimisation gradients a fit used, per stage, and how many were
    computed now rather than found in the cache."""

    per_stage: dict = field(default_factory=dict)
    computed: int = 0
    scf_failures: int = 0  # frames left out: their SCF did not converge

    def add(self, stage: str, used: int, computed: int, failed: int = 0) -> None:
        self.per_stage[stage] = self.per_stage.get(stage, 0) + used
        self.computed += computed
        self.scf_failures += failed

    @property
    def used(self) -> int:
        return sum(self.per_stage.values())


@dataclass
class Validation:
    errors: dict  # held-out metrics (evaluation.error_metrics)
    predictions: dict  # held-out energies, forces and (committee) spreads
    spread_error_spearman: float | None
    ml_minima: list  # relaxed with the model from each DFT minimum
    nve: object  # MDReport, float64
    stability: object  # MDReport, Langevin at the temperature
    problems: list  # optimisations with the model that could not finish


def _fit(source, out: Path, settings, charge, spin, cache_dir, progress) -> FitReport:
    s = settings or FitSettings()
    clock, calls = StageClock(), DFTCalls()
    with clock("structure"):
        molecule = source if isinstance(source, Molecule) else molecule_from_input(source, charge, spin, s.seed)
        start = s.prior_init if s.sampler == "xtb-md" else s.init
        if start is not None:  # the fits start from a pretrained backbone, which knows its elements only
            check_elements(read_metadata(start), molecule.atoms.numbers)
        level = DFTLevel(**{**asdict(s.level or DFTLevel()), "charge": molecule.charge, "spin": molecule.spin})
        write(out / "start.xyz", molecule.atoms)
    with labelling_pool(s.executor, s.workers, s.threads, s.scheduler) as executor:
        def finish(futures: dict, stage: str) -> list[Atoms]:
            with clock("sampling_and_labelling"):
                labelled, computed, failed = collect_labels(futures, progress, f"DFT labels ({stage})")
                calls.add(stage, len(labelled), computed, failed)
                return labelled

        def submit(frames: list[Atoms]) -> dict:
            return submit_labels(frames, level, executor, cache_dir)

        def label(frames: list[Atoms], stage: str) -> list[Atoms]:
            return finish(submit(frames), stage)

        prior, xtb, starts, first_labels = None, {}, [molecule.atoms], None
        if s.sampler == "xtb-md":
            prior_settings, xtb_level = _prior_settings(molecule, s)
            with clock("xtb_sampling"):
                minima = xtb_minima(molecule.conformers[: s.conformers], xtb_level, out / "xtb")
            starts = minima.atoms  # lowest first: short DFT optimisations from there
        # The DFT optimisations run on the workers while the xTB MD and the prior's fit run here.
        optimising = [executor.submit(dft_optimize, atoms, level, cache_dir=cache_dir) for atoms in starts[: s.dft_conformers]]
        if s.sampler == "xtb-md":
            with clock("xtb_sampling"):
                pool = xtb_pool(minima, prior_settings, xtb_level, s.seed, out / "xtb", progress)
            candidates = [Atoms(numbers=a.numbers, positions=a.positions) for a in pool.frames]
            if s.selection == "random":  # needs no model: labelled on the free workers while the prior is fitted
                chosen = select_frames(candidates, min(s.frames, len(candidates)), "random", s.seed)
                first_labels = submit([candidates[k] for k in chosen])
            with clock("prior"):
                summary, prior = fit_prior(out / "xtb" / "pool.extxyz", out / "xtb" / "fit", prior_settings, xtb_level, s.seed, progress)
            xtb = {"frames": len(pool.frames), "minima": len(minima.atoms), "minima_energies_eV": minima.energies_eV,
                   "conformers_tried": minima.n_conformers, "conformers_dropped_bonding_changed": minima.n_bonding_changed,
                   "xtb_failures": minima.n_xtb_failures + pool.n_xtb_failures, "xtb_wall_s": pool.xtb_wall_s,
                   "prior_fit_wall_s": summary["train_wall_s"], "prior_valid_xtb_forces_mae_meV_per_A": summary["valid"]["forces_mae_meV_per_A"]}
        with clock("dft_minimum"):  # what is left of the optimisations once the above is done
            done = tqdm(as_completed(optimising), total=len(optimising), disable=not progress, desc=f"DFT minima ({level.label()})",
                        unit="minimum")
            optimisations = sorted((_counted_minimum(future.result(), calls) for future in done), key=lambda result: result.energy_eV)
            dft_minima = [result.atoms for result in optimisations]
            minimum = dft_minima[0]
            write(out / "dft_minimum.xyz", minimum)
            write(out / "dft_minima.extxyz", dft_minima)

        hessian = None
        if s.sampler == "normal-modes":
            displaced = label(hessian_displacements(minimum), "Hessian")
            if len(displaced) < 6 * len(minimum):
                raise RuntimeError("the normal-modes sampler needs every displaced structure's forces, and some SCFs did not "
                                   "converge; choose another sampler")
            hessian = hessian_from_forces([a.get_forces() for a in displaced])
        if first_labels is None:
            with clock("sampling_and_labelling"):
                if s.sampler != "xtb-md":
                    candidates = sample_configurations(minimum, s.frames * s.candidates, s.sampler, s.temperature_K, s.seed, s.init, hessian)
                features = None if s.selection == "random" else load_checkpoint(prior or s.init)[0]
                chosen = select_frames(candidates, min(s.frames, len(candidates)), s.selection, s.seed, model=features)
            first_labels = submit([candidates[k] for k in chosen])
        # the optimisation's gradients are DFT data near the minimum, already paid for
        first = finish(first_labels, "first frames") + [f for result in optimisations for f in result.path_frames()]
        train_frames, heldout, model_path, fits, stopped = _active_rounds(out, dft_minima, first, submit, finish, s, prior, clock, calls,
                                                                         progress, executor)
    _write_frames(out / "train_frames.extxyz", train_frames)
    _write_frames(out / "heldout_frames.extxyz", heldout)
    shutil.copyfile(model_path, out / "model.safetensors")
    checks = _validate(out, dft_minima, heldout, s, clock, progress)

    conformers = [{"dft_energy_eV": result.energy_eV, "rmsd_A": kabsch_rmsd(result.atoms, ml),
                   "rmsd_heavy_A": kabsch_rmsd(result.atoms, ml, heavy_atoms_only=True)} for result, ml in zip(optimisations, checks.ml_minima)]
    rmsd = conformers[0]["rmsd_A"]
    md_stable = checks.nve.stable and checks.stability.stable
    failures = list(checks.problems)
    for k, conformer in enumerate(conformers):
        if conformer["rmsd_A"] > s.max_rmsd_A:
            which = "the DFT minimum" if len(conformers) == 1 else f"DFT conformer minimum {k} (0 the lowest)"
            failures.append(f"the ML minimum lies {conformer['rmsd_A']:.4f} Å from {which} (limit {s.max_rmsd_A:g} Å)")
    if not md_stable:
        failures.append(f"MD at {s.temperature_K:g} K was unstable: "
                        f"{checks.stability.stopped or checks.nve.stopped or 'bonds left [0.7, 1.5]x their length'}")
    report = FitReport(
        level=level.label(), formula=molecule.atoms.get_chemical_formula(), source=molecule.source, sampler=s.sampler,
        selection=s.selection, committee=s.committee,
        heldout_forces_mae_meV_per_A=checks.errors["forces_mae_meV_per_A"], heldout_energy_mae_meV=checks.errors["energy_mae_meV"],
        minimum_rmsd_A=rmsd, minimum_rmsd_heavy_A=conformers[0]["rmsd_heavy_A"], conformers=conformers,
        nve_drift_meV_per_atom_per_ps=checks.nve.drift_meV_per_atom_per_ps, md_stable=md_stable, passed=not failures,
        failures=failures, spread_error_spearman=checks.spread_error_spearman, n_dft_calls=calls.used, n_dft_computed=calls.computed,
        n_dft_scf_failures=calls.scf_failures, dft_calls_per_stage=calls.per_stage, n_train_frames=len(train_frames),
        n_heldout_frames=len(heldout), xtb=xtb,
        wall_s=clock.total_s, stage_wall_s=clock.stages, rounds=fits, rounds_stopped=stopped,
    )
    verdict = "passed" if report.passed else "FAILED VALIDATION: " + "; ".join(failures)
    write_text_atomically(out / "report.json", json.dumps({"validation": verdict, **asdict(report), "settings": _settings_dict(s, level)},
                                                          indent=2))
    plot_report(report, heldout, checks, out / "report.png")
    return report


def _prior_settings(molecule: Molecule, s: FitSettings) -> tuple[PriorConfig, XTBLevel]:
    """The molecule prior's settings in a fit (from `prior_init`, 2 MD starts per minimum and
    temperature, 0.5 ps equilibration, 1 fs steps, a frame every 20 fs) and its xTB level. At 1 fs
    aspirin's 600 frames took 156 s against 287 s at 0.5 fs side by side, with no bond broken
    in the hotter pass (1.5× the temperature)."""
    settings = PriorConfig(temperature_K=s.temperature_K, frames=s.pool_frames, starts=2, equilibration_steps=500,
                           interval=20, timestep_fs=1.0,
                           epochs=s.prior_epochs, n_valid=max(1, min(50, s.pool_frames // 5)), init=s.prior_init,
                           compile=False)  # a compiled fit is not measured in fit
    return settings, XTBLevel(method=settings.method, charge=molecule.charge, spin=molecule.spin)


def _counted_minimum(minimum, calls: DFTCalls):
    """A finished DFT optimisation, its gradients counted (a warning if it did not converge)."""
    if not minimum.converged:
        logger.warning("the DFT optimisation stopped before converging (%d steps); sampling around its last structure", minimum.steps)
    calls.add("dft_minimum", minimum.steps, 0 if minimum.cached else minimum.steps)
    return minimum


def _active_rounds(out: Path, dft_minima: list[Atoms], train_frames: list[Atoms], submit, finish, s: FitSettings, prior: Path | None,
                   clock: StageClock, calls: DFTCalls, progress: bool, executor):
    """Fit on the first frames; then per round, MD with the current model, the selection's choice
    of its frames and the model's own minima (one per DFT minimum) labelled and added, and a refit (from the previous fit, `s.refit_steps`; the
    last round's for `s.steps`). Rounds stop after `s.rounds`, when the next would pass the DFT or
    time budget, or (committee) when no candidate's spread reaches `s.stop_spread_meV_per_A`; a
    budget's stop keeps the last refit as it is. The held-out frames come from a separate
    MD run with the model the last round sampled with, and are labelled while the last fit trains
    (with no round, from the first fit's model). Returns the training frames, the held-out frames,
    the final model's path, a summary per fit, and why rounds stopped."""
    fits = []
    with clock("training"):
        model_path, members = _fit_models(out, 0, train_frames, s, prior, progress, fits, executor)
    minimum = dft_minima[0]
    stopped, heldout = f"{s.rounds} rounds done", None
    per_round = s.frames_per_round + len(dft_minima)
    for round_index in range(1, s.rounds + 1):
        if s.dft_budget is not None and calls.used + per_round > s.dft_budget:
            stopped = f"DFT budget: {calls.used} calls used, a round adds {per_round}, budget {s.dft_budget}"
            break
        if s.time_budget_min is not None and clock.total_s > 60 * s.time_budget_min:
            stopped = f"time budget: {clock.total_s / 60:.1f} of {s.time_budget_min:g} min used"
            break
        with clock("md_rounds"):
            md_frames = _md_frames(model_path, minimum, s, s.frames_per_round * s.candidates, out / f"md_round{round_index}.extxyz",
                                   round_index, progress)
        with clock("selection"):
            n = min(s.frames_per_round, len(md_frames))
            if s.selection == "committee":
                spread = force_spread(AniDSCalculator(model_path), md_frames)
                if s.stop_spread_meV_per_A is not None and 1000 * spread.max() < s.stop_spread_meV_per_A:
                    stopped = (f"converged: the committee's largest force spread on round {round_index}'s candidates, "
                               f"{1000 * spread.max():.1f} meV/Å, is below {s.stop_spread_meV_per_A:g}")
                    break
                chosen = largest(spread, n)
            else:
                features = None if s.selection == "random" else load_force_fields(model_path)[0][0]
                chosen = select_frames(md_frames, n, s.selection, s.seed + round_index, model=features)
            # DFT's forces at the model's minima say which way they are off: on aspirin one such
            # label moved the next fit's minimum from 0.102 to 0.067 Å of DFT's (docs/results.md)
            minima, stops = _ml_minima(model_path, dft_minima)
            at_minima = [Atoms(numbers=a.numbers, positions=a.positions) for a, stop in zip(minima, stops) if stop is None]
        labelling = submit([md_frames[k] for k in chosen] + at_minima)
        if round_index == s.rounds:  # queued behind the round's frames, so the workers label them while the last fit trains
            heldout = submit(_heldout_frames(model_path, minimum, s, out, progress, clock))
        train_frames = train_frames + finish(labelling, f"round {round_index}")
        with clock("training"):
            start = members if s.refit_steps is not None else None
            model_path, members = _fit_models(out, round_index, train_frames, s, prior, progress, fits, executor, start,
                                              last=round_index == s.rounds)
    if heldout is None:
        heldout = submit(_heldout_frames(model_path, minimum, s, out, progress, clock))
    return train_frames, finish(heldout, "held out"), model_path, fits, stopped


def _heldout_frames(model_path: Path, minimum: Atoms, s: FitSettings, out: Path, progress: bool, clock: StageClock) -> list[Atoms]:
    with clock("md_rounds"):
        return _md_frames(model_path, minimum, s, s.test_frames, out / "md_heldout.extxyz", s.rounds + 1, progress)


def _predict(model_path: Path, frames: list[Atoms]) -> dict:
    """Energies (eV), forces (eV/Å) and, for a committee, the largest per-atom force spread (eV/Å)
    of each frame, through the calculator (float64)."""
    calc = AniDSCalculator(model_path, dtype="float64")
    energies, forces, spreads = [], [], []
    for frame in frames:
        atoms = Atoms(numbers=frame.numbers, positions=frame.positions)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
        if len(calc.models) > 1:
            spreads.append(float(np.max(calc.get_property("forces_std", atoms))))
    return {"energies": np.array(energies), "forces": forces, "spreads": np.array(spreads)}


def _validate(out: Path, dft_minima: list[Atoms], heldout: list[Atoms], s: FitSettings, clock: StageClock, progress: bool) -> Validation:
    """Held-out errors (and how well a committee's spread ranks them), the ML minima (each from
    a DFT one), NVE in float64 and Langevin MD at the temperature from the lowest."""
    from scipy.stats import spearmanr

    model = out / "model.safetensors"
    with clock("validation_minimum"):
        predicted = _predict(model, heldout)
        reference_forces = [a.get_forces() for a in heldout]
        errors = error_metrics(predicted["energies"], predicted["forces"], [a.get_potential_energy() for a in heldout], reference_forces)
        spearman = None
        if len(predicted["spreads"]) >= 3:
            frame_errors = [np.abs(p - r).mean() for p, r in zip(predicted["forces"], reference_forces)]
            spearman = float(spearmanr(predicted["spreads"], frame_errors).statistic)
        ml_minima, stops = _ml_minima(model, dft_minima)
        problems = [stop for stop in stops if stop is not None]
        ml = ml_minima[0]
        write(out / "ml_minimum.xyz", ml)
    with clock("validation_md"):
        nve_atoms = ml.copy()
        nve_atoms.calc = AniDSCalculator(model, dtype="float64")
        nve = run_md(nve_atoms, "nve", s.temperature_K, 0.5, s.nve_steps, interval=10, seed=s.seed, progress=progress)
        stable_atoms = ml.copy()
        stable_atoms.calc = AniDSCalculator(model)
        stability = run_md(stable_atoms, "langevin", s.temperature_K, 0.5, s.md_steps, interval=10, seed=s.seed + 1, progress=progress)
    return Validation(errors, predicted, spearman, ml_minima, nve, stability, problems)


def _ml_minima(model: Path, dft_minima: list[Atoms]) -> tuple[list[Atoms], list[str | None]]:
    """The model's minima, each relaxed from a DFT minimum (float64, max force 1e-3 eV/Å), and
    for each, None or why its optimisation stopped (its last structure is kept)."""
    calc = AniDSCalculator(model, dtype="float64")
    minima, stops = [], []
    for k, minimum in enumerate(dft_minima):
        ml = Atoms(numbers=minimum.numbers, positions=minimum.positions)
        ml.calc = calc
        try:
            optimize(ml, fmax=1e-3, steps=2000)
            stops.append(None)
        except ValueError as error:  # a poor model can pull atoms onto each other: a failed validation, not a crash
            stops.append(f"the model's optimisation from DFT minimum {k} stopped: {error}")
        minima.append(ml)
    return minima, stops


def _settings_dict(s: FitSettings, level: DFTLevel) -> dict:
    return {**asdict(s), "level": asdict(level)}


def _fit_models(out: Path, index: int, frames: list[Atoms], s: FitSettings, prior: Path | None, progress: bool, fits: list,
                executor, start: list[Path] | None = None, last: bool = False) -> tuple[Path, list[Path]]:
    """Fine-tune `s.committee` models on `frames` (`fine_tune_configs`; from the models `start`
    when given). Several models train in parallel on the labelling workers and are returned as
    one committee file. Returns the model file and the member models."""
    data = out / f"fit{index}_frames.extxyz"
    _write_frames(data, frames)
    configs = fine_tune_configs(data, len(frames), index, out / "training", s, prior, start, last)
    summaries = _train_all(configs, executor, progress)
    fits.append({"fit": index, "n_frames": len(frames), "valid_forces_mae_meV_per_A": [x["valid"]["forces_mae_meV_per_A"] for x in summaries],
                 "train_wall_s": [x["train_wall_s"] for x in summaries]})
    members = [c.run_dir / "model.safetensors" for c in configs]
    if s.committee == 1:
        return members[0], members
    name = configs[0].name.removesuffix("-m0")  # fit<index>-<digest>
    return save_committee(members, configs[0].run_dir.parent / f"{name}-committee.safetensors"), members


def fine_tune_configs(data: Path, n_frames: int, index: int, output_dir: Path, s: FitSettings, prior: Path | None,
                      start: list[Path] | None = None, last: bool = False) -> list:
    """The training configurations of fit `index` on the `n_frames` frames in `data` (80/20
    split), seeds seed, seed+1, ... for a committee: from the molecule prior with the recommended
    few-label recipe's optimiser (rmd17-50-anids: energy weight, learning rate, no denoising), or
    from the pretrained backbone with auxiliary anisotropic denoising; `s.steps` steps. With
    `start` (one model per member: the previous fit's), each member continues from its model for
    `s.refit_steps` steps, or `s.steps` when it is the `last` fit. Every fit keeps its last
    weights: the best epoch on its few validation frames came early in a refit, before the
    training frames (the DFT minimum among them) were fitted. Run folders are named by a digest
    of the frames and the resolved recipe: the same fit started again resumes (or reuses) them,
    other frames or settings never do."""
    n_valid = max(1, round(0.2 * n_frames))
    recipe_name, init, common = (("rmd17-50-anids", prior, ["prior=null"]) if prior is not None
                                 else ("rmd17-50", s.init, ["denoise.kind=anisotropic", f"denoise.generator={s.init}"]))
    steps = s.steps if start is None or last else s.refit_steps
    inits = [init] * s.committee if start is None else start
    common = [*common, "data.protocol=null", f"data.n_valid={n_valid}", "data.reference_energies=null", f"optim.max_steps={steps}",
              "optim.keep=last", "device=cpu", f"data.train={data}"]
    # the whole resolved recipe goes into the digest, so a changed packaged recipe never reuses an old fit
    resolved = asdict(load_config(recipe_name, [*common, f"init={inits[0]}", f"seed={s.seed}"]))
    digest = hashlib.sha256(data.read_bytes() + json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return [load_config(recipe_name, [
        *common, f"init={inits[k]}", f"seed={s.seed + k}", f"name=fit{index}-{digest}" + (f"-m{k}" if s.committee > 1 else ""),
        f"output_dir={output_dir}", "resume=true",
        "description=" + json.dumps(f"anids-md fit, round {index}: {n_frames - n_valid} training frames"),  # quoted for YAML
    ]) for k in range(s.committee)]


def _train_all(configs: list, executor, progress: bool) -> list[dict]:
    """The training summaries of `configs`: read back when finished, else trained (one in this
    process with its progress bar, several on the workers)."""
    def finished(config):
        path = config.run_dir / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None

    if len(configs) == 1:
        return [finished(configs[0]) or train(configs[0], progress=progress)]
    futures = {k: executor.submit(train, c, False) for k, c in enumerate(configs) if finished(c) is None}
    return [futures[k].result() if k in futures else finished(c) for k, c in enumerate(configs)]


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


def plot_report(report: FitReport, heldout: list[Atoms], checks: Validation, path: Path) -> None:
    """Held-out force parity, NVE total energy, wall time per stage, and for a committee its
    spread against the held-out error per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = np.concatenate([a.get_forces().ravel() for a in heldout])
    predicted = np.concatenate([f.ravel() for f in checks.predictions["forces"]])
    spreads = checks.predictions["spreads"]
    fig, axes = plt.subplots(1, 4 if len(spreads) else 3, figsize=(17 if len(spreads) else 13, 3.8))
    a, b, c = axes[:3]
    a.plot(reference, predicted, ".", ms=3, alpha=0.6)
    lim = [min(reference.min(), predicted.min()), max(reference.max(), predicted.max())]
    a.plot(lim, lim, "k:", lw=1)
    a.set(xlabel="DFT force component (eV/Å)", ylabel="model (eV/Å)",
          title=f"held out: MAE {report.heldout_forces_mae_meV_per_A:.1f} meV/Å")
    energies = np.asarray(checks.nve.total_energies_eV)
    if len(energies):  # an NVE run that could not start (a collapsed ML minimum) has nothing to draw
        b.plot(checks.nve.times_ps, (energies - energies[0]) * 1000 / checks.nve.n_atoms)
    b.set(xlabel="time (ps)", ylabel="total energy change (meV/atom)",
          title=f"NVE, float64: drift {report.nve_drift_meV_per_atom_per_ps:.3f} meV/atom/ps")
    names = list(report.stage_wall_s)
    c.barh(names, [report.stage_wall_s[n] for n in names])
    c.set(xlabel="wall time (s)", title=f"{report.n_dft_calls} DFT calls, {report.wall_s:.0f} s in all")
    if len(spreads):
        errors = [1000 * np.abs(p - a.get_forces()).mean() for p, a in zip(checks.predictions["forces"], heldout)]
        axes[3].plot(1000 * spreads, errors, "o", ms=4)
        rho = "n/a" if report.spread_error_spearman is None else f"{report.spread_error_spearman:.2f}"
        axes[3].set(xlabel="committee: largest per-atom force spread (meV/Å)", ylabel="frame force MAE (meV/Å)",
                    title=f"held out: Spearman {rho}")
    verdict = "validation passed" if report.passed else "FAILED VALIDATION"
    fig.suptitle(f"{report.formula} at {report.level}, sampler {report.sampler}, selection {report.selection}: {verdict}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
