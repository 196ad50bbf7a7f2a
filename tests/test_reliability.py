"""Bad data, killed runs, clashing settings and shared files: each fails loudly, by name."""

import csv
import json
import logging
import os
import stat
import threading

import numpy as np
import pytest
from ase.io import write

import anids_md.checkpoint as checkpoint_module
from anids_md import atomic
from anids_md.atomic import write_text_atomically
from anids_md.checkpoint import load_checkpoint, save_checkpoint
from anids_md.data import compute_statistics, read_isolated_atom_energies, read_rmd17, read_structures
from anids_md.train import Trainer, train
from anids_md.train.run_dir import RunConflictError
from anids_md.units import KCAL_PER_MOL_IN_EV
from anids_md.validate import DFTLevel, dft_single_point

from .conftest import ETHANOL, emt_frames, tiny_run


def copy_npz(tmp_path, **changes):
    data = dict(np.load(ETHANOL))
    data.update(changes)
    path = tmp_path / "edited.npz"
    np.savez(path, **data)
    return path


def test_non_finite_labels_are_refused_naming_the_frame(tmp_path):
    energies = np.load(ETHANOL)["energies"].copy()
    energies[5] = np.nan
    with pytest.raises(ValueError, match="frame 5: the energy label is nan"):
        read_rmd17(copy_npz(tmp_path, energies=energies))
    frames = emt_frames(3)
    frames[1].calc.results["forces"][2, 0] = np.inf
    write(tmp_path / "bad.extxyz", frames)
    with pytest.raises(ValueError, match="structure 1: the force label of atom 2 is not finite"):
        read_structures(tmp_path / "bad.extxyz")


def test_broken_files_are_named(tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(ETHANOL.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.npz: not a readable npz file"):
        read_rmd17(truncated)
    unknown = tmp_path / "unknown.xyz"
    unknown.write_text("2\n\nXx 0 0 0\nH 0 0 0.74\n")
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        read_structures(unknown, require_labels=False)


def test_energies_in_the_wrong_unit_are_refused_naming_the_likely_one(tmp_path):
    frames = read_rmd17(ETHANOL, frames=slice(0, 10))
    for atoms in frames:  # kcal/mol values written where eV belong
        atoms.calc.results["energy"] /= KCAL_PER_MOL_IN_EV
        atoms.calc.results["forces"] /= KCAL_PER_MOL_IN_EV
    write(tmp_path / "kcal.extxyz", frames)
    read_as_ev = read_structures(tmp_path / "kcal.extxyz")
    with pytest.raises(ValueError, match="look like kcal/mol read as eV"):
        compute_statistics(read_as_ev, 8.0, read_isolated_atom_energies("pbe-def2svp"))
    with pytest.raises(ValueError, match="look like kcal/mol read as eV"):  # without reference energies, free atoms' scale tells
        compute_statistics(read_as_ev, 8.0)
    for atoms in read_as_ev:  # energies in eV again, forces still in kcal/mol/Å: their RMS tells
        atoms.calc.results["energy"] *= KCAL_PER_MOL_IN_EV
    with pytest.raises(ValueError, match="force RMS .* implausible"):
        compute_statistics(read_as_ev, 8.0)
    right = read_structures(tmp_path / "kcal.extxyz", energy_unit="kcal/mol")
    stats = compute_statistics(right, 8.0, read_isolated_atom_energies("pbe-def2svp"))
    assert -10 < stats.energy_shift < 0  # eV per atom of binding


def test_missing_inputs_are_listed_together_before_any_work(tmp_path):
    config = tiny_run(tmp_path, tmp_path / "absent.extxyz", "data.test=gone.npz", "init=nowhere.safetensors")
    with pytest.raises(FileNotFoundError) as error:
        Trainer(config, progress=False)
    for key in ("data.train=", "data.test=gone.npz", "init=nowhere.safetensors"):
        assert key in str(error.value)
    assert not config.run_dir.exists()


def test_a_run_folder_with_other_settings_is_not_resumed_silently(tmp_path, frames_file, caplog):  # noqa: F811
    train(tiny_run(tmp_path, frames_file, "optim.epochs=2"), progress=False)
    with pytest.raises(RunConflictError, match="optim.lr differ"):
        train(tiny_run(tmp_path, frames_file, "optim.epochs=2", "optim.lr=0.002"), progress=False)
    with caplog.at_level(logging.INFO):
        summary = train(tiny_run(tmp_path, frames_file, "optim.epochs=3", "resume=true"), progress=False)
    assert "continuing" in caplog.text and "changed settings: optim.epochs" in caplog.text
    assert "resuming" in caplog.text and "from step 10" in caplog.text
    rows = list(csv.DictReader(open(tmp_path / "runs" / "tiny" / "log.csv")))
    assert summary["epochs"] == 3 and [int(r["epoch"]) for r in rows] == [1, 2, 3]  # two kept, one more
    summary = train(tiny_run(tmp_path, frames_file, "optim.epochs=2", "optim.lr=0.002", "overwrite=true"), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "runs" / "tiny" / "log.csv")))
    assert summary["epochs"] == 2 and [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[0]["lr"]) <= 0.002  # the new run's settings, from step 0


