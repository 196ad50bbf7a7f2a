"""The `anids-md` command: one subcommand per job, thin over the library."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_train(args) -> None:
    from .train import load_config, train

    config = load_config(args.config, args.overrides)
    summary = train(config, progress=not args.quiet)
    print(f"model: {config.run_dir / 'model.safetensors'}")
    _print_metrics("validation (best epoch)", summary["valid"])
    if "test" in summary:
        _print_metrics(f"test ({summary['test_file']})", summary["test"])


def cmd_pretrain(args) -> None:
    from .train import PretrainConfig, load_config, pretrain

    config = load_config(args.config, args.overrides, kind=PretrainConfig)
    summary = pretrain(config, progress=not args.quiet)
    if summary.get("valid"):
        v = summary["valid"]
        print(f"model: {config.run_dir / 'model.safetensors'} ({summary['noise']} noise, {summary['steps']} steps)")
        print(f"validation (best epoch {summary['best_epoch']}): denoising loss {v['denoise']:.4f}, KL {v['kl']:.4f}")


def cmd_noise(args) -> None:
    from .checkpoint import load_generator
    from .noise import describe_noise, plot_noise

    generator, settings = load_generator(args.checkpoint)
    report = describe_noise(generator, settings, _read_one(args.input))
    print(f"{settings['kind']} noise; Σ_i eigenvalues in Å², angle between the stiffest axis and the nearest bond")
    print(f"{'atom':>6} {'λ1':>9} {'λ2':>9} {'λ3':>9} {'√(trΣ/3) Å':>11} {'angle':>7}")
    for i, symbol in enumerate(report.symbols):
        l1, l2, l3 = report.eigenvalues[i]
        angle = report.stiff_axis_bond_angle_deg[i]
        angle = "—" if angle != angle else f"{angle:.1f}°"  # NaN: no single stiffest axis
        print(f"{symbol + str(i):>6} {l1:9.5f} {l2:9.5f} {l3:9.5f} {report.noise_scale[i]:11.4f} {angle:>7}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": str(args.checkpoint), "input": str(args.input), **report.to_dict()}, handle, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot_noise(report, args.plot)
        print(f"wrote {args.plot}")


def _print_metrics(title: str, m: dict) -> None:
    print(f"{title}: {m['n_structures']} structures")
    print(f"  energy MAE {m['energy_mae_meV']:.2f} meV   RMSE {m['energy_rmse_meV']:.2f} meV")
    print(f"  forces MAE {m['forces_mae_meV_per_A']:.2f} meV/Å RMSE {m['forces_rmse_meV_per_A']:.2f} meV/Å")


def cmd_evaluate(args) -> None:
    from .checkpoint import load_checkpoint, resolve_dtype
    from .data import read_structures
    from .evaluation import evaluate

    model, _ = load_checkpoint(args.checkpoint, device=args.device, dtype=resolve_dtype(args.dtype))
    frames = slice(None) if args.frames is None else slice(0, args.frames)
    metrics = evaluate(model, read_structures(args.data, frames=frames, energy_unit=args.energy_unit))
    _print_metrics(str(args.data), metrics)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": str(args.checkpoint), "data": str(args.data), **metrics}, handle, indent=2)


def _read_one(path):
    from ase.io import read

    from .data import check_structure

    atoms = read(path)
    check_structure(atoms, str(path))
    atoms.calc = None
    return atoms


def cmd_optimize(args) -> None:
    from ase.io import write

    from .calculator import AniDSCalculator
    from .simulate import optimize

    atoms = _read_one(args.input)
    atoms.calc = AniDSCalculator(args.checkpoint, device=args.device, dtype=args.dtype)
    start = atoms.get_potential_energy()
    result = optimize(atoms, fmax=args.fmax, optimizer=args.optimizer, steps=args.steps, logfile="-" if args.verbose else None)
    write(args.output, atoms, format="extxyz")
    state = "converged" if result.converged else "NOT converged"
    print(f"{args.optimizer} {state} in {result.steps} steps: max |F| {result.fmax_eV_per_A:.4f} eV/Å")
    print(f"energy {start:.4f} eV -> {atoms.get_potential_energy():.4f} eV; wrote {args.output}")
    if not result.converged:
        sys.exit(1)


def cmd_md(args) -> None:
    from .calculator import AniDSCalculator
    from .simulate import run_md

    atoms = _read_one(args.input)
    atoms.calc = AniDSCalculator(args.checkpoint, device=args.device, dtype=args.dtype)
    report = run_md(atoms, args.ensemble, args.temperature, args.timestep, args.steps, trajectory=args.output,
                    interval=args.interval, friction_per_fs=args.friction, seed=args.seed, progress=True)
    print(f"{args.ensemble.upper()} {args.steps} steps of {args.timestep} fs ({args.steps * args.timestep / 1000:.3f} ps); wrote {args.output}")
    print(f"mean temperature {report.mean_temperature_K:.1f} K")
    if args.ensemble == "nve":
        print(f"energy drift {report.drift_meV_per_atom_per_ps:+.4f} meV/atom/ps")
    if report.stable:
        print(f"all {len(report.bonds)} bonds stayed within [0.7, 1.5]× their starting length")
    else:
        print(f"UNSTABLE: {len(report.unstable_bonds)} bonds left [0.7, 1.5]× their starting length: {report.unstable_bonds}")


def _level(args):
    from .validate import DFTLevel

    return DFTLevel(xc=args.xc, basis=args.basis, dispersion=args.dispersion, density_fit=not args.no_density_fit, grid_level=args.grid)


def cmd_dft_optimize(args) -> None:
    from ase.io import write

    from .validate import dft_optimize, kabsch_rmsd

    atoms = _read_one(args.input)
    level = _level(args)
    result = dft_optimize(atoms, level.xc, level.basis, level.dispersion, level.density_fit, level.grid_level, cache_dir=args.cache)
    result.atoms.info["energy_eV"] = result.energy_eV
    write(args.output, result.atoms, format="extxyz")
    state = "converged" if result.converged else "NOT converged"
    print(f"{level.label()}: {state} in {result.steps} gradients ({result.wall_s:.1f} s{', cached' if result.cached else ''})")
    print(f"energy {result.energy_eV:.6f} eV, max |F| {abs(result.forces_eV_per_A).max():.5f} eV/Å, "
          f"RMSD to the start {kabsch_rmsd(atoms, result.atoms):.4f} Å; wrote {args.output}")


def cmd_rmsd(args) -> None:
    from .validate import kabsch_rmsd

    print(f"{kabsch_rmsd(_read_one(args.a), _read_one(args.b), heavy_atoms_only=args.heavy):.5f}")


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
        raise SystemExit("give structure files and/or --rmd17 FILE --frames N")
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


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.model, steps=args.steps, level=_level(args), plot=args.plot, cache_dir=args.cache)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anids-md", description="Force fields trained with learned-noise denoising (eV, Å).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a force field from a YAML config")
    p.add_argument("--config", required=True, help="YAML file (see training/configs)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. init=qm9-anids noise=anisotropic optim.lr=1e-3 data.train=FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("pretrain", help="denoising pretraining (QM9 or your structures); torchrun for several processes")
    p.add_argument("--config", help="YAML file (see training/configs/pretrain_qm9.yaml)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. noise.kind=isotropic optim.max_steps=1000")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_pretrain)

    p = sub.add_parser("noise", help="per-atom noise covariances of a pretrained generator for a structure")
    p.add_argument("checkpoint", help="pretrained checkpoint (or shipped name, e.g. qm9-anids)")
    p.add_argument("input", help="structure file ASE reads")
    p.add_argument("--json", help="write symbols, positions, covariance (N×3×3, Å²), eigen-decomposition")
    p.add_argument("--plot", help="PNG of the molecule with one ellipsoid per atom")
    p.set_defaults(run=cmd_noise)

    p = sub.add_parser("evaluate", help="energy and force errors of a checkpoint on labelled data")
    p.add_argument("checkpoint", help="checkpoint file or shipped model name")
    p.add_argument("data", help="rMD17 npz or a file ASE reads, with energies and forces")
    p.add_argument("--json", help="write the metrics to this JSON file")
    p.add_argument("--frames", type=int, help="use only the first N frames")
    p.add_argument("--energy-unit", help="unit of energies in non-npz files (default eV)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.set_defaults(run=cmd_evaluate)

    for name, helptext in [("optimize", "relax a structure"), ("md", "run molecular dynamics")]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("checkpoint", help="checkpoint file or shipped model name")
        p.add_argument("input", help="structure file ASE reads")
        p.add_argument("-o", "--output", required=True, help="output extxyz file")
        p.add_argument("--device", default="cpu")
        p.add_argument("--dtype", choices=["float32", "float64"], default=None)
    p = sub.choices["optimize"]
    p.add_argument("--fmax", type=float, default=0.01, help="force convergence, eV/Å")
    p.add_argument("--optimizer", choices=["BFGS", "LBFGS", "FIRE"], default="BFGS")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(run=cmd_optimize)
    p = sub.choices["md"]
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    p.add_argument("--temperature", type=float, default=300.0, help="K (initial velocities; Langevin target)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--interval", type=int, default=10, help="steps between recorded frames")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_md)

    def add_level(p):
        p.add_argument("--xc", default="PBE")
        p.add_argument("--basis", default="def2-SVP")
        p.add_argument("--dispersion", choices=["d3bj"], default=None)
        p.add_argument("--grid", type=int, default=3, help="PySCF grid level")
        p.add_argument("--no-density-fit", action="store_true", help="exact Coulomb instead of RI-J")
        p.add_argument("--cache", help="folder of cached DFT results (default ~/.cache/anids-md/dft or $ANIDS_MD_CACHE)")

    p = sub.add_parser("dft-optimize", help="PySCF + geomeTRIC reference optimisation (cached)")
    p.add_argument("input", help="structure file ASE reads")
    p.add_argument("-o", "--output", required=True, help="extxyz of the DFT minimum")
    add_level(p)
    p.set_defaults(run=cmd_dft_optimize)

    p = sub.add_parser("rmsd", help="RMSD (Å) between two conformations after Kabsch alignment")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--heavy", action="store_true", help="ignore hydrogens")
    p.set_defaults(run=cmd_rmsd)

    p = sub.add_parser("validate", help="ML minima against DFT minima: RMSD, energy penalty, wall times")
    p.add_argument("checkpoint", help="checkpoint file or shipped model name")
    p.add_argument("structures", nargs="*", help="starting structures (files ASE reads)")
    p.add_argument("--rmd17", help="rMD17 npz: start from its first --frames frames")
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--fmax", type=float, default=1e-3, help="ML convergence, eV/Å")
    p.add_argument("--json", help="write the table and summary")
    p.add_argument("--plot", help="PNG of the RMSDs and energy penalties")
    add_level(p)
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("demo", help="ethanol: ML vs DFT minimum (RMSD, plot) and a short NVE MD with a shipped model")
    p.add_argument("--model", default="rmd17-ethanol")
    p.add_argument("--steps", type=int, default=2000, help="MD steps of 0.5 fs")
    p.add_argument("--plot", default="demo_minima.png", help="PNG comparing the minima")
    add_level(p)
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
