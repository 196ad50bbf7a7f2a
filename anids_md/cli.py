"""The `anids-md` command: one subcommand per job, thin over the library. Each subcommand is a
function `cmd_<name>` with its arguments declared just above it in `<name>_arguments`; the
choices come from `anids_md.options`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .options import DISPERSIONS, DTYPES, ENSEMBLES, EXECUTORS, OPTIMIZERS, SAMPLERS, SELECTIONS, XTB_METHODS

# --- argument types and groups shared by several subcommands ---------------------------------

def _optional_checkpoint(text: str) -> str | None:
    """A checkpoint name or path; 'none' (or 'null') for none: from scratch."""
    return None if text.lower() in ("none", "null") else text


def _count(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse names the option on failure)."""
    return _checked(text, int, lambda v: v >= 1, "a whole number of at least 1")


def _optional_count(text: str) -> int | None:
    """A whole number of at least 1, or 'none' (or 'null')."""
    return None if text.lower() in ("none", "null") else _count(text)


def _non_negative_count(text: str) -> int:
    return _checked(text, int, lambda v: v >= 0, "a whole number, 0 or more")


def _positive(text: str) -> float:
    return _checked(text, float, lambda v: v > 0 and v != float("inf"), "a positive number")


def _non_negative(text: str) -> float:
    return _checked(text, float, lambda v: 0 <= v < float("inf"), "a number, 0 or more")


def _checked(text: str, kind, valid, what: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each argument's default, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def device_arguments(p, dtype_default=None) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=DTYPES, default=dtype_default,
                   help="floating-point precision" + ("" if dtype_default else " (default: float64 on CPU, float32 on GPU)"))


def level_arguments(p, from_smiles: bool = False) -> None:
    """The DFT level of theory (PySCF)."""
    p.add_argument("--xc", default="PBE", help="exchange-correlation functional (PySCF name)")
    p.add_argument("--basis", default="def2-SVP", help="basis set (PySCF name)")
    p.add_argument("--dispersion", choices=DISPERSIONS, default=None, help="dispersion correction (needs pyscf-dispersion)")
    where = "; default: from the SMILES, 0 for a file" if from_smiles else ""
    p.add_argument("--charge", type=int, default=None if from_smiles else 0, help="total charge" + where)
    p.add_argument("--spin", type=_non_negative_count, default=None if from_smiles else 0,
                   help="2S, the number of unpaired electrons (UKS when > 0)" + where)
    p.add_argument("--grid", type=_non_negative_count, default=3, help="PySCF grid level")
    p.add_argument("--no-density-fit", action="store_true", help="exact Coulomb instead of RI-J")
    p.add_argument("--cache", help="folder of cached DFT results (default ~/.cache/anids-md/dft or $ANIDS_MD_CACHE)")


def _level(args):
    from .validate import DFTLevel

    # fit's --charge/--spin default to None: the molecule's own (from SMILES), filled in by fit
    return DFTLevel(xc=args.xc, basis=args.basis, dispersion=args.dispersion, density_fit=not args.no_density_fit, grid_level=args.grid,
                    charge=args.charge or 0, spin=args.spin or 0)


def model_and_structures_arguments(p, optimize: bool) -> None:
    p.add_argument("checkpoint", help="checkpoint file or shipped model name")
    p.add_argument("input", help="structure file ASE reads")
    p.add_argument("-o", "--output", required=True, help="output extxyz file")
    p.add_argument("--index", type=int, help="use only this structure of a multi-structure file (-1: the last)"
                   + ("; default: every structure" if optimize else "; needed when the file holds several"))
    device_arguments(p)


def _read_one(path, index: int | None = None):
    """The single structure of a file, or the one at `index` (an error naming the count when it
    holds several and no index is given)."""
    (atoms,) = _read_frames(path, index, single=True)
    return atoms


def _read_frames(path, index: int | None, single: bool = False) -> list:
    """Structures of a file without their labels: all of them, or the one at `index`. With
    `single`, a file of several structures needs an index."""
    from .data import read_ase

    frames = read_ase(path)
    if index is not None:
        if not -len(frames) <= index < len(frames):
            raise ValueError(f"{path} holds {len(frames)} structures; --index {index} is out of range")
        frames = [frames[index]]
    elif single and len(frames) > 1:
        raise ValueError(f"{path} holds {len(frames)} structures; choose one with --index (e.g. --index -1 for the last)")
    for atoms in frames:
        atoms.calc = None
    return frames


