import json

import pytest
from ase.build import molecule
from ase.io import read, write

from anids_md.cli import main


def test_evaluate_writes_json(rmd17_dir, tmp_path, capsys):
    out = tmp_path / "errors.json"
    main(["evaluate", "rmd17-ethanol", str(rmd17_dir / "rmd17_ethanol_test_01.npz"), "--frames", "20", "--json", str(out)])
    metrics = json.loads(out.read_text())
    for key in ("energy_mae_meV", "forces_mae_meV_per_A", "energy_rmse_meV", "forces_rmse_meV_per_A"):
        assert 0 < metrics[key] < 1000
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


def test_train_command_and_bad_override(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        main(["train", "--config", "training/configs/rmd17-50.yaml", "optim.learnrate=1"])
    with pytest.raises(SystemExit):
        main(["md", "nothing"])  # missing arguments: argparse explains and exits
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        main(["evaluate", str(bad), "x.npz"])


def test_demo_runs_with_shipped_model(tmp_path, capsys):
    # A minimal basis keeps the DFT part to seconds; the README's demo uses PBE/def2-SVP.
    plot = tmp_path / "minima.png"
    main(["demo", "--steps", "40", "--basis", "sto-3g", "--cache", str(tmp_path / "dft"), "--plot", str(plot)])
    printed = capsys.readouterr().out
    assert "RMSD between the ML and DFT minima" in printed and "meV/atom/ps" in printed and "all bonds stable" in printed
    assert plot.stat().st_size > 10_000
