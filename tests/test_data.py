import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write

from anids_md.data import (
    collate,
    compute_statistics,
    fit_reference_energies,
    from_pyg,
    graph_from_atoms,
    protocol_split,
    read_isolated_atom_energies,
    read_rmd17,
    read_structures,
    to_pyg,
)
from anids_md.units import KCAL_PER_MOL_IN_EV

from .conftest import ASPIRIN, ETHANOL, emt_frames


def test_rmd17_reader_converts_kcal_to_ev():
    path = ETHANOL
    raw = np.load(path)
    frames = read_rmd17(path, frames=[0, 7])
    assert frames[1].get_potential_energy() == pytest.approx(raw["energies"][7] * 0.0433641, rel=1e-6)
    np.testing.assert_allclose(frames[1].get_forces(), raw["forces"][7] * 0.0433641, rtol=1e-6)
    np.testing.assert_array_equal(frames[0].numbers, raw["nuclear_charges"])
    np.testing.assert_allclose(frames[0].positions, raw["coords"][0])
    # The published conversion: 1 kcal/mol = 43.3641 meV.
    assert KCAL_PER_MOL_IN_EV * 1000 == pytest.approx(43.3641, abs=1e-4)


def test_rmd17_reader_original_md17_labels():
    path = ETHANOL
    raw = np.load(path)
    (frame,) = read_rmd17(path, frames=[3], labels="md17")
    assert frame.get_potential_energy() == pytest.approx(raw["old_energies"][3] * KCAL_PER_MOL_IN_EV, rel=1e-9)
    np.testing.assert_allclose(frame.get_forces(), raw["old_forces"][3] * KCAL_PER_MOL_IN_EV)
    with pytest.raises(ValueError, match="labels"):
        read_rmd17(path, labels="dft")


def test_extxyz_reader_and_energy_unit(tmp_path):
    frames = emt_frames(3)
    path = tmp_path / "frames.extxyz"
    write(path, frames)
    back = read_structures(path)
    assert back[2].get_potential_energy() == pytest.approx(frames[2].get_potential_energy())
    np.testing.assert_allclose(back[2].get_forces(), frames[2].get_forces(), atol=1e-7)  # extxyz keeps 8 decimals
    in_kcal = read_structures(path, energy_unit="kcal/mol")
    assert in_kcal[0].get_potential_energy() == pytest.approx(frames[0].get_potential_energy() * KCAL_PER_MOL_IN_EV)
    with pytest.raises(ValueError, match="unknown energy unit"):
        read_structures(path, energy_unit="kcal")
    db = tmp_path / "frames.db"
    write(db, frames)
    from_db = read_structures(db)
    assert len(from_db) == 3 and from_db[1].get_potential_energy() == pytest.approx(frames[1].get_potential_energy())
    np.testing.assert_allclose(from_db[1].get_forces(), frames[1].get_forces())


def test_isolated_atom_energies():
    e0 = read_isolated_atom_energies("pbe-def2svp")
    assert set(e0) == {1, 6, 7, 8}
    assert e0[1] == pytest.approx(-13.568422383046626)


def test_bad_structures_raise_clear_errors(tmp_path):
    bad = Atoms("CO", positions=[[0, 0, 0], [np.nan, 0, 0]])
    path = tmp_path / "nan.xyz"
    write(path, bad)
    with pytest.raises(ValueError, match="non-finite"):
        read_structures(path)
    unknown = Atoms("XC", positions=[[0, 0, 0], [1.2, 0, 0]])
    write(tmp_path / "x.xyz", unknown)
    with pytest.raises(ValueError, match="unknown element"):
        read_structures(tmp_path / "x.xyz")
    with pytest.raises(FileNotFoundError):
        read_structures(tmp_path / "missing.xyz")