def _print_metrics(title: str, m: dict) -> None:
    print(f"{title}: {m['n_structures']} structures")
    print(f"  energy MAE {m['energy_mae_meV']:.2f} meV   RMSE {m['energy_rmse_meV']:.2f} meV")
    print(f"  forces MAE {m['forces_mae_meV_per_A']:.2f} meV/Å RMSE {m['forces_rmse_meV_per_A']:.2f} meV/Å")


# --- the subcommands -------------------------------------------------------------------------

def train_arguments(p) -> None:
    p.add_argument("--config", required=True, help="a packaged recipe by name (rmd17-50, rmd17-50-anids, rmd17-1000, own-data) or a YAML file")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.train=FILE init=qm9-anids denoise.kind=anisotropic "
                   "optim.lr=1e-3; resume=true continues a run folder with other settings, overwrite=true starts it afresh")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_train(args) -> None:
    from .prior import train_with_prior
    from .train import load_config

    config = load_config(args.config, args.overrides)
    summary = train_with_prior(config, progress=not args.quiet)
    print(f"model: {config.run_dir / 'model.safetensors'}")
    if "prior" in summary:
        p = summary["prior"]
        print(f"molecule prior: {p['n_frames']} xTB frames in {p['xtb_wall_s']:.0f} s, fit in {p['fit_wall_s']:.0f} s ({p['model']})")
    _print_metrics("validation (best epoch)", summary["valid"])
    if "test" in summary:
        _print_metrics(f"test ({summary['test_file']})", summary["test"])


def prior_arguments(p) -> None:
    from .settings import PriorConfig

    d = PriorConfig()
    p.add_argument("structures", nargs="+", help="files ASE reads (or rMD17 npz): one prior for the molecules among their first frames")
    p.add_argument("-o", "--output", required=True, help="folder that receives prior-<digest>/ (frames, manifest, one fit-<digest>/ per fit)")
    p.add_argument("--method", choices=XTB_METHODS, default=d.method, help="xTB level (tblite)")
    p.add_argument("--temperature", type=_positive, default=d.temperature_K, help="K, of the Langevin MD")
    p.add_argument("--frames", type=_count, default=d.frames, help="xTB frames per molecule")
    p.add_argument("--starts", type=_count, default=d.starts, help="independent MD runs per molecule")
    p.add_argument("--epochs", type=_count, default=d.epochs, help="of the fit on the xTB frames")
    p.add_argument("--init", type=_optional_checkpoint, default=d.init, help="checkpoint the fit starts from, 'none' for from scratch (default: %(default)s)")
    p.add_argument("--compile", choices=["auto", "true", "false"], default=str(d.compile).lower(),
                   help="fit through torch.compile: about 2x faster steps after a first one that compiles (a minute); "
                   "auto: on CPU where a C++ compiler is found (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="MD velocities, Langevin noise and the fit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_prior(args) -> None:
    from .data import read_structures
    from .prior import build_prior
    from .settings import PriorConfig

    structures = []
    for path in args.structures:
        structures += read_structures(path, frames=[0], require_labels=False)
    settings = PriorConfig(method=args.method, temperature_K=args.temperature, frames=args.frames, starts=args.starts,
                           epochs=args.epochs, init=args.init,
                           compile={"true": True, "false": False}.get(args.compile, args.compile))
    report = build_prior(structures, args.output, settings, seed=args.seed, progress=not args.quiet)
    print(f"{report.n_frames} {args.method} frames at {args.temperature:g} K ({report.n_failed_runs} MD runs skipped), "
          f"{report.xtb_wall_s:.0f} s of xTB; fit {report.fit_wall_s:.0f} s, held-out xTB forces "
          f"{report.valid_forces_mae_meV_per_A:.1f} meV/Å")
    print(f"prior model: {report.model} (fine-tune from it: anids-md train --config rmd17-50 init={report.model} ...)")


def xtb_data_arguments(p) -> None:
    from .settings import DatasetSettings

    d = DatasetSettings()
    p.add_argument("-o", "--output", required=True, help="folder of the shards and manifest.json (a restarted build resumes there)")
    p.add_argument("--molecules", type=_count, help="a seeded random subset of QM9 of this many molecules (default all of H C N O F)")
    p.add_argument("--conformers", type=_count, default=d.conformers, help="per molecule, at temperatures spread over the range")
    p.add_argument("--min-temperature", type=_positive, default=d.min_temperature_K, help="K")
    p.add_argument("--max-temperature", type=_positive, default=d.max_temperature_K, help="K")
    p.add_argument("--shard-molecules", type=_count, default=d.shard_molecules, help="molecules per shard")
    p.add_argument("--method", choices=XTB_METHODS, default=d.method, help="xTB level (tblite)")
    p.add_argument("--workers", type=_count, default=1, help="labelling processes (one thread each)")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="local process pool, or a Dask cluster")
    p.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    p.add_argument("--seed", type=int, default=d.seed, help="the subset and the displacements")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_xtb_data(args) -> None:
    from .data import read_qm9
    from .fit.process import termination_as_interrupt
    from .foundation import build_dataset
    from .reference.labelling import labelling_pool
    from .settings import DatasetSettings

    settings = DatasetSettings(conformers=args.conformers, min_temperature_K=args.min_temperature, max_temperature_K=args.max_temperature,
                               shard_molecules=args.shard_molecules, method=args.method, seed=args.seed)
    molecules = read_qm9(elements=[1, 6, 7, 8, 9], limit=args.molecules, seed=args.seed)
    with termination_as_interrupt(), labelling_pool(args.executor, args.workers, 1, args.scheduler) as executor:
        manifest = build_dataset(molecules, args.output, settings, executor, progress=not args.quiet)
    print(f"{manifest['frames']} frames of {len(molecules)} molecules in {len(manifest['shards'])} shards "
          f"({manifest['skipped_scf']} skipped: SCF not converged), {manifest['wall_s']:.0f} s; train on {args.output}/manifest.json")


