"""Noise generator, denoising pretraining (one process and two under torchrun), QM9 reader and
checkpoints that hold a generator."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import write
from scipy.spatial.transform import Rotation

from anids_md.checkpoint import CheckpointError, load_checkpoint, load_denoising_head, load_generator
from anids_md.cli import main
from anids_md.data import graph_from_atoms, read_qm9
from anids_md.nn.generator import GeneratorConfig, NoiseGenerator
from anids_md.noise import NoiseConfig, structure_covariances
from anids_md.train import PretrainConfig, load_config, pretrain
from anids_md.train.pretrain import DenoisingPretraining, Pretrainer

from .conftest import PRETRAINING_MOLECULES, TINY_GENERATOR, TINY_MODEL, interrupt, pretrain_config


def tiny_generator(seed=0) -> NoiseGenerator:
    torch.manual_seed(seed)
    generator = NoiseGenerator(GeneratorConfig(elements=[1, 6, 8], cutoff=4.0, channels=8, layers=1, hidden=16)).double()
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return generator


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic", "anisotropic-add"])
def test_generated_covariances_are_spd_rotate_and_ignore_translation(ethanol, kind):
    generator, noise = tiny_generator(), NoiseConfig(kind=kind)
    cov = structure_covariances(noise, graph_from_atoms(ethanol, 4.0), generator).matrices.detach()
    assert torch.allclose(cov, cov.transpose(1, 2), atol=1e-12)
    assert bool((torch.linalg.eigvalsh(cov) > 0).all())
    rotation = torch.from_numpy(Rotation.random(random_state=3).as_matrix())
    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rotation.numpy().T + np.array([1.0, -2.0, 0.5])
    cov_moved = structure_covariances(noise, graph_from_atoms(moved, 4.0), generator).matrices.detach()
    assert torch.allclose(cov_moved, rotation @ cov @ rotation.T, atol=1e-10)
    if kind != "isotropic":
        assert not torch.allclose(cov, cov[:, :1, :1] * torch.eye(3, dtype=cov.dtype))  # really anisotropic


def test_pretraining_gradients_reach_the_generator(ethanol):
    config = load_config(None, TINY_MODEL, kind=PretrainConfig).model
    config.elements = [1, 6, 8]
    from anids_md.nn import ForceField

    generator = tiny_generator().float()
    objective = DenoisingPretraining(ForceField(config), generator, NoiseConfig(kind="anisotropic"), "dens")
    losses = objective(graph_from_atoms(ethanol, 4.0).to(dtype=torch.float32))
    losses["loss"].backward()
    # Everything that shapes Σ learns (the last block's gates of vector features feed nothing).
    for name, p in generator.named_parameters():
        if "head" in name or "embedding" in name or "radial_mlp" in name:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_pretraining_lowers_denoising_loss_and_saves_generator(pretrained, ethanol):
    config, summary = pretrained
    rows = list(csv.DictReader(open(config.run_dir / "log.csv")))
    denoise = [float(r["valid_denoise"]) for r in rows]
    assert len(rows) == 8 and min(denoise[-2:]) < 0.8 * denoise[0]
    path = config.run_dir / "model.safetensors"
    model, metadata = load_checkpoint(path)  # the backbone loads like any force field
    generator, settings = load_generator(path)
    assert settings["kind"] == "anisotropic" and settings["sigma_prior"] == 0.1
    assert metadata["training"]["kind"] == "denoising pretraining"
    head = load_denoising_head(path, model.config)
    graph = graph_from_atoms(ethanol, config.model.cutoff).to(dtype=torch.float32)
    assert head(model.predict(graph, compute_forces=False)["encoding"], graph.edge_index).shape == (9, 3)


def test_checkpoint_without_generator_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no noise generator"):
        load_generator("rmd17-ethanol")


def test_noise_command_json_and_plot(pretrained, tmp_path, capsys):
    config, _ = pretrained
    structure = tmp_path / "ethanol.xyz"
    write(structure, molecule("CH3CH2OH"))
    main(["noise", str(config.run_dir / "model.safetensors"), str(structure), "--json", str(tmp_path / "n.json"), "--plot", str(tmp_path / "n.png")])
    report = json.loads((tmp_path / "n.json").read_text())
    cov = np.array(report["covariance"])
    assert report["symbols"][:3] == ["C", "C", "O"] and cov.shape == (9, 3, 3) and np.array(report["positions"]).shape == (9, 3)
    assert np.allclose(cov, cov.transpose(0, 2, 1)) and (np.linalg.eigvalsh(cov) > 0).all()
    assert all(0 <= a <= 90 for a in report["stiff_axis_bond_angle_deg"])  # anisotropic: every atom has a stiffest axis
    assert (tmp_path / "n.png").stat().st_size > 10_000
    assert "angle" in capsys.readouterr().out


def test_two_process_torchrun_pretraining(tmp_path, structures_file):
    overrides = [f"output_dir={tmp_path}", "name=ddp", f"data.source={structures_file}", "data.n_valid=8", "optim.batch_size=4",
                 "optim.epochs=2", "device=cpu", *TINY_MODEL, *TINY_GENERATOR]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "anids_md.cli", "pretrain", "--quiet", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    n_train = 4 * len(PRETRAINING_MOLECULES) - 8
    assert summary["processes"] == 2 and summary["steps"] == 2 * int(np.ceil(n_train // 2 / 4))
    load_generator(tmp_path / "ddp" / "model.safetensors")


def test_qm9_reader_filters_and_converts(tmp_path):
    header = "Index,SMILES,Elements,XYZ_Ang,InternalEnergy_0K_au"
    rows = [
        '1,"C","[\'C\',\'H\',\'H\',\'H\',\'H\']","[[0.,0.,0.],[0.63,0.63,0.63],[-0.63,-0.63,0.63],[-0.63,0.63,-0.63],[0.63,-0.63,-0.63]]",-40.47893',
        '2,"O","[\'O\',\'H\',\'H\']","[[0.,0.,0.1],[0.,0.76,-0.5],[0.,-0.76,-0.5]]",-76.404702',
        '3,"F","[\'F\',\'H\']","[[0.,0.,0.],[0.,0.,0.92]]",-100.4',
    ]
    (tmp_path / "qm9_part1.csv").write_text("\n".join([header, *rows]) + "\n")
    molecules = read_qm9(tmp_path, elements=[1, 6, 8])
    assert [m.get_chemical_formula() for m in molecules] == ["CH4", "H2O"]
    assert molecules[1].positions[1, 1] == pytest.approx(0.76)
    assert molecules[0].info["energy_U0_eV"] == pytest.approx(-40.47893 * 27.211386245988)
    assert len(read_qm9(tmp_path, max_atoms=3)) == 2 and len(read_qm9(tmp_path, limit=1)) == 1
    (tmp_path / "qm9_part1.csv").write_text("\n".join([header, rows[0].replace("0.63,0.63,0.63", "0.63,nan")]) + "\n")
    with pytest.raises(ValueError, match="row '1'"):
        read_qm9(tmp_path)


def test_pretraining_resumes_from_its_state(tmp_path, structures_file):
    first = pretrain(pretrain_config(tmp_path, structures_file, "optim.epochs=1"), progress=False)
    first_log = (tmp_path / "pt" / "log.csv").read_text()
    with pytest.raises(ValueError, match="optim.epochs differ"):  # no silent resume with other settings
        pretrain(pretrain_config(tmp_path, structures_file, "optim.epochs=2"), progress=False)
    resumed = pretrain(pretrain_config(tmp_path, structures_file, "optim.epochs=2", "resume=true"), progress=False)
    with open(tmp_path / "pt" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and resumed["steps"] == 2 * first["steps"]
    assert (tmp_path / "pt" / "log.csv").read_text().startswith(first_log)  # epoch 1 kept, not redone


def test_interrupted_pretraining_resumes_bit_identically(tmp_path, structures_file, monkeypatch):
    reference = pretrain(pretrain_config(tmp_path / "a", structures_file, "optim.epochs=3"), progress=False)
    restore = interrupt(monkeypatch, Pretrainer, "validate", at_call=2)  # killed during the second epoch's validation
    with pytest.raises(KeyboardInterrupt):
        pretrain(pretrain_config(tmp_path / "b", structures_file, "optim.epochs=3"), progress=False)
    restore()
    resumed = pretrain(pretrain_config(tmp_path / "b", structures_file, "optim.epochs=3"), progress=False)
    # The same noise draws (seeded by the step) and the same learning rates after the resume.
    assert resumed["valid"]["denoise"] == reference["valid"]["denoise"] and resumed["valid"]["kl"] == reference["valid"]["kl"]


def test_pretraining_killed_mid_epoch_resumes_from_its_last_saved_step(tmp_path, structures_file, monkeypatch, caplog):
    settings = ("optim.epochs=2", "optim.checkpoint_steps=2")  # 5 steps per epoch
    reference = pretrain(pretrain_config(tmp_path / "a", structures_file, *settings), progress=False)
    restore = interrupt(monkeypatch, Pretrainer, "objective", at_call=4)  # killed in step 4, after the save at step 2
    with pytest.raises(KeyboardInterrupt):
        pretrain(pretrain_config(tmp_path / "b", structures_file, *settings), progress=False)
    restore()
    assert not (tmp_path / "b" / "pt" / "log.csv").read_text().count("\n") > 1  # no epoch was finished
    with caplog.at_level("INFO", logger="anids_md"):
        resumed = pretrain(pretrain_config(tmp_path / "b", structures_file, *settings), progress=False)
    assert "from step 2 of 10 (epoch 0)" in caplog.text  # steps 1-2 were not redone
    assert resumed["steps"] == reference["steps"] == 10
    assert resumed["valid"]["denoise"] == reference["valid"]["denoise"] and resumed["valid"]["kl"] == reference["valid"]["kl"]
