"""Physics of the model: invariance, equivariance, forces as -dE/dX, smoothness at the cutoff."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from anids_md.data import collate, graph_from_atoms
from anids_md.nn import ForceField, ModelConfig

from .conftest import tiny_config


def run(model, atoms, cutoff=None, denoiser=None):
    graph = graph_from_atoms(atoms, cutoff or model.config.cutoff).to(dtype=torch.float64)
    out = model(graph, denoiser=denoiser)
    return {k: v.detach().numpy() for k, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_rotation_translation_reflection(tiny_model, tiny_head, ethanol, seed):
    reference = run(tiny_model, ethanol, denoiser=tiny_head)
    rotation = Rotation.random(random_state=seed).as_matrix()
    if seed == 1:
        rotation = -rotation  # an improper rotation: the model is E(3)-, not only SE(3)-invariant
    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rotation.T + np.array([1.7, -3.2, 0.4])
    out = run(tiny_model, moved, denoiser=tiny_head)
    assert out["energy"][0] == pytest.approx(reference["energy"][0], abs=1e-9)
    np.testing.assert_allclose(out["energies"], reference["energies"], atol=1e-10)
    np.testing.assert_allclose(out["forces"], reference["forces"] @ rotation.T, atol=1e-10)
    np.testing.assert_allclose(out["vectors"], reference["vectors"] @ rotation.T, atol=1e-10)
    assert np.abs(reference["vectors"]).max() > 1e-3  # the denoising head is not trivially zero


def test_equivariance_by_e3nn(tiny_model, tiny_head, ethanol):
    from e3nn.util.test import assert_equivariant

    graph = graph_from_atoms(ethanol, tiny_model.config.cutoff)  # rotations keep the neighbour list
    assert float(tiny_model(graph)["forces"].abs().max()) > 1e-2  # not trivially equivariant

    def model(positions):
        out = tiny_model(replace(graph, positions=positions), denoiser=tiny_head)
        return out["energy"], out["forces"], out["vectors"]

    # Random rotations and the inversion; energy a scalar, forces and the denoising head's output vectors.
    errors = assert_equivariant(model, args_in=[graph.positions], irreps_in=["1o"], irreps_out=["0e", "1o", "1o"],
                                tolerance=1e-9)
    assert len(errors) == 2 and max(float(e.abs().max()) for e in errors.values()) < 1e-9  # (rotation, inversion) pairs


def test_permutation(tiny_model, ethanol):
    reference = run(tiny_model, ethanol)
    order = np.random.default_rng(0).permutation(len(ethanol))
    out = run(tiny_model, ethanol[order])
    assert out["energy"][0] == pytest.approx(reference["energy"][0], abs=1e-9)
    np.testing.assert_allclose(out["forces"], reference["forces"][order], atol=1e-10)


def test_forces_are_minus_energy_gradient(tiny_model, ethanol):
    forces = run(tiny_model, ethanol)["forces"]
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        plus, minus = ethanol.copy(), ethanol.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(run(tiny_model, plus)["energy"][0] - run(tiny_model, minus)["energy"][0]) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, abs=1e-6)
    assert np.abs(forces).max() > 1e-2


def test_energy_smooth_when_atom_crosses_cutoff(tiny_model):
    cutoff = tiny_model.config.cutoff
    def energy_and_force(distance):
        atoms = Atoms("CO", positions=[[0, 0, 0], [distance, 0, 0]])
        out = run(tiny_model, atoms)
        return out["energy"][0], out["forces"][1, 0]
    inside, outside = energy_and_force(cutoff - 1e-6), energy_and_force(cutoff + 1e-6)
    far = energy_and_force(cutoff + 1.0)
    assert inside[0] == pytest.approx(outside[0], abs=1e-10)
    assert inside[1] == pytest.approx(outside[1], abs=1e-8)
    assert outside[0] == pytest.approx(far[0], abs=1e-12) and outside[1] == 0.0
    # ... while closer in, the pair does interact.
    assert abs(energy_and_force(cutoff - 0.8)[0] - far[0]) > 1e-6


def test_batch_equals_single_structures(tiny_model, ethanol):
    other = ethanol[:6]
    graphs = [graph_from_atoms(a, tiny_model.config.cutoff) for a in (ethanol, other)]
    batched = tiny_model(collate(graphs).to(dtype=torch.float64))
    for k, atoms in enumerate((ethanol, other)):
        single = run(tiny_model, atoms)
        assert batched["energy"][k].item() == pytest.approx(single["energy"][0], abs=1e-9)
    np.testing.assert_allclose(batched["forces"][:9].detach().numpy(), run(tiny_model, ethanol)["forces"], atol=1e-10)


def test_unknown_element_is_named(tiny_model):
    with pytest.raises(ValueError, match=r"atomic numbers \[7\]"):
        run(tiny_model, Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]))


def test_float32_energy_keeps_large_reference_energies_exact(ethanol):
    model64 = ForceField(tiny_config()).double().eval()
    model32 = ForceField(tiny_config())
    model32.load_state_dict(model64.state_dict())
    e64 = run(model64, ethanol)["energy"][0]
    graph = graph_from_atoms(ethanol, 4.0)
    e32 = model32.eval()(graph.to(dtype=torch.float32))["energy"]
    assert e32.dtype == torch.float64
    assert abs(e32.item() - e64) < 1e-4  # float32 alone would round -4.2e3 eV to ~5e-4 eV


@pytest.mark.parametrize("lmax, correlation, options, feature_lmax", [
    (1, 2, True, None), (3, 2, True, None), (2, 3, True, None), (2, 2, False, None), (2, 2, False, 1), (3, 3, True, 1),
])
def test_other_architectures_keep_the_physics(ethanol, lmax, correlation, options, feature_lmax):
    torch.manual_seed(1)
    config = tiny_config(lmax=lmax, layers=3, correlation=correlation, bond_projections=options, readout_every_layer=options,
                         density_mixing=options,
                         feature_lmax=feature_lmax)
    model = ForceField(config).double().eval()
    reference = run(model, ethanol)
    rotation = -Rotation.random(random_state=4).as_matrix()  # a rotation and the inversion
    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rotation.T
    out = run(model, moved)
    assert out["energy"][0] == pytest.approx(reference["energy"][0], abs=1e-9)
    np.testing.assert_allclose(out["forces"], reference["forces"] @ rotation.T, atol=1e-10)
    order = np.random.default_rng(0).permutation(len(ethanol))
    np.testing.assert_allclose(run(model, ethanol[order])["forces"], reference["forces"][order], atol=1e-10)
    h = 1e-5
    plus, minus = ethanol.copy(), ethanol.copy()
    plus.positions[2, 1] += h
    minus.positions[2, 1] -= h
    numeric = -(run(model, plus)["energy"][0] - run(model, minus)["energy"][0]) / (2 * h)
    assert reference["forces"][2, 1] == pytest.approx(numeric, abs=1e-7) and np.abs(reference["forces"]).max() > 1e-3


def test_feature_lmax_keeps_fewer_degrees_and_is_checked(ethanol):
    model = ForceField(tiny_config(lmax=2, feature_lmax=1)).double()
    graph = graph_from_atoms(ethanol, model.config.cutoff).to(dtype=torch.float64)
    species = model.element_indices(graph.numbers)
    assert model.features(graph, species, model.edge_embedding(graph)).shape[0] == 4  # degrees 0 and 1
    with pytest.raises(ValueError, match="feature_lmax must be between 1 and lmax"):
        ForceField(tiny_config(lmax=2, feature_lmax=3))


def test_density_mixing_grows_a_trained_model_without_changing_it(ethanol):
    """`with_density_mixing` starts the mixing at the identity: the same energies and forces; the
    mixing is live (other weights change the energy); a model that has it is refused."""
    torch.manual_seed(2)
    model = ForceField(tiny_config()).double().eval()
    grown = model.with_density_mixing().eval()
    assert grown.config.density_mixing and next(grown.parameters()).dtype == torch.float64
    before, after = run(model, ethanol), run(grown, ethanol)
    assert after["energy"][0] == pytest.approx(before["energy"][0], abs=1e-10)
    np.testing.assert_allclose(after["forces"], before["forces"], atol=1e-10)
    with torch.no_grad():
        grown.blocks[0].density_mix.weight.mul_(1.5)
    assert abs(run(grown, ethanol)["energy"][0] - before["energy"][0]) > 1e-6
    with pytest.raises(ValueError, match="already mixes"):
        grown.with_density_mixing()


def test_model_config_roundtrip_and_unknown_keys():
    config = tiny_config()
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({**config.to_dict(), "heads": 3})


def test_bond_projections_and_layer_readouts_contribute(tiny_model, ethanol):
    """The optional paths are live: removing them changes the energy."""
    before = run(tiny_model, ethanol)["energy"][0]
    c, lmax = tiny_model.config.channels, tiny_model.config.lmax
    for name, silence in (("bond projections", lambda m: [b.radial.weight[(2 * lmax + 1) * c:].zero_() for b in m.blocks]),
                          ("layer readouts", lambda m: [r.weight.zero_() for r in m.layer_readouts])):
        model = ForceField(tiny_model.config).double().eval()
        model.load_state_dict(tiny_model.state_dict())
        with torch.no_grad():
            silence(model)
        assert abs(run(model, ethanol)["energy"][0] - before) > 1e-3, name