def pretrain_arguments(p) -> None:
    p.add_argument("--config", help="a packaged recipe by name (pretrain_qm9) or a YAML file")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. noise.kind=anisotropic optim.max_steps=1000; "
                   "resume=true continues a run folder with other settings, overwrite=true starts it afresh")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_pretrain(args) -> None:
    from .train import PretrainConfig, load_config, pretrain

    config = load_config(args.config, args.overrides, kind=PretrainConfig)
    summary = pretrain(config, progress=not args.quiet)
    if summary.get("valid"):
        v = summary["valid"]
        print(f"model: {config.run_dir / 'model.safetensors'} ({summary['noise']} noise, {summary['steps']} steps)")
        print(f"validation (best epoch {summary['best_epoch']}): denoising loss {v['denoise']:.4f}, KL {v['kl']:.4f}")


def noise_arguments(p) -> None:
    p.add_argument("checkpoint", help="pretrained checkpoint (or shipped name, e.g. qm9-anids)")
    p.add_argument("input", help="structure file ASE reads (one structure)")
    p.add_argument("--json", help="write symbols, positions, covariance (N×3×3, Å²), eigen-decomposition (and the check)")
    p.add_argument("--plot", help="PNG of the molecule with one ellipsoid per atom (and P_check.png with --check)")
    p.add_argument("--check", action="store_true", help="energy curvature along each atom's noise axes: is stiff stiffer than soft?")
    p.add_argument("--landscape", action="store_true", help="energy on a grid along the two leading noise directions")
    p.add_argument("--model", help="force field giving the energies for --check/--landscape (checkpoint or shipped name)")
    p.add_argument("--dft", action="store_true", help="also check with PySCF single points (cached; slow beyond small molecules)")
    p.add_argument("--displacement", type=_positive, default=0.02, help="Å, along each axis for --check")
    level_arguments(p)


