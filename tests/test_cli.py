import json
import os
import sys

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read, write

from anids_md.cli import build_parser, main
from anids_md.data import read_rmd17

from .conftest import ETHANOL, emt_frames


def test_evaluate_writes_json(tmp_path, capsys):
    out = tmp_path / "errors.json"
    main(["evaluate", "rmd17-ethanol", str(ETHANOL), "--frames", "20", "--json", str(out)])
    metrics = json.loads(out.read_text())
    # the shipped model's rMD17 test error is ~6 meV/Å and ~1 meV: a wrong unit or model breaks these bounds
    assert 2 < metrics["forces_mae_meV_per_A"] < 12 and 0.2 < metrics["energy_mae_meV"] < 3
    import torch

    from anids_md.checkpoint import load_checkpoint
    from anids_md.evaluation import evaluate

    model, _ = load_checkpoint("rmd17-ethanol", dtype=torch.float64)
    independent = evaluate(model, read_rmd17(ETHANOL, frames=slice(0, 20)))
    for key in ("energy_mae_meV", "forces_mae_meV_per_A", "energy_rmse_meV", "forces_rmse_meV_per_A"):
        assert metrics[key] == pytest.approx(independent[key], rel=1e-9)
    assert metrics["n_structures"] == 20
    assert "meV/Å" in capsys.readouterr().out


def test_optimize_and_md(tmp_path, capsys):
    start = tmp_path / "start.xyz"
    write(start, molecule("CH3CH2OH"))
    relaxed = tmp_path / "relaxed.extxyz"
    main(["optimize", "rmd17-ethanol", str(start), "-o", str(relaxed), "--fmax", "0.01"])
    assert "converged" in capsys.readouterr().out
    assert abs(read(relaxed).get_forces()).max() < 0.01
    traj = tmp_path / "traj.extxyz"
    main(["md", "rmd17-ethanol", str(relaxed), "-o", str(traj), "--steps", "40", "--interval", "10", "--temperature", "300"])
    printed = capsys.readouterr().out
    assert "meV/atom/ps" in printed
    frames = read(traj, ":")
    assert len(frames) == 5 and frames[-1].get_velocities() is not None  # steps 0, 10, ..., 40