def test_a_kill_between_log_and_state_leaves_no_duplicate_row(tmp_path, frames_file, monkeypatch):  # noqa: F811
    import anids_md.train.loop as loop_module

    real = loop_module.save_state
    calls = {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # after the second epoch's log row, before its state
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(tmp_path, frames_file, "optim.epochs=3"), progress=False)
    monkeypatch.setattr(loop_module, "save_state", real)
    train(tiny_run(tmp_path, frames_file, "optim.epochs=3"), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "runs" / "tiny" / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_a_truncated_state_file_is_named(tmp_path, frames_file):  # noqa: F811
    config = tiny_run(tmp_path, frames_file, "optim.epochs=1")
    train(config, progress=False)
    state = config.run_dir / "state.safetensors"
    state.write_bytes(state.read_bytes()[:300])
    with pytest.raises(ValueError, match="state.safetensors: the saved training state is corrupt or truncated"):
        train(tiny_run(tmp_path, frames_file, "optim.epochs=1"), progress=False)


def test_an_interrupted_checkpoint_write_keeps_the_old_file(tiny_model, tmp_path, monkeypatch):
    path = save_checkpoint(tiny_model, tmp_path / "best.safetensors", training={"n": 1})

    def dies_halfway(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "save_file", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tiny_model, path, training={"n": 2})
    assert load_checkpoint(path)[1]["training"] == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]  # no temporary file left behind


def test_concurrent_writers_of_one_file(tmp_path):
    path = tmp_path / "entry.json"
    errors = []

    def writer(k):
        try:
            for step in range(200):
                write_text_atomically(path, json.dumps({"writer": k, "step": step}))
        except Exception as error:  # noqa: BLE001  (any failure fails the test)
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and json.loads(path.read_text())["step"] == 199


def test_files_written_whole_get_the_usual_permissions(tmp_path, monkeypatch):
    # a temporary file is private (0600); the finished file must be readable as any other the user
    # writes. The common umask 022 is set so that 0600 cannot pass whatever this machine's umask is.
    mask = os.umask(0)
    os.umask(mask)
    assert atomic._UMASK == mask  # the umask read at import is the process's
    monkeypatch.setattr(atomic, "_UMASK", 0o022)
    path = tmp_path / "summary.json"
    write_text_atomically(path, "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_corrupt_dft_cache_entry_is_recomputed(tmp_path, caplog):
    from ase import Atoms

    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    level = DFTLevel(basis="sto-3g", density_fit=False)
    first = dft_single_point(h2, level, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("sp-*.json")
    entry.write_text(entry.read_text()[:40])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING):
        again = dft_single_point(h2, level, cache_dir=tmp_path)
    assert "ignoring the unreadable cache entry" in caplog.text
    assert not again.cached and again.energy_eV == pytest.approx(first.energy_eV, abs=1e-8)
    assert dft_single_point(h2, level, cache_dir=tmp_path).cached  # and overwritten


def test_md_stops_at_the_first_non_finite_step(tmp_path):
    from ase.build import molecule
    from ase.calculators.calculator import Calculator, all_changes

    from anids_md.simulate import run_md

    class BlowsUp(Calculator):
        """Harmonic pull to the start, then NaN forces from the 7th call on."""

        implemented_properties = ["energy", "forces"]

        def __init__(self, start):
            super().__init__()
            self.start, self.calls = start, 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.calls += 1
            d = self.atoms.positions - self.start
            forces = -d if self.calls < 7 else np.full_like(d, np.nan)
            self.results = {"energy": 0.5 * float((d**2).sum()), "forces": forces}

    atoms = molecule("CH3CH2OH")
    atoms.calc = BlowsUp(atoms.positions.copy())
    trajectory = tmp_path / "t.extxyz"
    report = run_md(atoms, "nve", steps=20, interval=1, trajectory=trajectory)
    assert report.stopped.startswith("stopped at step") and "non-finite" in report.stopped and not report.stable
    from ase.io import read

    assert all(np.all(np.isfinite(frame.positions)) for frame in read(trajectory, ":"))