def test_neighbour_list_matches_brute_force(ethanol):
    graph = graph_from_atoms(ethanol, cutoff=2.0)
    d = ethanol.get_all_distances()
    expected = {(i, j) for i in range(len(d)) for j in range(len(d)) if i != j and d[i, j] < 2.0}
    assert set(map(tuple, graph.edge_index.T.tolist())) == expected


def test_collate_offsets_edges(ethanol):
    a, b = graph_from_atoms(ethanol, 3.0), graph_from_atoms(ethanol[:5], 3.0)
    batch = collate([a, b])
    assert batch.n_structures == 2 and batch.n_atoms == 14
    assert torch.equal(batch.edge_index[:, a.edge_index.shape[1] :], b.edge_index + 9)
    assert batch.batch.tolist() == [0] * 9 + [1] * 5


def test_graphs_travel_through_torch_geometric_loaders(tiny_model):
    from torch_geometric.loader import DataLoader

    frames = read_rmd17(ETHANOL, frames=slice(0, 6))
    graphs = [graph_from_atoms(a, tiny_model.config.cutoff, with_labels=True) for a in frames]
    (pyg_batch,) = DataLoader([to_pyg(g) for g in graphs], batch_size=6)
    batch = from_pyg(pyg_batch)
    assert batch.n_structures == 6 and torch.equal(batch.energy, collate(graphs).energy)
    via_pyg, direct = tiny_model(batch), tiny_model(graphs[4])
    assert float(via_pyg["energy"][4].detach()) == pytest.approx(float(direct["energy"][0].detach()), abs=1e-9)
    torch.testing.assert_close(via_pyg["forces"][36:45], direct["forces"], atol=1e-9, rtol=0)


def test_least_squares_reference_energies_recover_known_values():
    true = {1: -0.5, 6: -37.8, 8: -75.0}
    structures = []
    for formula in ["H2O", "CH4", "CO2", "C2H6O", "O2"]:
        atoms = Atoms(formula)
        from ase.calculators.singlepoint import SinglePointCalculator

        energy = sum(true[z] for z in atoms.numbers)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
        structures.append(atoms)
    fitted = fit_reference_energies(structures, [1, 6, 8])
    for z in true:
        assert fitted[z] == pytest.approx(true[z], abs=1e-9)


def test_statistics_and_wrong_units(tmp_path):
    frames = emt_frames(5)
    stats = compute_statistics(frames, avg_num_neighbors=8.0)
    forces = np.concatenate([a.get_forces().ravel() for a in frames])
    assert stats.force_scale == pytest.approx(np.sqrt(np.mean(forces**2)))
    assert stats.elements == [1, 6, 8]
    # Forces 23x too large (kcal/mol/Å read as eV/Å) are refused with a hint.
    from ase.calculators.singlepoint import SinglePointCalculator

    for a in frames:
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces() * 200)
    with pytest.raises(ValueError, match="implausible"):
        compute_statistics(frames, avg_num_neighbors=8.0)


def test_protocol_splits_are_reproducible():
    train, valid = protocol_split("rmd17-50", 1000)
    assert train.tolist() == list(range(50)) and valid.tolist() == list(range(50, 100))
    t1, v1 = protocol_split("rmd17-1000", 1000, seed=3)
    t2, v2 = protocol_split("rmd17-1000", 1000, seed=3)
    assert len(t1) == 950 and len(v1) == 50 and not set(t1) & set(v1)
    assert np.array_equal(t1, t2) and np.array_equal(v1, v2)
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_split("rmd17-10", 1000)
    with pytest.raises(ValueError, match="needs 1000 frames"):
        protocol_split("rmd17-1000", 100)


def test_float32_graphs_keep_float64_energy_labels():
    (atoms,) = read_rmd17(ASPIRIN, frames=[0])
    graph = graph_from_atoms(atoms, 5.0, with_labels=True).to(dtype=torch.float32)
    assert graph.positions.dtype == torch.float32 and graph.forces.dtype == torch.float32
    assert graph.energy.dtype == torch.float64
    assert graph.energy.item() == atoms.get_potential_energy()
