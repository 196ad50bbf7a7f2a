"""Committee checkpoints: one file of several force fields; the calculator predicts with their
mean and reports their spread (energy_std, per-atom forces_std)."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import read, write

from anids_md import AniDSCalculator
from anids_md.checkpoint import CheckpointError, load_force_field, save_checkpoint, save_committee
from anids_md.cli import main
from anids_md.nn import ForceField
from anids_md.simulate import run_md

from .conftest import tiny_config


def perturbed(model: ForceField, seed: int, scale: float = 0.05) -> ForceField:
    other = ForceField(model.config).double()
    other.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return other.eval()


@pytest.fixture
def members(tiny_model, tmp_path):
    return [save_checkpoint(m, tmp_path / f"member{k}.safetensors")
            for k, m in enumerate([tiny_model, perturbed(tiny_model, 1), perturbed(tiny_model, 2)])]


def single(path, atoms):
    atoms = atoms.copy()
    atoms.calc = AniDSCalculator(path, dtype="float64")
    return atoms.get_potential_energy(), atoms.get_forces()


def test_committee_predicts_the_mean_and_reports_the_spread(members, ethanol, tmp_path):
    committee = save_committee(members, tmp_path / "committee.safetensors")
    atoms = ethanol.copy()
    atoms.calc = AniDSCalculator(committee, dtype="float64")
    energies, forces = zip(*(single(m, ethanol) for m in members))
    energies, forces = np.array(energies), np.array(forces)
    assert atoms.get_potential_energy() == pytest.approx(energies.mean(), abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), forces.mean(axis=0), atol=1e-9)
    assert atoms.calc.get_property("energy_std", atoms) == pytest.approx(energies.std(), abs=1e-9)
    spread = atoms.calc.get_property("forces_std", atoms)
    by_hand = np.sqrt(np.mean(np.sum((forces - forces.mean(axis=0)) ** 2, axis=2), axis=0))
    assert spread.shape == (len(atoms),)
    np.testing.assert_allclose(spread, by_hand, atol=1e-9)
    assert spread.min() > 1e-4  # the members differ, so they disagree on every atom


def test_identical_members_have_no_spread(members, ethanol, tmp_path):
    committee = save_committee([members[0], members[0]], tmp_path / "same.safetensors")
    atoms = ethanol.copy()
    atoms.calc = AniDSCalculator(committee, dtype="float64")
    energy, forces = single(members[0], ethanol)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-9)
    assert atoms.calc.get_property("energy_std", atoms) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(atoms.calc.get_property("forces_std", atoms), 0.0, atol=1e-9)


def test_committee_refusals(members, ethanol, tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        save_committee(members[:1], tmp_path / "one.safetensors")
    other_cutoff = save_checkpoint(ForceField(tiny_config(cutoff=3.0)), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="cutoff"):
        save_committee([members[0], other_cutoff], tmp_path / "mixed.safetensors")
    # Members trained on different elements: the committee knows those they share.
    without_oxygen = save_checkpoint(ForceField(tiny_config(elements=[1, 6])), tmp_path / "ch.safetensors")
    shared = AniDSCalculator(save_committee([members[0], without_oxygen], tmp_path / "shared.safetensors"))
    atoms = ethanol.copy()
    atoms.calc = shared
    with pytest.raises(ValueError, match=r"trained on elements \[1, 6\] only"):
        atoms.get_potential_energy()
    committee = save_committee(members, tmp_path / "committee.safetensors")
    with pytest.raises(CheckpointError, match="committee of 3"):
        load_force_field(committee)
    atoms = ethanol.copy()
    atoms.calc = AniDSCalculator(members[0])
    with pytest.raises(ValueError, match="needs a committee"):
        atoms.calc.get_property("forces_std", atoms)


def test_md_records_the_spread_in_report_and_trajectory(members, ethanol, tmp_path):
    atoms = ethanol.copy()
    atoms.calc = AniDSCalculator(save_committee(members, tmp_path / "committee.safetensors"))
    report = run_md(atoms, "nve", 300.0, 0.5, 20, trajectory=tmp_path / "md.extxyz", interval=5)
    frames = read(tmp_path / "md.extxyz", ":")
    assert len(report.max_forces_std_eV_per_A) == len(frames) == 5
    for frame, largest, energy_std in zip(frames, report.max_forces_std_eV_per_A, report.energy_std_eV):
        assert frame.arrays["forces_std"].max() == pytest.approx(largest, rel=1e-6) and largest > 0
        assert frame.info["energy_std"] == pytest.approx(energy_std, rel=1e-6)
        assert frame.get_forces().shape == (len(atoms), 3)


def test_committee_and_md_uncertainty_commands(members, tmp_path, capsys):
    committee = tmp_path / "committee.safetensors"
    main(["committee", *map(str, members), "-o", str(committee)])
    assert "committee of 3" in capsys.readouterr().out
    start = tmp_path / "start.xyz"
    write(start, molecule("CH3CH2OH"))
    main(["md", str(committee), str(start), "-o", str(tmp_path / "t.extxyz"), "--steps", "10", "--interval", "5", "--uncertainty"])
    assert "committee spread" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="needs a committee"):
        main(["md", str(members[0]), str(start), "-o", str(tmp_path / "u.extxyz"), "--steps", "4", "--uncertainty"])
