"""DFT references (PySCF, minimal basis so it takes seconds), RMSD, optimisation and MD reports."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential
from ase.io import write
from scipy.spatial.transform import Rotation

from anids_md.cli import main
from anids_md.reference import dft as dft_module
from anids_md.simulate import optimize, run_md
from anids_md.validate import DFTLevel, dft_optimize, dft_single_point, kabsch_rmsd

SMALL = DFTLevel(xc="PBE", basis="sto-3g")


def water(shift=0.05):
    atoms = molecule("H2O")
    atoms.positions[1] += [0.0, shift, shift]
    return atoms


def test_dft_forces_are_minus_energy_gradient(tmp_path):
    atoms = water()
    forces = dft_single_point(atoms, SMALL, cache_dir=tmp_path).forces_eV_per_A
    h = 1e-3
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[1, 1] += sign * h
        energies.append(dft_single_point(moved, SMALL, cache_dir=tmp_path).energy_eV)
    assert forces[1, 1] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=2e-3)


def test_dft_optimisation_converges_and_cache_hit_does_not_recompute(tmp_path, monkeypatch):
    result = dft_optimize(water(), DFTLevel(basis="sto-3g"), cache_dir=tmp_path)
    assert result.converged and not result.cached and np.abs(result.forces_eV_per_A).max() < 0.02
    assert 0.9 < result.atoms.get_distance(0, 1) < 1.1  # an O-H bond
    # Every gradient evaluation is kept, labelled as a single point at that structure would be.
    path = result.path_frames()
    assert len(path) == result.steps >= 2
    np.testing.assert_allclose(path[0].positions, water().positions, atol=1e-6)
    check = dft_single_point(path[1], DFTLevel(basis="sto-3g"), cache_dir=tmp_path)
    assert path[1].get_potential_energy() == pytest.approx(check.energy_eV, abs=1e-5)
    np.testing.assert_allclose(path[1].get_forces(), check.forces_eV_per_A, atol=1e-3)
    monkeypatch.setattr(dft_module, "_method", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    again = dft_optimize(water(), DFTLevel(basis="sto-3g"), cache_dir=tmp_path)
    assert again.cached and again.energy_eV == result.energy_eV
    np.testing.assert_array_equal(again.atoms.positions, result.atoms.positions)
    np.testing.assert_array_equal(again.path_forces_eV_per_A, result.path_forces_eV_per_A)
    with pytest.raises(pytest.fail.Exception):
        dft_optimize(water(0.06), DFTLevel(basis="sto-3g"), cache_dir=tmp_path)  # another structure is another key


def test_rmsd_ignores_rigid_motion_and_measures_known_displacement():
    atoms = molecule("CH3CH2OH")
    moved = atoms.copy()
    moved.positions = atoms.positions @ Rotation.random(random_state=1).as_matrix().T + [3.0, -1.0, 2.0]
    assert kabsch_rmsd(atoms, moved) < 1e-10
    # Stretching about the centroid cannot be undone by a rotation: RMSD = 0.1 × radius of gyration.
    centre = atoms.positions.mean(axis=0)
    stretched = atoms.copy()
    stretched.positions = centre + 1.1 * (atoms.positions - centre)
    gyration = np.sqrt(((atoms.positions - centre) ** 2).sum(axis=1).mean())
    assert kabsch_rmsd(atoms, stretched) == pytest.approx(0.1 * gyration, rel=1e-9)
    heavy = atoms[atoms.numbers != 1]
    assert kabsch_rmsd(atoms, stretched, heavy_atoms_only=True) == pytest.approx(
        0.1 * np.sqrt(((heavy.positions - heavy.positions.mean(0)) ** 2).sum(axis=1).mean()), rel=1e-9)
    with pytest.raises(ValueError, match="same atoms"):
        kabsch_rmsd(atoms, molecule("H2O"))


def test_optimizer_finds_known_minimum():
    dimer = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.9]])
    dimer.calc = MorsePotential(epsilon=1.0, r0=0.74, rho0=2.0, rcut1=2.5, rcut2=3.0)
    for name in ("BFGS", "LBFGS", "FIRE"):
        result = optimize(dimer, fmax=1e-4, optimizer=name)
        assert result.converged and dimer.get_distance(0, 1) == pytest.approx(0.74, abs=1e-4)
        dimer.positions[1, 2] = 0.9


def test_md_reports_breaking_bonds_as_unstable(tmp_path):
    atoms = molecule("CH3CH2OH")
    atoms.calc = LennardJones(sigma=3.0, epsilon=0.5, rc=8.0)  # far too repulsive: the molecule flies apart
    report = run_md(atoms, "nve", temperature_K=300, timestep_fs=0.5, steps=40, interval=5, trajectory=tmp_path / "t.extxyz")
    assert not report.stable and len(report.unstable_bonds) > 0
    assert all(b["max_ratio"] > 1.5 or b["min_ratio"] < 0.7 for b in report.unstable_bonds)


def test_dft_optimize_rmsd_and_validate_commands(tmp_path, capsys):
    start = tmp_path / "water.xyz"
    write(start, water())
    cache = str(tmp_path / "cache")
    main(["dft-optimize", str(start), "-o", str(tmp_path / "min.extxyz"), "--basis", "sto-3g", "--cache", cache])
    printed = capsys.readouterr()
    assert "converged" in printed.out
    assert "DFT minimum (PBE/sto-3g)" in printed.err and "max |F|" in printed.err  # the progress bar, a tick per gradient
    main(["rmsd", str(start), str(tmp_path / "min.extxyz")])
    assert 0.01 < float(capsys.readouterr().out.split()[1]) < 0.2  # "RMSD 0.05885 Å (...)"
    main(["validate", "rmd17-ethanol", str(start), "--basis", "sto-3g", "--cache", cache, "--json", str(tmp_path / "v.json"),
          "--plot", str(tmp_path / "v.png")])
    report = json.loads((tmp_path / "v.json").read_text())
    row = report["structures"][0]
    for key in ("rmsd_ml_dft_A", "rmsd_start_ml_A", "rmsd_start_dft_A", "rmsd_reduction_A", "dft_energy_penalty_meV", "ml_wall_s", "dft_wall_s"):
        assert np.isfinite(row[key])
    # the same minima, found independently: the model's by BFGS here, DFT's from dft-optimize's file
    from ase.io import read

    from anids_md import AniDSCalculator

    ml = water()
    ml.calc = AniDSCalculator("rmd17-ethanol", dtype="float64")
    optimize(ml, fmax=1e-3)
    dft_minimum = read(tmp_path / "min.extxyz")
    assert row["rmsd_ml_dft_A"] == pytest.approx(kabsch_rmsd(ml, dft_minimum), abs=2e-4)
    assert row["rmsd_start_dft_A"] == pytest.approx(kabsch_rmsd(water(), dft_minimum), abs=1e-6)
    assert row["dft_energy_penalty_meV"] > -1e-3  # the DFT minimum is the lowest DFT energy nearby
    assert (tmp_path / "v.png").exists() and "mean RMSD between minima" in capsys.readouterr().out


def test_d3bj_dispersion_lowers_the_energy_slightly(tmp_path):
    plain = dft_single_point(water(), SMALL, cache_dir=tmp_path).energy_eV
    d3 = dft_single_point(water(), DFTLevel(xc="PBE", basis="sto-3g", dispersion="d3bj"), cache_dir=tmp_path).energy_eV
    assert -0.1 < d3 - plain < 0.0  # eV: attractive and small for one water molecule


def test_noise_check_recovers_a_known_harmonic_surface():
    from anids_md.noise.analysis import NoiseReport
    from anids_md.validate.noise_check import check_noise, spearman

    rng = np.random.default_rng(3)
    atoms = molecule("CH3CH2OH")
    n = len(atoms)
    axes = np.stack([Rotation.random(random_state=k).as_matrix() for k in range(n)])  # columns: principal axes
    eigenvalues = np.sort(rng.uniform(1e-3, 1e-2, (n, 3)), axis=1)
    report = NoiseReport(atoms.get_chemical_symbols(), atoms.numbers, atoms.positions.copy(),
                         np.einsum("nik,nk,njk->nij", axes, eigenvalues, axes), eigenvalues, axes, np.zeros(n, int), np.zeros(n), "test")

    def harmonic(moved):  # stiffness 1/λ along each noise axis: curvature = 1/λ exactly
        d = np.einsum("nik,ni->nk", axes, moved.positions - atoms.positions)
        return 0.5 * float(np.sum(d**2 / eigenvalues))

    check = check_noise(report, harmonic, displacement=0.01)
    np.testing.assert_allclose(check.curvature_eV_per_A2, 1 / eigenvalues, rtol=1e-9)
    assert check.fraction_stiff_above_soft == 1.0 and check.spearman == pytest.approx(1.0)
    flipped = check_noise(report, lambda m: -harmonic(m), displacement=0.01)  # a surface against the noise
    assert flipped.fraction_stiff_above_soft == 0.0 and spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