def run_cli(capsys, *argv) -> tuple[int, str]:
    """Exit code (0 when main returns) and standard error of one command."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
        if isinstance(exit.code, str):
            print(exit.code, file=sys.stderr)
    return code, capsys.readouterr().err


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    code, err = run_cli(capsys, "train", "--config", "rmd17-50", "optim.learnrate=1")
    assert code == 1 and err.strip().splitlines() == [err.strip()] and err.startswith("anids-md: error: config.optim: unknown keys")
    with pytest.raises(ValueError, match="unknown keys"):
        main(["--debug", "train", "--config", "rmd17-50", "optim.learnrate=1"])
    assert run_cli(capsys, "md", "nothing")[0] == 2  # missing arguments: argparse explains and exits
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    code, err = run_cli(capsys, "evaluate", str(bad), "x.npz")
    assert code == 1 and "corrupt" in err and "Traceback" not in err
    code, err = run_cli(capsys, "evaluate", "qm9-anids", str(ETHANOL))
    assert code == 1 and "denoising-pretraining checkpoint" in err
    code, err = run_cli(capsys, "optimize", "rmd17-ethanol", str(ETHANOL), "-o", str(tmp_path / "x.xyz"))
    assert code == 1 and "ASE cannot read this file type" in err
    start = tmp_path / "start.xyz"
    write(start, molecule("CH3CH2OH"))
    code, err = run_cli(capsys, "optimize", "rmd17-ethanol", str(start), "-o", str(tmp_path / "x.xyz"), "--device", "cuda:99")
    assert code == 1 and "cuda:99" in err


def test_help_shows_defaults_and_describes_every_argument():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.dest} has no help"
    assert "(default: 0.01)" in commands["optimize"].format_help()
    assert "(default: 1)" in commands["md"].format_help()  # --threads
    # the molecule prior starts from the foundation unless told 'none'
    assert parser.parse_args(["fit", "CCO", "-o", "x"]).prior_init == "qm9-xtb"
    assert parser.parse_args(["fit", "CCO", "-o", "x", "--prior-init", "none"]).prior_init is None
    assert parser.parse_args(["prior", "a.xyz", "-o", "x", "--init", "NULL"]).init is None


def test_optimize_and_md_on_multi_frame_files(tmp_path, capsys):
    frames = tmp_path / "frames.extxyz"
    starts = [molecule("CH3CH2OH") for _ in range(3)]
    for k, atoms in enumerate(starts):
        atoms.rattle(0.05, seed=k)
    write(frames, starts)
    out = tmp_path / "relaxed.extxyz"
    assert run_cli(capsys, "optimize", "rmd17-ethanol", str(frames), "-o", str(out), "--fmax", "0.02")[0] == 0
    relaxed = read(out, ":")
    assert len(relaxed) == 3
    for atoms in relaxed:  # ASE's fmax: the largest per-atom force norm
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.02
    assert run_cli(capsys, "optimize", "rmd17-ethanol", str(frames), "-o", str(out), "--index", "1")[0] == 0
    assert len(read(out, ":")) == 1
    code, err = run_cli(capsys, "md", "rmd17-ethanol", str(frames), "-o", str(tmp_path / "t.extxyz"), "--steps", "5")
    assert code == 1 and "holds 3 structures; choose one with --index" in err
    code, _ = run_cli(capsys, "md", "rmd17-ethanol", str(frames), "-o", str(tmp_path / "t.extxyz"), "--steps", "5", "--index", "-1")
    assert code == 0


def test_md_exits_nonzero_when_unstable_or_stopped(tmp_path, capsys, monkeypatch):
    import anids_md.simulate as simulate

    start = tmp_path / "start.xyz"
    write(start, molecule("CH3CH2OH"))
    real = simulate.run_md

    def unstable(atoms, *args, **kwargs):
        report = real(atoms, *args, **kwargs)
        report.max_bond_ratio[0] = 2.0  # as if the first bond had broken
        return report

    monkeypatch.setattr(simulate, "run_md", unstable)
    code, err = run_cli(capsys, "md", "rmd17-ethanol", str(start), "-o", str(tmp_path / "t.extxyz"), "--steps", "4", "--interval", "2")
    assert code == 1 and "UNSTABLE" in err

    def stopped(atoms, *args, **kwargs):
        report = real(atoms, *args, **kwargs)
        report.stopped = "stopped at step 3 of 4: positions or velocities became non-finite"
        return report

    monkeypatch.setattr(simulate, "run_md", stopped)
    code, err = run_cli(capsys, "md", "rmd17-ethanol", str(start), "-o", str(tmp_path / "t.extxyz"), "--steps", "4", "--interval", "2")
    assert code == 1 and "non-finite" in err


def test_evaluate_reads_mace_style_keys(tmp_path, capsys):
    frames = read_rmd17(ETHANOL, frames=slice(0, 4))
    for atoms in frames:
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
    path = tmp_path / "mace.extxyz"
    write(path, frames)
    out = tmp_path / "e.json"
    assert run_cli(capsys, "evaluate", "rmd17-ethanol", str(path), "--energy-key", "REF_energy", "--forces-key", "REF_forces",
                   "--json", str(out))[0] == 0
    direct = tmp_path / "direct.json"
    assert run_cli(capsys, "evaluate", "rmd17-ethanol", str(ETHANOL), "--frames", "4", "--json", str(direct))[0] == 0
    assert json.loads(out.read_text())["forces_mae_meV_per_A"] == pytest.approx(json.loads(direct.read_text())["forces_mae_meV_per_A"], rel=1e-6)
    code, err = run_cli(capsys, "evaluate", "rmd17-ethanol", str(path))
    assert code == 1 and "no energy 'energy' and forces 'forces' labels" in err and "REF_energy" in err and "REF_forces" in err


def test_own_data_recipe_from_the_readme(tmp_path, capsys, monkeypatch):
    # The README's command, run in an empty folder; only the training length is cut.
    monkeypatch.chdir(tmp_path)
    write("frames.extxyz", emt_frames(30))
    tiny_prior = ["prior.frames=12", "prior.starts=1", "prior.equilibration_steps=4", "prior.interval=2", "prior.epochs=1",
                  "prior.n_valid=4", "prior.compile=false"]
    assert run_cli(capsys, "train", "--config", "own-data", "data.train=frames.extxyz", "name=my-model", "optim.max_steps=2", *tiny_prior,
                   "--quiet")[0] == 0
    summary = json.loads((tmp_path / "runs" / "my-model" / "summary.json").read_text())
    assert summary["prior"]["n_frames"] == 12 and summary["steps"] == 2  # the recipe built the molecule prior and started from it


def test_demo_runs_with_shipped_model(tmp_path, capsys):
    # A minimal basis keeps the DFT part to seconds; the README's demo uses PBE/def2-SVP.
    plot = tmp_path / "minima.png"
    main(["demo", "--steps", "40", "--basis", "sto-3g", "--cache", str(tmp_path / "dft"), "--plot", str(plot)])
    printed = capsys.readouterr().out
    assert "RMSD between the ML and DFT minima" in printed and "meV/atom/ps" in printed and "all bonds stable" in printed
    assert plot.stat().st_size > 10_000


def test_examples_run_from_any_directory(tmp_path):
    import subprocess
    from pathlib import Path

    write(tmp_path / "frames.extxyz", emt_frames(15))
    script = Path(__file__).resolve().parents[1] / "examples" / "train_own_data.py"
    done = subprocess.run([sys.executable, str(script), "frames.extxyz"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "energy of the first frame" in done.stdout and (tmp_path / "runs" / "own-data" / "model.safetensors").exists()


def test_noise_check_with_model_and_dft(tmp_path, capsys):
    water = tmp_path / "water.xyz"
    write(water, molecule("H2O"))
    out = tmp_path / "check.json"
    code, _ = run_cli(capsys, "noise", "qm9-anids", str(water), "--check", "--landscape", "--model", "rmd17-ethanol", "--dft",
                      "--basis", "sto-3g", "--no-density-fit", "--cache", str(tmp_path / "dft"), "--json", str(out),
                      "--plot", str(tmp_path / "noise.png"))
    assert code == 0
    result = json.loads(out.read_text())
    for check in (result["check"], result["check_dft"]):
        assert set(check) >= {"fraction_stiff_above_soft", "spearman", "curvature_eV_per_A2", "method"}
        assert 0 <= check["fraction_stiff_above_soft"] <= 1 and -1 <= check["spearman"] <= 1
        assert np.array(check["curvature_eV_per_A2"]).shape == (3, 3)
    assert np.array(result["landscape"]["energy_eV"]).shape == (21, 21)
    assert (tmp_path / "noise_check.png").stat().st_size > 10_000
    code, err = run_cli(capsys, "noise", "qm9-anids", str(water), "--check")
    assert code == 1 and "--check and --landscape need --model" in err
