"""What a careful tester tried: two fits in one folder, killed fits, duplicated frames, far-away
molecules in float32, huge systems, paths that leave the output folder, oversized checkpoint
settings, charged or open-shell input, labels in Hartree, a read-only HOME or cache, and
nonsense counts on the command line. Each must end with the right result or a named error."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import write
from safetensors.torch import load_file, save_file

from anids_md import AniDSCalculator
from anids_md.checkpoint import CheckpointError, load_checkpoint, read_metadata, resolve
from anids_md.cli import main
from anids_md.data import read_rmd17, read_structures
from anids_md.evaluation import evaluate
from anids_md.fit import fit
from anids_md.folder_lock import FolderInUseError, folder_lock
from anids_md.simulate import bonded_pairs, run_md
from anids_md.train import Trainer, load_config, train
from anids_md.train.trainer import load_datasets
from anids_md.units import HARTREE_IN_EV, HARTREE_PER_BOHR_IN_EV_PER_A
from anids_md.validate import DFTLevel, dft_optimize, dft_single_point

from .conftest import ETHANOL

TINY = ["model.channels=8", "model.layers=1", "model.n_radial=4", "model.radial_hidden=8", "model.readout_hidden=8",
        "optim.batch_size=4", "optim.warmup_steps=1", "data.protocol=null", "data.n_valid=4", "device=cpu"]


def ethanol_frames(n=12):
    return read_rmd17(ETHANOL, frames=slice(0, n))


def finished_pid() -> int:
    """The PID of a process that has exited and been reaped: nobody owns it now."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- fit owns its folder ---------------------------------------------------------------------

def test_a_second_fit_into_a_locked_folder_is_refused_by_name(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "fit.lock").write_text(f"{holder.pid} {os.uname().nodename}\n")
        with pytest.raises(FolderInUseError, match=f"in use by another anids-md fit \\(PID {holder.pid}"):
            fit("CCO", tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "fit.lock").exists()  # the refused fit leaves the owner's lock alone


def test_a_stale_lock_is_taken_over_and_released(tmp_path, caplog):
    (tmp_path / "fit.lock").write_text(f"{finished_pid()} {os.uname().nodename}\n")
    with caplog.at_level(logging.WARNING, logger="anids_md"), folder_lock(tmp_path) as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
        with pytest.raises(FolderInUseError):  # while held, even this process's second fit is refused
            with folder_lock(tmp_path):
                pass
    assert "no longer running" in caplog.text
    assert not (tmp_path / "fit.lock").exists()


def test_a_second_train_or_prior_on_a_folder_in_use_is_refused_by_name(tmp_path):
    """Two processes on one run folder (or one prior) would interleave their logs and states."""
    from anids_md.prior import build_prior, prior_digest
    from anids_md.settings import PriorConfig

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        config = load_config(None, [f"data.train={ETHANOL}", "data.protocol=null", "data.n_valid=4", "optim.max_steps=2", "device=cpu",
                                    f"output_dir={tmp_path}", "name=run"])
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "train.lock").write_text(f"{holder.pid} {os.uname().nodename}\n")
        with pytest.raises(FolderInUseError, match=f"in use by another anids-md train \\(PID {holder.pid}"):
            train(config, progress=False)
        assert not (tmp_path / "run" / "log.csv").exists()  # refused before a step was logged
        settings = PriorConfig(frames=12, starts=1, equilibration_steps=4, interval=2, epochs=1, n_valid=4, compile=False)
        frames = read_rmd17(ETHANOL, frames=[0])
        prior_folder = tmp_path / "priors" / f"prior-{prior_digest(frames, settings, 0)}"
        prior_folder.mkdir(parents=True)
        (prior_folder / "prior.lock").write_text(f"{holder.pid} {os.uname().nodename}\n")
        with pytest.raises(FolderInUseError, match="in use by another anids-md prior"):
            build_prior(frames, tmp_path / "priors", settings, progress=False)
        assert not list(prior_folder.glob("*.extxyz"))  # no MD ran
    finally:
        holder.kill()
        holder.wait()


