import threading

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from anids_md import AniDSCalculator
from anids_md.checkpoint import CheckpointError, save_checkpoint
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


def test_calculator_refuses_what_it_cannot_do(checkpoint, ethanol):
    calc = AniDSCalculator(checkpoint)
    nitrogen = Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]], calculator=calc)
    with pytest.raises(ValueError, match=r"trained on elements \[1, 6, 8\] only .* also has \[7\]"):
        nitrogen.get_potential_energy()
    with pytest.raises(ValueError, match="no atoms"):
        Atoms(calculator=calc).get_potential_energy()
    clash = ethanol.copy()
    clash.positions[4] = clash.positions[1] + [0.1, 0.0, 0.0]
    clash.calc = calc
    with pytest.raises(ValueError, match="atoms 1 and 4 are 0.100 Å apart"):
        clash.get_forces()
    clash.positions[4] = clash.positions[1]  # coincident: NaN without the check
    with pytest.raises(ValueError, match="0.000 Å apart"):
        clash.get_forces()
    nan = ethanol.copy()
    nan.positions[2, 1] = np.nan
    nan.calc = calc
    with pytest.raises(ValueError, match="non-finite"):
        nan.get_forces()
    flat = ethanol.copy()
    flat.pbc = True  # periodic, but no cell
    flat.calc = calc
    with pytest.raises(ValueError, match="cell has no volume"):
        flat.get_forces()
    tiny_box = ethanol.copy()
    tiny_box.set_cell([3.0, 3.0, 3.0])
    tiny_box.pbc = True
    tiny_box.calc = calc
    with pytest.raises(ValueError, match="periodic image"):
        tiny_box.get_forces()
    with pytest.raises(ValueError, match="dtype"):
        AniDSCalculator(checkpoint, dtype="float16")
    with pytest.raises(RuntimeError, match="cuda:99"):  # a CPU build, or a machine without 100 GPUs
        AniDSCalculator(checkpoint, device="cuda:99")
    with pytest.raises(CheckpointError, match="denoising-pretraining checkpoint"):
        AniDSCalculator("qm9-anids")


def test_shipped_model_refuses_elements_it_never_saw():
    # rmd17-ethanol's embedding has a slot for N, but N was never in its training data.
    nh3 = molecule("NH3")
    nh3.calc = AniDSCalculator("rmd17-ethanol")
    with pytest.raises(ValueError, match=r"trained on elements \[1, 6, 8\] only"):
        nh3.get_potential_energy()


def test_periodic_cell_matches_the_isolated_molecule(checkpoint, ethanol):
    boxed = ethanol.copy()
    boxed.set_cell([25.0, 26.0, 27.0])
    boxed.pbc = True
    boxed.calc = AniDSCalculator(checkpoint)
    ethanol.calc = AniDSCalculator(checkpoint)
    assert boxed.get_potential_energy() == pytest.approx(ethanol.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(boxed.get_forces(), ethanol.get_forces(), atol=1e-10)
    # An image within the cutoff is seen: a 6 Å box changes the energy.
    boxed.set_cell([6.0, 6.0, 6.0])
    assert abs(boxed.get_potential_energy() - ethanol.get_potential_energy()) > 1e-4


def test_calculator_parameters_reset_and_threads(checkpoint, ethanol):
    before = torch.get_num_threads()
    calc = AniDSCalculator(checkpoint, dtype="float32")
    assert torch.get_num_threads() == before  # not asked: torch's threads untouched
    assert calc.parameters["dtype"] == "float32" and calc.parameters["checkpoint"] == str(checkpoint)
    ethanol.calc = calc
    ethanol.get_potential_energy()
    calc.reset()
    ethanol.get_potential_energy()
    assert calc.neighbour_list_builds == 2  # reset dropped the cached neighbour list
    try:
        AniDSCalculator(checkpoint, num_threads=1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            AniDSCalculator(checkpoint, num_threads=0)
    finally:
        torch.set_num_threads(before)


def test_one_calculator_shared_by_two_threads(checkpoint, ethanol):
    calc = AniDSCalculator(checkpoint)
    molecules = [ethanol.copy(), ethanol.copy()]
    molecules[1].positions *= 1.05
    expected = []
    for atoms in molecules:
        atoms.calc = AniDSCalculator(checkpoint)
        expected.append(atoms.get_potential_energy())
        atoms.calc = calc
    wrong = []

    def work(k):
        atoms = molecules[k]
        for step in range(150):
            atoms.positions[0, 0] += 1e-7 if step % 2 else -1e-7  # a new calculation every call
            if abs(atoms.get_potential_energy() - expected[k]) > 1e-3:
                wrong.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


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


def test_finite_input_gives_numbers_or_a_named_error(checkpoint):
    # Random molecules from crowded to far apart, and at coordinates far from the origin.
    rng = np.random.default_rng(0)
    calc = AniDSCalculator(checkpoint)
    outcomes = {"numbers": 0, "refused": 0}
    for k in range(120):
        n = int(rng.integers(1, 12))
        spread = float(10 ** rng.uniform(-0.5, 1.5))
        atoms = Atoms(numbers=rng.choice([1, 6, 8], n), positions=rng.normal(0, spread, (n, 3)) + rng.choice([0, 1e4]))
        atoms.calc = calc
        try:
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        except ValueError as error:
            assert "apart" in str(error)  # the only refusal these inputs may meet
            outcomes["refused"] += 1
            continue
        assert np.isfinite(energy) and np.all(np.isfinite(forces))
        outcomes["numbers"] += 1
    assert outcomes["numbers"] > 50 and outcomes["refused"] > 5  # both paths were exercised


def test_compiled_network_matches_eager(checkpoint, ethanol):
    """compile=True gives the uncompiled numbers on molecules of different sizes and after moves
    (one compilation with dynamic shapes). Without a C++ compiler on this machine, the same
    check runs on torch.compile's graph capture alone (backend aot_eager)."""
    from anids_md.runtime import check_compiler

    try:
        check_compiler(torch.device("cpu"))
        compiled = AniDSCalculator(checkpoint, dtype="float64", compile=True)
    except RuntimeError:
        compiled = AniDSCalculator(checkpoint, dtype="float64")
        compiled.models[0].compile_network(backend="aot_eager")
    eager = AniDSCalculator(checkpoint, dtype="float64")
    moved = ethanol.copy()
    moved.positions[0] += [0.1, 0.0, 0.05]
    for atoms in (ethanol, moved, molecule("CH3OH"), molecule("C6H6")):
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = compiled, eager
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-6)


def test_compile_without_a_cpp_compiler_is_a_named_error(checkpoint, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        AniDSCalculator(checkpoint, compile=True)
