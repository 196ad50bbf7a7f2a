"""One physics battery for every way of getting energies and forces: the network on graphs (a
tiny model with random, not-small weights), the ASE calculator on a checkpoint of it, and the
calculator on a shipped model. E(3) invariance (rotations, the inversion, translations), forces as
−∂E/∂X by finite differences, permutations, smoothness at the cutoff, far-apart molecules as the
sum of their parts; and for batches, batch = single structures with no gradient across frames."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

from anids_md import AniDSCalculator
from anids_md.checkpoint import save_checkpoint
from anids_md.data import collate, graph_from_atoms


class Network:
    """The force field called on graphs (float64)."""

    def __init__(self, model):
        self.model, self.cutoff = model, model.config.cutoff

    def __call__(self, atoms):
        out = self.model(graph_from_atoms(atoms, self.cutoff).to(dtype=torch.float64))
        return out["energy"].item(), out["forces"].detach().numpy()


class Calculator:
    """AniDSCalculator (float64), a fresh one per structure so that no neighbour list is reused."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.cutoff = AniDSCalculator(checkpoint).cutoff

    def __call__(self, atoms):
        atoms = atoms.copy()
        atoms.calc = AniDSCalculator(self.checkpoint, dtype="float64")
        return atoms.get_potential_energy(), atoms.get_forces()


@pytest.fixture(params=["network", "calculator", "shipped calculator"])
def subject(request, tiny_model, tmp_path):
    if request.param == "network":
        return Network(tiny_model)
    if request.param == "calculator":
        return Calculator(save_checkpoint(tiny_model, tmp_path / "tiny.safetensors"))
    return Calculator("rmd17-ethanol")


@pytest.mark.parametrize("seed", [0, 1])
def test_rotation_inversion_and_translation(subject, ethanol, seed):
    energy, forces = subject(ethanol)
    rotation = Rotation.random(random_state=seed).as_matrix()
    if seed == 1:
        rotation = -rotation  # an improper rotation: E(3), not only SE(3)
    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rotation.T + np.array([1.7, -3.2, 0.4])
    energy2, forces2 = subject(moved)
    assert energy2 == pytest.approx(energy, abs=1e-8)  # float64 rounding of -4 210 eV totals
    np.testing.assert_allclose(forces2, forces @ rotation.T, atol=1e-9)
    assert np.abs(forces).max() > 1e-2  # not trivially invariant


def test_forces_are_minus_the_energy_gradient(subject, ethanol):
    _, forces = subject(ethanol)
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        plus, minus = ethanol.copy(), ethanol.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(subject(plus)[0] - subject(minus)[0]) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, abs=1e-6)


def test_permutation(subject, ethanol):
    energy, forces = subject(ethanol)
    order = np.random.default_rng(0).permutation(len(ethanol))
    energy2, forces2 = subject(ethanol[order])
    assert energy2 == pytest.approx(energy, abs=1e-8)
    np.testing.assert_allclose(forces2, forces[order], atol=1e-10)


def test_smooth_where_an_atom_crosses_the_cutoff(subject):
    cutoff = subject.cutoff

    def pair(distance):
        return subject(Atoms("CO", positions=[[0, 0, 0], [distance, 0, 0]]))

    (e_in, f_in), (e_out, f_out), (e_far, _) = pair(cutoff - 1e-6), pair(cutoff + 1e-6), pair(cutoff + 1.0)
    assert e_in == pytest.approx(e_out, abs=1e-10) and f_in[1, 0] == pytest.approx(f_out[1, 0], abs=1e-8)
    assert e_out == pytest.approx(e_far, abs=1e-12) and f_out[1, 0] == 0.0
    assert abs(pair(cutoff - 0.8)[0] - e_far) > 1e-6  # closer in, the pair does interact


def test_far_apart_molecules_are_the_sum_of_their_parts(subject, ethanol):
    water = molecule("H2O")
    water.positions += [2 * subject.cutoff + 1.0, 0.0, 0.0]
    both = ethanol + water
    (e_a, f_a), (e_b, f_b), (e_ab, f_ab) = subject(ethanol), subject(water), subject(both)
    assert e_ab == pytest.approx(e_a + e_b, abs=1e-8)
    np.testing.assert_allclose(f_ab, np.concatenate([f_a, f_b]), atol=1e-10)
    close = ethanol + water.copy()
    close.positions[len(ethanol):] -= [2 * subject.cutoff - 2.5, 0.0, 0.0]  # within the cutoff: they interact
    assert abs(subject(close)[0] - (e_a + e_b)) > 1e-6


def test_a_batch_equals_its_structures_and_frames_do_not_interact(tiny_model, ethanol):
    other = ethanol[:6]
    other.positions += 0.3  # overlaps ethanol in space: only the batch index keeps them apart
    graphs = [graph_from_atoms(a, tiny_model.config.cutoff) for a in (ethanol, other)]
    batch = collate(graphs).to(dtype=torch.float64)
    positions = batch.positions.detach().requires_grad_(True)
    out = tiny_model(replace(batch, positions=positions), compute_forces=False)
    for k, atoms in enumerate((ethanol, other)):
        energy, _ = Network(tiny_model)(atoms)
        assert out["energy"][k].item() == pytest.approx(energy, abs=1e-9)
    (gradient,) = torch.autograd.grad(out["energy"][0], positions)
    assert float(gradient[9:].abs().max()) == 0.0 and float(gradient[:9].abs().max()) > 1e-3
    forces = tiny_model(batch)["forces"].detach().numpy()
    np.testing.assert_allclose(forces[:9], Network(tiny_model)(ethanol)[1], atol=1e-10)


def test_equivariance_of_energy_forces_and_the_denoising_head_by_e3nn(tiny_model, tiny_head, ethanol):
    from e3nn.util.test import assert_equivariant

    graph = graph_from_atoms(ethanol, tiny_model.config.cutoff)  # rotations keep the neighbour list

    def outputs(positions):
        moved = replace(graph, positions=positions)
        out = tiny_model.predict(moved, compute_forces=True)
        return out["energy"], out["forces"], tiny_head(out["encoding"], moved.edge_index)

    # random rotations and the inversion; energy a scalar, forces and the head's vectors
    errors = assert_equivariant(outputs, args_in=[graph.positions], irreps_in=["1o"], irreps_out=["0e", "1o", "1o"],
                                tolerance=1e-8)
    assert len(errors) == 2 and max(float(e.abs().max()) for e in errors.values()) < 1e-8
    assert float(outputs(graph.positions)[2].abs().max()) > 1e-3  # the head is not trivially zero