POOL_SCRIPT = textwrap.dedent("""
    import sys, time
    from anids_md.reference.labelling import labelling_pool
    from anids_md.fit.process import termination_as_interrupt
    if __name__ == "__main__":  # spawned workers import this file too
        with termination_as_interrupt(), labelling_pool("local", workers=2) as executor:
            futures = [executor.submit(time.sleep, 120) for _ in range(6)]
            while len(executor._processes) < 2:
                time.sleep(0.1)
            time.sleep(1.0)  # the workers have taken their first tasks
            print(*executor._processes, flush=True)
            futures[0].result()
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as handle:  # an exited child not yet reaped is not running
            return handle.read().split(")")[-1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_killing_the_labelling_process_ends_its_workers_promptly(tmp_path, how):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    # SIGINT as a terminal delivers it: a shell that runs the tests in the background ignores it,
    # and its children would inherit that
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    start = time.monotonic()
    parent.send_signal(how)
    parent.wait(timeout=30)
    while any(alive(pid) for pid in workers) and time.monotonic() - start < 15:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "a DFT worker outlived its fit"
    assert time.monotonic() - start < 15  # not the 120 s of the queued tasks
    if how != signal.SIGKILL:
        assert parent.returncode != 0


def test_an_interrupt_cancels_the_queued_dask_labels():
    from distributed import LocalCluster

    from anids_md.reference.labelling import labelling_pool

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(KeyboardInterrupt):
            with labelling_pool("dask", scheduler=cluster.scheduler_address) as executor:
                futures = [executor.submit(time.sleep, 3) for _ in range(4)]
                raise KeyboardInterrupt
        assert all(future.cancelled() for future in futures)


# --- data ----------------------------------------------------------------------------------------

def test_duplicate_frames_are_dropped_and_never_validate_against_themselves(tmp_path, caplog):
    frames = ethanol_frames(8)
    write(tmp_path / "dup.extxyz", frames + frames[:6])  # 14 frames, 6 of them copies
    config = load_config(None, [f"data.train={tmp_path / 'dup.extxyz'}", *TINY])
    with caplog.at_level(logging.WARNING, logger="anids_md"):
        data = load_datasets(config)
    assert "dropped 6 exact duplicate frames of 14" in caplog.text
    assert len(data.train) + len(data.valid) == 8
    train_positions = {a.positions.tobytes() for a in data.train}
    assert not any(a.positions.tobytes() in train_positions for a in data.valid)


def hartree_file(tmp_path, forces_per_bohr=True):
    frames = ethanol_frames(12)
    converted = []
    for a in frames:
        b = Atoms(numbers=a.numbers, positions=a.positions)
        factor = HARTREE_PER_BOHR_IN_EV_PER_A if forces_per_bohr else HARTREE_IN_EV
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy() / HARTREE_IN_EV, forces=a.get_forces() / factor)
        converted.append(b)
    path = tmp_path / "hartree.extxyz"
    write(path, converted)
    return path, frames


def test_hartree_labels_are_recognised_and_a_refused_train_leaves_no_folder(tmp_path):
    path, frames = hartree_file(tmp_path)
    config = load_config(None, [f"data.train={path}", f"output_dir={tmp_path / 'runs'}", "name=h", *TINY])
    with pytest.raises(ValueError, match="look like Hartree read as eV; pass energy_unit=Hartree and forces_unit=Hartree/Bohr"):
        train(config, progress=False)
    assert not (tmp_path / "runs" / "h").exists()
    read = read_structures(path, energy_unit="Hartree", forces_unit="Hartree/Bohr")
    assert read[3].get_potential_energy() == pytest.approx(frames[3].get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(read[3].get_forces(), frames[3].get_forces(), atol=1e-5)  # extxyz keeps 8 decimals
    corrected = load_config(None, [f"data.train={path}", f"output_dir={tmp_path / 'runs'}", "name=h", "data.energy_unit=Hartree",
                                   "data.forces_unit=Hartree/Bohr", "optim.epochs=1", *TINY])
    Trainer(corrected, progress=False)  # not refused as "other settings": the refused run claimed nothing


def test_evaluate_checks_units_as_training_does(tmp_path):
    model, _ = load_checkpoint("rmd17-ethanol")
    frames = ethanol_frames(4)
    assert evaluate(model, frames)["forces_mae_meV_per_A"] < 100  # eV labels: fine
    in_kcal = read_structures(ETHANOL, frames=slice(0, 4))
    for a in in_kcal:  # kcal/mol labels read as eV
        a.calc.results["energy"] /= 0.0433641043
        a.calc.results["forces"] = a.calc.results["forces"] / 0.0433641043
    with pytest.raises(ValueError, match="kcal/mol"):
        evaluate(model, in_kcal)
    path, _ = hartree_file(tmp_path)
    with pytest.raises(SystemExit, match="Hartree"):
        main(["evaluate", "rmd17-ethanol", str(path)])


# --- numerics ------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_float32_results_far_from_the_origin_equal_those_at_it(offset):
    atoms = ethanol_frames(1)[0]
    atoms.positions -= atoms.positions.mean(axis=0)
    calc = AniDSCalculator("rmd17-ethanol", dtype="float32")
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    far = atoms.copy()
    far.positions += offset * np.array([1.0, -0.7, 0.3])
    far.calc = calc
    assert far.get_potential_energy() == pytest.approx(energy, abs=1e-4)
    np.testing.assert_allclose(far.get_forces(), forces, atol=1e-4)  # was 23 meV/Å off at 1e4 Å, 2 eV/Å at 1e6 Å


def test_negative_skin_is_refused():
    with pytest.raises(ValueError, match="skin must be 0 or more"):
        AniDSCalculator("rmd17-ethanol", skin=-4)


@pytest.mark.parametrize("key, value", [("charge", 1), ("spin", 1)])
def test_charge_or_spin_the_model_never_saw_is_refused(key, value):
    atoms = ethanol_frames(1)[0]
    atoms.calc = AniDSCalculator("rmd17-ethanol")
    atoms.info[key] = 0
    atoms.get_potential_energy()  # the neutral closed shell it knows
    atoms.info[key] = value
    with pytest.raises(ValueError, match=f"atoms.info\\['{key}'\\] is {value}, but the model knows {key} 0 only"):
        atoms.get_potential_energy()


def test_a_single_molecule_model_warns_once_on_another_molecule(caplog):
    calc = AniDSCalculator("rmd17-ethanol")
    with caplog.at_level(logging.WARNING, logger="anids_md"):
        ethanol = ethanol_frames(1)[0]
        ethanol.calc = calc
        ethanol.get_potential_energy()
        assert "trained on" not in caplog.text
        for shift in (0.0, 0.3):  # two structures of methanol: one warning
            methanol = molecule("CH3OH")
            methanol.positions[0] += shift
            methanol.calc = calc
            methanol.get_potential_energy()
    assert caplog.text.count("this model was trained on C2H6O only; CH4O is another molecule") == 1


# --- memory --------------------------------------------------------------------------------------

def test_bond_tracking_memory_grows_with_atoms_not_pairs():
    ethanol = molecule("CH3CH2OH")
    distances = ethanol.get_all_distances()
    from ase.data import covalent_radii

    radii = covalent_radii[ethanol.numbers]
    i, j = np.nonzero(np.triu(distances < 1.2 * (radii[:, None] + radii[None, :]), k=1))
    np.testing.assert_array_equal(bonded_pairs(ethanol), np.stack([i, j], axis=1))  # the same bonds as every pair compared
    grid = np.stack(np.meshgrid(*[np.arange(9)] * 3, indexing="ij"), -1).reshape(-1, 3) * 6.0
    many = Atoms()
    for origin in grid[:700]:  # 6300 atoms: all pairs in float64 would be 300 MB
        m = ethanol.copy()
        m.translate(origin)
        many += m
    from anids_md.simulate import MDReport

    report = MDReport("nve", 1, 0.5, len(many))
    tracemalloc.start()
    report.track_bonds(many)
    report.track_bonds(many)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(report.bonds) == 700 * len(bonded_pairs(ethanol))
    assert peak < 30e6, f"bond tracking took {peak / 1e6:.0f} MB"


def test_a_structure_beyond_the_available_memory_is_refused(monkeypatch):
    import anids_md.calculator as calculator

    monkeypatch.setattr(calculator, "available_memory_bytes", lambda device: 100_000)  # a 100 kB machine
    atoms = ethanol_frames(1)[0]
    atoms.calc = AniDSCalculator("rmd17-ethanol")
    with pytest.raises(MemoryError, match="need about .* MiB for one call"):
        atoms.get_potential_energy()


# --- paths and files -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../keep", "a/b", "..", "."])
def test_a_run_name_cannot_leave_the_output_folder(name):
    with pytest.raises(ValueError, match="name must be a plain folder name"):
        load_config("rmd17-50", ["data.train=x.npz", f"name={name}"])


@pytest.mark.parametrize("key, value", [("layers", 100000), ("channels", 60000), ("cutoff", 1e9), ("lmax", 40)])
def test_oversized_checkpoint_settings_are_refused_before_anything_is_built(tmp_path, key, value):
    import json

    source = resolve("rmd17-ethanol")
    metadata = read_metadata(source)
    metadata["model"][key] = value
    path = tmp_path / "huge.safetensors"
    save_file(load_file(str(source)), str(path), metadata={"anids_md": json.dumps(metadata)})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"model.{key} must be"):
        AniDSCalculator(path)
    assert time.perf_counter() - start < 5


def h2():
    return Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.78]])


def test_dft_helpers_work_with_an_unusable_home(tmp_path, monkeypatch):
    home = tmp_path / "home-is-a-file"  # unwritable even for root, unlike a chmod'ed folder
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ANIDS_MD_CACHE", raising=False)
    result = dft_optimize(h2(), DFTLevel(basis="sto-3g"), cache_dir=tmp_path / "cache")
    assert result.converged and 0.6 < np.linalg.norm(result.atoms.positions[1] - result.atoms.positions[0]) < 0.85
    assert list((tmp_path / "cache").glob("opt-*.json"))


def test_an_unwritable_cache_still_returns_the_result_with_one_warning(tmp_path, monkeypatch, caplog):
    import anids_md.reference.cache as cache

    def read_only(path, text):
        raise PermissionError(30, "Read-only file system", str(path))

    monkeypatch.setattr(cache, "write_text_atomically", read_only)
    level = DFTLevel(basis="sto-3g")
    with caplog.at_level(logging.WARNING, logger="anids_md"):
        first = dft_single_point(h2(), level, cache_dir=tmp_path)
        moved = h2()
        moved.positions[1, 2] = 0.74
        second = dft_single_point(moved, level, cache_dir=tmp_path)
    assert np.isfinite(first.energy_eV) and second.energy_eV != first.energy_eV
    assert caplog.text.count("cannot write to the reference cache") == 1
    write(tmp_path / "h2.xyz", h2())  # a finished optimisation still reaches its output file
    main(["dft-optimize", str(tmp_path / "h2.xyz"), "-o", str(tmp_path / "min.xyz"), "--basis", "sto-3g", "--cache", str(tmp_path),
          "--quiet"])
    assert (tmp_path / "min.xyz").exists() and not list(tmp_path.glob("opt-*.json"))


# --- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, option", [
    (["md", "m", "in.xyz", "-o", "o.xyz", "--steps", "-5"], "--steps"),
    (["md", "m", "in.xyz", "-o", "o.xyz", "--interval", "0"], "--interval"),
    (["md", "m", "in.xyz", "-o", "o.xyz", "--temperature", "-300"], "--temperature"),
    (["md", "m", "in.xyz", "-o", "o.xyz", "--timestep", "0"], "--timestep"),
    (["evaluate", "m", "data.npz", "--frames", "-1"], "--frames"),
    (["optimize", "m", "in.xyz", "-o", "o.xyz", "--fmax", "0"], "--fmax"),
    (["fit", "CCO", "-o", "out", "--workers", "0"], "--workers"),
])
def test_counts_and_sizes_on_the_command_line_are_checked_by_name(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("optim.grad_clip=0", "optim.grad_clip must be positive"),
    ("optim.epochs=0", "optim.epochs must be a whole number of at least 1"),
    ("optim.patience=0", "optim.patience must be a whole number of at least 1"),
    ("optim.batch_size=-2", "optim.batch_size must be a whole number of at least 1"),
    ("optim.batch_size=0", "optim.batch_size must be a whole number of at least 1"),
    ("optim.epochs=ten", "optim.epochs must be a whole number, got 'ten'"),
])
def test_training_counts_are_checked_by_name(setting, message):
    with pytest.raises(ValueError, match=message):
        load_config("rmd17-50", ["data.train=x.npz", setting])


def test_md_with_every_atom_fixed_is_refused():
    atoms = ethanol_frames(1)[0]
    atoms.set_constraint(FixAtoms(indices=range(len(atoms))))
    atoms.calc = AniDSCalculator("rmd17-ethanol")
    with pytest.raises(ValueError, match="every atom is fixed"):
        run_md(atoms, steps=5)


def test_md_that_fails_at_once_suggests_a_smaller_timestep_and_prints_no_summary(tmp_path, capsys):
    start = tmp_path / "start.xyz"
    write(start, ethanol_frames(1)[0])
    with pytest.raises(SystemExit, match="too large a timestep \\(5 fs\\): try a smaller one") as exit_info:
        main(["md", "rmd17-ethanol", str(start), "-o", str(tmp_path / "md.xyz"), "--timestep", "5", "--steps", "400"])
    printed = capsys.readouterr().out
    assert "drift" not in printed and "mean temperature" not in printed
    assert "stopped at step" in str(exit_info.value)


def test_rmsd_takes_an_index_and_prints_its_unit(tmp_path, capsys):
    frames = ethanol_frames(3)
    write(tmp_path / "many.extxyz", frames)
    write(tmp_path / "one.xyz", frames[2])
    with pytest.raises(SystemExit, match="choose one with --index"):
        main(["rmsd", str(tmp_path / "many.extxyz"), str(tmp_path / "one.xyz")])
    main(["rmsd", str(tmp_path / "many.extxyz"), str(tmp_path / "many.extxyz"), "--index", "1"])
    assert capsys.readouterr().out.strip() == "RMSD 0.00000 Å (all atoms, after Kabsch alignment)"
    main(["rmsd", str(tmp_path / "one.xyz"), str(tmp_path / "many.extxyz"), "--index", "0"])
    printed = capsys.readouterr().out
    assert printed.startswith("RMSD ") and float(printed.split()[1]) > 0.05 and "Å" in printed