def cmd_noise(args) -> None:
    from .noise import LearnedNoise, describe_noise, plot_noise

    noise = LearnedNoise.from_checkpoint(args.checkpoint)
    report = describe_noise(noise, _read_one(args.input))
    print(f"{noise.kind} noise; Σ_i eigenvalues in Å², angle between the stiffest axis and the nearest bond")
    print(f"{'atom':>6} {'λ1':>9} {'λ2':>9} {'λ3':>9} {'√(trΣ/3) Å':>11} {'angle':>7}")
    for i, symbol in enumerate(report.symbols):
        l1, l2, l3 = report.eigenvalues[i]
        angle = report.stiff_axis_bond_angle_deg[i]
        angle = "—" if angle != angle else f"{angle:.1f}°"  # NaN: no single stiffest axis
        print(f"{symbol + str(i):>6} {l1:9.5f} {l2:9.5f} {l3:9.5f} {report.noise_scale[i]:11.4f} {angle:>7}")
    result = {"checkpoint": str(args.checkpoint), "input": str(args.input), **report.to_dict()}
    if args.check or args.landscape:
        result.update(_check_noise(args, report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot_noise(report, args.plot)
        print(f"wrote {args.plot}")


def _check_noise(args, report) -> dict:
    """The physics check of `anids-md noise --check/--landscape`: energy curvature along each
    atom's noise axes, with the force field `--model` (and DFT with `--dft`)."""
    from pathlib import Path

    from .calculator import AniDSCalculator
    from .validate import dft_single_point
    from .validate.noise_check import check_noise, noise_landscape, plot_check

    if not args.model:
        raise ValueError("--check and --landscape need --model: the force field (checkpoint or shipped name) that gives the energies")
    calc = AniDSCalculator(args.model, dtype="float64")

    def model_energy(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return atoms.get_potential_energy()

    # The force-field check is cheap (6 calls per atom), so --landscape reports it too.
    checks = [check_noise(report, model_energy, args.displacement, f"force field {args.model}")]
    if args.dft:
        level = _level(args)
        checks.append(check_noise(report, lambda a: dft_single_point(a, level, cache_dir=args.cache).energy_eV, args.displacement,
                                  f"DFT {level.label()}"))
    result = dict(zip(["check", "check_dft"], [c.to_dict() for c in checks]))
    for check in checks:
        print(f"{check.method}: stiffest axis curved more than the softest for {100 * check.fraction_stiff_above_soft:.0f} % "
              f"of atoms; Spearman(1/λ, curvature) {check.spearman:.2f}")
    landscape = noise_landscape(report, model_energy) if args.landscape else None
    if landscape:
        result["landscape"] = landscape
    if args.plot:
        path = Path(args.plot)
        out = path.with_name(path.stem + "_check" + path.suffix)
        plot_check(checks[0], report, out, landscape)
        print(f"wrote {out}")
    return result


def evaluate_arguments(p) -> None:
    from .units import ENERGY_UNITS_TO_EV

    p.add_argument("checkpoint", help="checkpoint file or shipped model name")
    p.add_argument("data", help="rMD17 npz or a file ASE reads, with energies and forces")
    p.add_argument("--json", help="write the metrics to this JSON file")
    p.add_argument("--frames", type=_count, help="use only the first N frames (default all)")
    p.add_argument("--energy-unit", help=f"unit of energies in non-npz files: {', '.join(ENERGY_UNITS_TO_EV)} (default eV)")
    p.add_argument("--forces-unit", help="unit of forces in non-npz files, e.g. Hartree/Bohr (default: the energy unit per Å)")
    p.add_argument("--energy-key", default="energy", help="info key of the energy label in non-npz files (e.g. REF_energy)")
    p.add_argument("--forces-key", default="forces", help="array key of the force labels in non-npz files (e.g. REF_forces)")
    device_arguments(p, "float64")


def cmd_evaluate(args) -> None:
    from .checkpoint import check_elements, load_force_field
    from .data import read_structures
    from .evaluation import evaluate
    from .runtime import resolve_device, resolve_dtype

    model, metadata = load_force_field(args.checkpoint, device=resolve_device(args.device), dtype=resolve_dtype(args.dtype))
    frames = slice(None) if args.frames is None else slice(0, args.frames)
    structures = read_structures(args.data, frames=frames, energy_unit=args.energy_unit, energy_key=args.energy_key,
                                 forces_key=args.forces_key, forces_unit=args.forces_unit)
    check_elements(metadata, {int(z) for a in structures for z in a.numbers})
    metrics = evaluate(model, structures)
    _print_metrics(str(args.data), metrics)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": str(args.checkpoint), "data": str(args.data), **metrics}, handle, indent=2)


def optimize_arguments(p) -> None:
    model_and_structures_arguments(p, optimize=True)
    p.add_argument("--fmax", type=_positive, default=0.01, help="convergence: the largest per-atom force norm, eV/Å (ASE's fmax)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="BFGS", help="ASE optimiser")
    p.add_argument("--steps", type=_count, default=1000, help="most optimiser steps per structure")
    p.add_argument("--verbose", action="store_true", help="print the optimiser's log")


def cmd_optimize(args) -> None:
    from ase.io import write

    from .calculator import AniDSCalculator
    from .simulate import optimize

    frames = _read_frames(args.input, args.index)
    calc = AniDSCalculator(args.checkpoint, device=args.device, dtype=args.dtype)
    failed = 0
    for k, atoms in enumerate(frames):
        atoms.calc = calc
        start = atoms.get_potential_energy()
        result = optimize(atoms, fmax=args.fmax, optimizer=args.optimizer, steps=args.steps, logfile="-" if args.verbose else None)
        state = "converged" if result.converged else "NOT converged"
        label = f"structure {k}: " if len(frames) > 1 else ""
        print(f"{label}{args.optimizer} {state} in {result.steps} steps: fmax {result.fmax_eV_per_A:.4f} eV/Å "
              f"(largest force on an atom); energy {start:.4f} eV -> {atoms.get_potential_energy():.4f} eV")
        failed += not result.converged
    write(args.output, frames, format="extxyz")
    print(f"wrote {len(frames)} structure(s) to {args.output}")
    if failed:
        raise RuntimeError(f"{failed} of {len(frames)} optimisations did not converge in {args.steps} steps")


def md_arguments(p) -> None:
    model_and_structures_arguments(p, optimize=False)
    p.add_argument("--ensemble", choices=ENSEMBLES, default="nve", help="velocity Verlet, or Langevin at --temperature")
    p.add_argument("--temperature", type=_non_negative, default=300.0, help="K (initial velocities; Langevin target)")
    p.add_argument("--timestep", type=_positive, default=0.5, help="fs")
    p.add_argument("--steps", type=_count, default=1000, help="MD steps")
    p.add_argument("--interval", type=_count, default=10, help="steps between recorded frames")
    p.add_argument("--friction", type=_non_negative, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and Langevin noise")
    p.add_argument("--compile", action="store_true", help="torch.compile the network: up to 2x faster steps after a first "
                   "call that compiles (tens of seconds); on CPU needs a C++ compiler")
    p.add_argument("--uncertainty", action="store_true", help="with a committee checkpoint: report the members' spread "
                   "(energy_std, per-atom forces_std, also written into each recorded frame)")


def cmd_md(args) -> None:
    import numpy as np

    from .calculator import AniDSCalculator
    from .simulate import run_md
    from .units import FS_PER_PS

    (atoms,) = _read_frames(args.input, args.index, single=True)
    atoms.calc = AniDSCalculator(args.checkpoint, device=args.device, dtype=args.dtype, compile=args.compile)
    if args.uncertainty and len(atoms.calc.models) < 2:
        raise ValueError(f"--uncertainty needs a committee checkpoint (anids-md committee MODEL MODEL ... -o FILE); "
                         f"{args.checkpoint} is a single model")
    report = run_md(atoms, args.ensemble, args.temperature, args.timestep, args.steps, trajectory=args.output,
                    interval=args.interval, friction_per_fs=args.friction, seed=args.seed, progress=True)
    if report.stopped:  # a summary of a run that did not happen would mislead
        raise RuntimeError(f"MD {report.stopped}; {args.output} holds the {len(report.times_ps)} frames recorded before it")
    print(f"{args.ensemble.upper()} {args.steps} steps of {args.timestep} fs ({args.steps * args.timestep / FS_PER_PS:.3f} ps); wrote {args.output}")
    print(f"mean temperature {report.mean_temperature_K:.1f} K")
    if args.ensemble == "nve":
        print(f"energy drift {report.drift_meV_per_atom_per_ps:+.4f} meV/atom/ps")
    if args.uncertainty:
        spread = np.asarray(report.max_forces_std_eV_per_A) * 1000
        print(f"committee spread: largest per-atom forces_std {spread.mean():.1f} meV/Å on average over the recorded frames, "
              f"{spread.max():.1f} at most (frame {int(spread.argmax())}); energy_std {1000 * np.mean(report.energy_std_eV):.1f} meV "
              "on average")
    if not report.stable:
        hint = f"; a {args.timestep:g} fs timestep is large for molecules with hydrogen: try 0.5 fs" if args.timestep > 1 else ""
        raise RuntimeError(f"UNSTABLE: {len(report.unstable_bonds)} bonds left [0.7, 1.5]× their starting length{hint}: "
                           f"{report.unstable_bonds}")
    print(f"all {len(report.bonds)} bonds stayed within [0.7, 1.5]× their starting length")


def dft_optimize_arguments(p) -> None:
    p.add_argument("input", help="structure file ASE reads (one structure)")
    p.add_argument("-o", "--output", required=True, help="extxyz of the DFT minimum")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    level_arguments(p)


def cmd_dft_optimize(args) -> None:
    from ase.io import write

    from .simulate import largest_force
    from .validate import dft_optimize, kabsch_rmsd

    atoms = _read_one(args.input)
    level = _level(args)
    result = dft_optimize(atoms, level, cache_dir=args.cache, progress=not args.quiet)
    result.atoms.info["energy_eV"] = result.energy_eV
    write(args.output, result.atoms, format="extxyz")
    state = "converged" if result.converged else "NOT converged"
    print(f"{level.label()}: {state} in {result.steps} gradients ({result.wall_s:.1f} s{', cached' if result.cached else ''})")
    print(f"energy {result.energy_eV:.6f} eV, fmax {largest_force(result.forces_eV_per_A):.5f} eV/Å, "
          f"RMSD to the start {kabsch_rmsd(atoms, result.atoms):.4f} Å; wrote {args.output}")


def rmsd_arguments(p) -> None:
    p.add_argument("a", help="first structure file (ASE reads it)")
    p.add_argument("b", help="second structure file, same atoms in the same order")
    p.add_argument("--heavy", action="store_true", help="ignore hydrogens")
    p.add_argument("--index", type=int, help="use this structure of multi-structure files (-1: the last); needed when a file holds several")


def cmd_rmsd(args) -> None:
    from .data.readers import read_xyz_positions
    from .validate import kabsch_rmsd

    def structure(path):
        frames = read_xyz_positions(path)  # plain XYZ without ase.io: the command starts in well under a second
        if frames is None or (args.index is None and len(frames) > 1):
            return _read_one(path, args.index)
        if args.index is not None and not -len(frames) <= args.index < len(frames):
            raise ValueError(f"{path} holds {len(frames)} structures; --index {args.index} is out of range")
        return frames[args.index or 0]

    rmsd = kabsch_rmsd(structure(args.a), structure(args.b), heavy_atoms_only=args.heavy)
    print(f"RMSD {rmsd:.5f} Å ({'heavy atoms' if args.heavy else 'all atoms'}, after Kabsch alignment)")


def validate_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint file or shipped model name")
    p.add_argument("structures", nargs="*", help="starting structures (files ASE reads)")
    p.add_argument("--rmd17", help="rMD17 npz: start from its first --frames frames")
    p.add_argument("--frames", type=_count, default=5, help="frames of --rmd17 to use")
    p.add_argument("--fmax", type=_positive, default=1e-3, help="ML convergence, eV/Å (ASE's fmax)")
    p.add_argument("--json", help="write the table and summary")
    p.add_argument("--plot", help="PNG of the RMSDs and energy penalties")
    level_arguments(p)


def cmd_validate(args) -> None:
    from .validate import as_json, compare_minima, plot_comparison, summarize

    structures, names = [], []
    for path in args.structures:
        structures.append(_read_one(path))
        names.append(str(path))
    if args.rmd17:
        from .data import read_rmd17

        for k, atoms in enumerate(read_rmd17(args.rmd17)[: args.frames]):
            structures.append(atoms)
            names.append(f"frame {k}")
    if not structures:
        raise ValueError("give structure files and/or --rmd17 FILE --frames N")
    level = _level(args)
    rows = compare_minima(args.checkpoint, structures, names, level, fmax=args.fmax, cache_dir=args.cache)
    summary = summarize(rows)
    print(f"{'structure':>14} {'ML-DFT Å':>9} {'start-DFT':>9} {'reduction':>9} {'ΔE meV':>8} {'ML s':>6} {'DFT s':>7}")
    for r in rows:
        print(f"{r.name[-14:]:>14} {r.rmsd_ml_dft_A:9.4f} {r.rmsd_start_dft_A:9.4f} {r.rmsd_reduction_A:9.4f} "
              f"{r.dft_energy_penalty_meV:8.2f} {r.ml_wall_s:6.2f} {r.dft_wall_s:7.1f}")
    print(f"mean RMSD between minima {summary['mean_rmsd_ml_dft_A']:.4f} Å (max {summary['max_rmsd_ml_dft_A']:.4f}); "
          f"mean RMSD reduction {summary['mean_rmsd_reduction_A']:.4f} Å; DFT/ML wall time {summary['dft_over_ml_wall']:.0f}×")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": str(args.checkpoint), "level": level.label(), "summary": summary, "structures": as_json(rows)}, handle, indent=2)
    if args.plot:
        plot_comparison(rows, args.plot, f"{args.checkpoint} vs {level.label()}")


def committee_arguments(p) -> None:
    p.add_argument("members", nargs="+", help="two or more force-field checkpoints of the same elements and cutoff (e.g. seeds)")
    p.add_argument("-o", "--output", required=True, help="the committee checkpoint (.safetensors)")


def cmd_committee(args) -> None:
    from .checkpoint import save_committee

    save_committee(args.members, args.output)
    print(f"wrote {args.output}: a committee of {len(args.members)} models (the calculator reports energy_std and forces_std)")


def fit_arguments(p) -> None:
    from .fit.settings import FitSettings  # its defaults are the command's

    d = FitSettings()
    p.add_argument("input", help="SMILES string (e.g. CCO) or a structure file ASE reads")
    p.add_argument("-o", "--output", required=True, help="output folder (model.safetensors, report.json, report.png, ...)")
    p.add_argument("--frames", type=_count, default=d.frames, help="configurations drawn by the sampler and labelled first")
    p.add_argument("--temperature", type=_positive, default=d.temperature_K, help="K: sampling, MD rounds, stability check")
    p.add_argument("--rounds", type=_non_negative_count, default=d.rounds, help="rounds of MD with the current model, labelling and refitting")
    p.add_argument("--frames-per-round", type=_count, default=d.frames_per_round, help="MD frames labelled and added per round (with the model's minimum from each DFT minimum)")
    p.add_argument("--test-frames", type=_count, default=d.test_frames, help="held-out frames, never trained on: from MD with the model the last round sampled with")
    p.add_argument("--md-steps", type=_count, default=d.md_steps, help="0.5 fs steps per MD round")
    p.add_argument("--sampler", choices=SAMPLERS, default=d.sampler, help="how the first candidates are made: displacements around "
                   "the DFT minimum, or xtb-md (MD with GFN2-xTB from the xTB minima of RDKit conformers; a molecule prior on those frames)")
    p.add_argument("--selection", choices=SELECTIONS, default=d.selection, help="which candidates get DFT labels: random, farthest-point "
                   "in the model's features, or where the committee disagrees most")
    p.add_argument("--committee", type=_count, default=d.committee, help="models per fit (seeds); 2 or more: model.safetensors is a "
                   "committee whose spread the calculator reports")
    p.add_argument("--candidates", type=_count, default=d.candidates, help="candidates per DFT label, from the sampler and each MD round")
    p.add_argument("--conformers", type=_count, default=d.conformers, help="xtb-md: RDKit conformers relaxed with xTB")
    p.add_argument("--pool-frames", type=_count, default=d.pool_frames, help="xtb-md: xTB MD frames (the prior's data, the first candidates)")
    p.add_argument("--prior-epochs", type=_count, default=d.prior_epochs, help="xtb-md: epochs of the molecule prior's fit")
    p.add_argument("--prior-init", type=_optional_checkpoint, default=d.prior_init, help="xtb-md: checkpoint the prior's fit starts from, 'none' for from scratch "
                   "(default: %(default)s; H C N O F)")
    p.add_argument("--dft-conformers", type=_count, default=d.dft_conformers, help="xtb-md: the lowest distinct xTB minima optimised "
                   "with DFT (their gradients train the model; the report gives the ML-vs-DFT RMSD of each)")
    p.add_argument("--dft-budget", type=_count, help="DFT calls for training (minimum, first frames, rounds): no round starts "
                   "that would pass it; the held-out frames come on top")
    p.add_argument("--time-budget", type=_positive, help="minutes: no round starts after this")
    p.add_argument("--stop-spread", type=_positive, help="meV/Å, with --selection committee: rounds end when no candidate's largest "
                   "per-atom force spread reaches it")
    p.add_argument("--max-rmsd", type=_positive, default=d.max_rmsd_A, help="Å: the validation fails (exit status 1) when the ML "
                   "minimum is farther than this from the DFT minimum")
    p.add_argument("--init", default=d.init, help="pretrained backbone (checkpoint or shipped name)")
    p.add_argument("--steps", type=_count, default=d.steps, help="optimiser steps of the first fit and of the last "
                   "round's")
    p.add_argument("--refit-steps", type=_optional_count, default=d.refit_steps, help="optimiser steps of the other rounds' fits, "
                   "continued from the previous fit; 'none' to start every fit afresh for --steps (default: %(default)s)")
    p.add_argument("--workers", type=_count, default=d.workers, help="parallel DFT labelling processes")
    p.add_argument("--executor", choices=EXECUTORS, default=d.executor, help="local process pool, or a Dask cluster")
    p.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    p.add_argument("--seed", type=int, default=d.seed, help="conformers, sampling, MD and training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    level_arguments(p, from_smiles=True)


def cmd_fit(args) -> None:
    from .fit import FitSettings, fit

    settings = FitSettings(level=_level(args), frames=args.frames, temperature_K=args.temperature, rounds=args.rounds,
                           frames_per_round=args.frames_per_round, test_frames=args.test_frames, md_steps=args.md_steps,
                           sampler=args.sampler, selection=args.selection, committee=args.committee, candidates=args.candidates,
                           conformers=args.conformers, pool_frames=args.pool_frames, prior_epochs=args.prior_epochs,
                           prior_init=args.prior_init, dft_conformers=args.dft_conformers,
                           max_rmsd_A=args.max_rmsd, dft_budget=args.dft_budget, time_budget_min=args.time_budget,
                           stop_spread_meV_per_A=args.stop_spread, init=args.init, steps=args.steps,
                           refit_steps=args.refit_steps, workers=args.workers, executor=args.executor,
                           scheduler=args.scheduler, threads=args.threads, seed=args.seed)
    report = fit(args.input, args.output, settings, charge=args.charge, spin=args.spin, cache_dir=args.cache, progress=not args.quiet)
    print(f"{report.formula} at {report.level}: held-out force MAE {report.heldout_forces_mae_meV_per_A:.1f} meV/Å, "
          f"energy MAE {report.heldout_energy_mae_meV:.1f} meV ({report.n_heldout_frames} frames)")
    for k, conformer in enumerate(report.conformers[1:], start=1):
        print(f"conformer {k}: ML vs DFT minimum RMSD {conformer['rmsd_A']:.4f} Å (heavy atoms {conformer['rmsd_heavy_A']:.4f})")
    print(f"ML vs DFT minimum RMSD {report.minimum_rmsd_A:.4f} Å; NVE drift {report.nve_drift_meV_per_atom_per_ps:.3f} meV/atom/ps; "
          f"MD at {args.temperature:g} K {'stable' if report.md_stable else 'UNSTABLE'}")
    if report.spread_error_spearman is not None:
        print(f"committee spread vs held-out error per frame: Spearman {report.spread_error_spearman:.2f}")
    print(f"{report.n_dft_calls} DFT calls ({report.n_dft_computed} computed now), {report.wall_s:.0f} s; "
          f"wrote {args.output}/model.safetensors, report.json, report.png")
    if not report.passed:  # the files stay for inspection; scripts see the status
        raise RuntimeError("FAILED VALIDATION: " + "; ".join(report.failures))
    print("validation passed")


def demo_arguments(p) -> None:
    p.add_argument("--model", default="rmd17-ethanol", help="checkpoint file or shipped model name")
    p.add_argument("--steps", type=_count, default=2000, help="MD steps of 0.5 fs")
    p.add_argument("--plot", default="demo_minima.png", help="PNG comparing the minima")
    level_arguments(p)


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.model, steps=args.steps, level=_level(args), plot=args.plot, cache_dir=args.cache)


# name, help, arguments, run, whether it takes --threads (PySCF and rmsd do not use torch's)
COMMANDS = [
    ("train", "train a force field from a YAML config", train_arguments, cmd_train, True),
    ("prior", "a molecule prior: xTB minimum, Langevin MD with xTB, a short fit on the frames", prior_arguments, cmd_prior, True),
    ("xtb-data", "non-equilibrium QM9 conformers labelled with GFN2-xTB, in resumable shards", xtb_data_arguments, cmd_xtb_data, True),
    ("pretrain", "denoising pretraining (QM9 or your structures); torchrun for several processes", pretrain_arguments, cmd_pretrain, True),
    ("noise", "per-atom noise covariances of a pretrained generator for a structure", noise_arguments, cmd_noise, True),
    ("evaluate", "energy and force errors of a checkpoint on labelled data", evaluate_arguments, cmd_evaluate, True),
    ("optimize", "relax structures with a model", optimize_arguments, cmd_optimize, True),
    ("md", "run molecular dynamics with a model", md_arguments, cmd_md, True),
    ("committee", "one checkpoint of several models whose spread the calculator reports", committee_arguments, cmd_committee, True),
    ("dft-optimize", "PySCF + geomeTRIC reference optimisation (cached; PySCF uses all cores)", dft_optimize_arguments,
     cmd_dft_optimize, False),
    ("rmsd", "RMSD (Å) between two conformations of the same atoms after Kabsch alignment", rmsd_arguments, cmd_rmsd, False),
    ("validate", "ML minima against DFT minima: RMSD, energy penalty, wall times", validate_arguments, cmd_validate, True),
    ("fit", "from a SMILES string or structure to a force field validated against DFT, in one command", fit_arguments, cmd_fit, True),
    ("demo", "ethanol: ML vs DFT minimum (RMSD, plot) and a short NVE MD with a shipped model", demo_arguments, cmd_demo, True),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anids-md", description="Force fields trained with learned-noise denoising (eV, Å).",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext, arguments, run, threads in COMMANDS:
        p = sub.add_parser(name, help=helptext, description=helptext, formatter_class=_HelpFormatter)
        p.set_defaults(run=run)
        if threads:
            # Measured (docs/performance.md): one thread is fastest for molecules, and two threads
            # on a 2-core machine that is doing anything else run twice as slow.
            p.add_argument("--threads", type=_count, default=1, help="torch CPU threads")
        arguments(p)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    # The library reports through logging (logger "anids_md"); the command shows INFO and above.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("anids_md")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        if getattr(args, "threads", None) is not None:
            from .runtime import set_threads

            set_threads(args.threads)
        args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        sys.exit("anids-md: interrupted")
    except Exception as error:  # one line for the user; the traceback with --debug
        if args.debug:
            raise
        text = str(error) if isinstance(error, (ValueError, RuntimeError, OSError)) else f"{type(error).__name__}: {error}"
        sys.exit(f"anids-md: error: {text}")
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    main()
