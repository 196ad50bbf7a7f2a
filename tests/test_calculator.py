import numpy as np
import pytest
import torch
from ase import Atoms

from anids_md import AniDSCalculator
from anids_md.checkpoint import save_checkpoint
from anids_md.data import graph_from_atoms
from anids_md.simulate import optimize, run_md


@pytest.fixture
def checkpoint(tiny_model, tmp_path):
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


def model_outputs(model, atoms):
    out = model(graph_from_atoms(atoms, model.config.cutoff).to(dtype=torch.float64))
    return out["energy"].item(), out["forces"].detach().numpy()


def test_calculator_matches_model_and_recomputes(tiny_model, checkpoint, ethanol):
    default_dtype = torch.get_default_dtype()
    atoms = ethanol.copy()
    atoms.calc = AniDSCalculator(checkpoint, dtype="float64", skin=0.5)
    assert torch.get_default_dtype() == default_dtype
    energy, forces = model_outputs(tiny_model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-10)
    assert atoms.get_potential_energies().sum() == pytest.approx(energy, abs=1e-8)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(energy)
    # A small move reuses the neighbour list (built with the skin) and still gives exact numbers.
    atoms.positions[0] += [0.1, 0.0, 0.05]
    energy2, forces2 = model_outputs(tiny_model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(energy2, abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), forces2, atol=1e-10)
    assert energy2 != pytest.approx(energy, abs=1e-6)
    assert atoms.calc.neighbour_list_builds == 1
    # A move beyond half the skin rebuilds it.
    atoms.positions[3] += [0.4, 0.0, 0.0]
    energy3, _ = model_outputs(tiny_model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(energy3, abs=1e-10)
    assert atoms.calc.neighbour_list_builds == 2


def test_calculator_errors(checkpoint, ethanol):
    calc = AniDSCalculator(checkpoint)
    nitrogen = Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]], calculator=calc)
    with pytest.raises(ValueError, match=r"does not know elements with atomic numbers \[7\]"):
        nitrogen.get_potential_energy()
    ethanol.positions[2, 1] = np.nan
    ethanol.calc = calc
    with pytest.raises(ValueError, match="non-finite"):
        ethanol.get_forces()
    with pytest.raises(ValueError, match="dtype"):
        AniDSCalculator(checkpoint, dtype="float16")


def test_float32_calculator_close_to_float64(checkpoint, ethanol):
    atoms32, atoms64 = ethanol.copy(), ethanol.copy()
    atoms32.calc = AniDSCalculator(checkpoint, dtype="float32")
    atoms64.calc = AniDSCalculator(checkpoint, dtype="float64")
    assert atoms32.get_potential_energy() == pytest.approx(atoms64.get_potential_energy(), abs=1e-3)
    np.testing.assert_allclose(atoms32.get_forces(), atoms64.get_forces(), atol=1e-3)


def test_nve_conserves_energy_with_shipped_model():
    from ase.build import molecule

    atoms = molecule("CH3CH2OH")
    atoms.calc = AniDSCalculator("rmd17-ethanol", dtype="float64")
    optimize(atoms, fmax=0.01)
    report = run_md(atoms, "nve", temperature_K=300, timestep_fs=0.5, steps=400, interval=5)
    assert 100 < report.mean_temperature_K < 500  # it really moves
    fluctuation = np.ptp(report.total_energies_eV) * 1000 / len(atoms)
    assert fluctuation < 0.5  # meV/atom over 0.2 ps
    assert abs(report.drift_meV_per_atom_per_ps) < 0.1  # the target, meV/atom/ps (BENCHMARKS.md E)
