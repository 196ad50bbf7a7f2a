"""The reference layer: xTB single points through tblite, one cache for DFT and xTB whose keys
cannot collide, and named errors for what xTB cannot treat."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from anids_md.reference import DFTLevel, XTBLevel, single_point, xtb_single_point
from anids_md.reference.cache import cache_path


def test_an_xtb_single_point_equals_tblites_own_ase_calculator(tmp_path):
    from tblite.ase import TBLite

    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    result = xtb_single_point(atoms, XTBLevel(), cache_dir=tmp_path)
    direct = atoms.copy()
    direct.calc = TBLite(method="GFN2-xTB", verbosity=0)
    assert result.energy_eV == pytest.approx(direct.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(result.forces_eV_per_A, direct.get_forces(), atol=1e-7)
    assert -320 < result.energy_eV < -300 and np.abs(result.forces_eV_per_A).max() > 0.1  # eV, not Hartree; displaced
    again = single_point(atoms, XTBLevel(), cache_dir=tmp_path)  # the same call through the generic entry: from the cache
    assert again.cached and again.energy_eV == result.energy_eV
    gfn1 = xtb_single_point(atoms, XTBLevel(method="GFN1-xTB"), cache_dir=tmp_path)
    assert not gfn1.cached and abs(gfn1.energy_eV - result.energy_eV) > 1.0  # another level, another entry


def test_dft_and_xtb_cache_entries_never_collide(tmp_path):
    atoms = molecule("H2O")
    paths = {cache_path("dft", "single point", atoms, DFTLevel(), tmp_path), cache_path("dft", "single point", atoms, DFTLevel(basis="sto-3g"), tmp_path),
             cache_path("dft", "optimisation", atoms, DFTLevel(), tmp_path), cache_path("xtb", "single point", atoms, XTBLevel(), tmp_path),
             cache_path("xtb", "single point", atoms, XTBLevel(method="GFN1-xTB"), tmp_path)}
    assert len(paths) == 5
    assert sum(p.name.startswith("xtb-") for p in paths) == 2


@pytest.mark.parametrize("atoms, message", [
    (Atoms(numbers=[1, 87], positions=[[0, 0, 0], [0, 0, 2.0]]),
     "no parameters for atomic numbers \\[87\\]"),
    (Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=[8, 8, 8], pbc=True), "periodic"),
])
def test_what_xtb_cannot_treat_is_named(atoms, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        xtb_single_point(atoms, cache_dir=tmp_path)


def test_the_xtb_hessian_is_the_curvature_of_the_xtb_energy():
    from ase.optimize import BFGS

    from anids_md.reference import xtb_calculator, xtb_hessian

    atoms = molecule("H2O")
    atoms.calc = xtb_calculator()
    BFGS(atoms, logfile=None).run(fmax=1e-4)
    hessian = xtb_hessian(atoms)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
    values = np.linalg.eigvalsh(hessian)
    assert np.abs(values[:6]).max() < 0.05 and values[6] > 5  # translations and rotations, then three stiff vibrations (eV/Å²)
    # independent of the forces it was built from: ½ dᵀHd against the energy rise along a small step
    step = np.random.default_rng(1).normal(size=9) * 0.004
    moved = atoms.copy()
    moved.calc = xtb_calculator()
    moved.positions += step.reshape(3, 3)
    assert 0.5 * step @ hessian @ step == pytest.approx(moved.get_potential_energy() - atoms.get_potential_energy(), rel=0.05)


def test_a_dft_optimisation_from_the_xtb_hessian_reaches_the_same_minimum(tmp_path):
    from anids_md.reference import dft_optimize, xtb_hessian
    from anids_md.validate import kabsch_rmsd

    start = Atoms("H2O", positions=[[0, 0, 0], [1.02, 0, 0], [-0.2, 0.95, 0]])
    level = DFTLevel(basis="sto-3g")
    plain = dft_optimize(start, level, cache_dir=tmp_path)
    guided = dft_optimize(start, level, cache_dir=tmp_path, initial_hessian=xtb_hessian(start))
    assert plain.converged and guided.converged and not guided.cached  # another first guess is another cache entry
    assert kabsch_rmsd(plain.atoms, guided.atoms) < 2e-3
    assert guided.steps <= plain.steps + 1
    with pytest.raises(ValueError, match="initial_hessian must be a finite \\(9, 9\\)"):
        dft_optimize(start, level, cache_dir=tmp_path, initial_hessian=np.eye(6))
