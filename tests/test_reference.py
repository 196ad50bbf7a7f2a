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
