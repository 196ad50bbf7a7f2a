"""The model beyond the physics battery (tests/test_physics.py): other sizes, float32 totals,
growing density mixing, its config, the shipped models' exact outputs."""

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from anids_md import AniDSCalculator
from anids_md.data import graph_from_atoms, read_rmd17
from anids_md.nn import ForceField, ModelConfig

from .conftest import ASPIRIN, tiny_config


def run(model, atoms):
    out = model(graph_from_atoms(atoms, model.config.cutoff).to(dtype=torch.float64))
    return {k: v.detach().numpy() for k, v in out.items() if k != "encoding"}


def test_unknown_element_is_named(tiny_model):
    with pytest.raises(ValueError, match=r"atomic numbers \[7\]"):
        run(tiny_model, Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]))


def test_float32_energy_keeps_large_reference_energies_exact(ethanol):
    model64 = ForceField(tiny_config()).double().eval()
    model32 = ForceField(tiny_config())
    model32.load_state_dict(model64.state_dict())
    e64 = run(model64, ethanol)["energy"][0]
    e32 = model32.eval()(graph_from_atoms(ethanol, 4.0).to(dtype=torch.float32))["energy"]
    assert e32.dtype == torch.float64
    assert abs(e32.item() - e64) < 1e-4  # float32 alone would round -4.2e3 eV to ~5e-4 eV


@pytest.mark.parametrize("lmax, density_mixing", [(1, True), (3, False), (4, True)])
def test_other_sizes_keep_the_physics(ethanol, lmax, density_mixing):
    torch.manual_seed(1)
    model = ForceField(tiny_config(lmax=lmax, layers=3, density_mixing=density_mixing)).double().eval()
    reference = run(model, ethanol)
    rotation = -Rotation.random(random_state=4).as_matrix()  # a rotation and the inversion
    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rotation.T
    out = run(model, moved)
    assert out["energy"][0] == pytest.approx(reference["energy"][0], abs=1e-9)
    np.testing.assert_allclose(out["forces"], reference["forces"] @ rotation.T, atol=1e-10)
    h = 1e-5
    plus, minus = ethanol.copy(), ethanol.copy()
    plus.positions[2, 1] += h
    minus.positions[2, 1] -= h
    numeric = -(run(model, plus)["energy"][0] - run(model, minus)["energy"][0]) / (2 * h)
    assert reference["forces"][2, 1] == pytest.approx(numeric, abs=1e-7) and np.abs(reference["forces"]).max() > 1e-3


def test_density_mixing_grows_a_trained_model_without_changing_it(ethanol):
    """`with_density_mixing` starts the mixing at the identity: the same energies and forces; the
    mixing is live (other weights change the energy); a model that has it is refused."""
    torch.manual_seed(2)
    model = ForceField(tiny_config(density_mixing=False)).double().eval()
    grown = model.with_density_mixing().eval()
    assert grown.config.density_mixing and next(grown.parameters()).dtype == torch.float64
    before, after = run(model, ethanol), run(grown, ethanol)
    assert after["energy"][0] == pytest.approx(before["energy"][0], abs=1e-10)
    np.testing.assert_allclose(after["forces"], before["forces"], atol=1e-10)
    with torch.no_grad():
        grown.encoder.blocks[0].density_mix.weight.mul_(1.5)
    assert abs(run(grown, ethanol)["energy"][0] - before["energy"][0]) > 1e-6
    with pytest.raises(ValueError, match="already mixes"):
        grown.with_density_mixing()


def test_model_config_roundtrip_and_unknown_keys():
    config = tiny_config()
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({**config.to_dict(), "heads": 3})


# rmd17-50-aspirin on rMD17 aspirin test frame 3, float64: energy (eV) and the force on atom 0
# (eV/Å), computed before the checkpoints were rewritten as format 4 (training/convert_checkpoints.py).
SHIPPED_ASPIRIN = (-17617.040077495363, [1.274065529345744, -1.169517827961857, -0.6735037532453184])


def test_the_shipped_aspirin_model_gives_its_recorded_numbers():
    atoms = read_rmd17(ASPIRIN, frames=slice(3, 4))[0]
    atoms.calc = AniDSCalculator("rmd17-50-aspirin", dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(SHIPPED_ASPIRIN[0], abs=1e-8)
    np.testing.assert_allclose(atoms.get_forces()[0], SHIPPED_ASPIRIN[1], atol=1e-10)
