"""Molecule priors on the 32-frame ethanol fixture with tiny settings: xTB MD frames labelled
along the way, a fit that loads in the calculator, reuse and resumption without new xTB MD (also for a new fit), a
fine-tune that starts from the prior, and named errors."""

from dataclasses import replace

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

import anids_md.prior as prior_module
from anids_md import AniDSCalculator
from anids_md.data import read_rmd17
from anids_md.prior import build_prior, train_with_prior
from anids_md.reference.xtb import xtb_energy_forces
from anids_md.settings import PriorConfig
from anids_md.train import load_config

from .conftest import ETHANOL

TINY = PriorConfig(frames=40, starts=2, equilibration_steps=10, interval=4, epochs=2, n_valid=8, compile=False)  # eager: no minute of compiling
TINY_OVERRIDES = ["prior.frames=40", "prior.starts=2", "prior.equilibration_steps=10", "prior.interval=4", "prior.epochs=2",
                  "prior.n_valid=8", "prior.compile=false"]


def count_md_runs(monkeypatch) -> list:
    calls = []
    real = prior_module.run_md

    def counted(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(prior_module, "run_md", counted)
    return calls


def test_a_prior_is_built_from_xtb_md_reused_and_resumed(tmp_path, monkeypatch):
    calls = count_md_runs(monkeypatch)
    report = build_prior(read_rmd17(ETHANOL, frames=slice(0, 3)), tmp_path, TINY, progress=False)
    assert len(calls) == 2 and report.n_frames == 40 and report.n_failed_runs == 0
    frames = read(report.frames_file, index=":")
    for atoms in (frames[0], frames[-1]):  # labelled with the xTB energy and forces of their own positions
        energy, forces = xtb_energy_forces(atoms)
        assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-5)
        np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-3)
    assert np.ptp([a.get_potential_energy() for a in frames]) > 0.1  # thermal frames, not copies of the minimum
    calc = AniDSCalculator(report.model)
    ethanol = read_rmd17(ETHANOL, frames=[5])[0]
    ethanol.calc = calc
    assert np.isfinite(ethanol.get_potential_energy()) and np.abs(ethanol.get_forces()).max() > 0
    again = build_prior(read_rmd17(ETHANOL, frames=[0]), tmp_path, TINY, progress=False)  # one molecule: the same prior
    assert again.model == report.model and len(calls) == 2
    (report.folder / "xtb_frames.extxyz").unlink()  # as if killed after the MD runs: they are read back, not redone
    build_prior(read_rmd17(ETHANOL, frames=[0]), tmp_path, TINY, progress=False)
    assert len(calls) == 2
    fitting = []  # the frames' folder is unlocked while a fit runs: fits with other settings can run beside it
    fit = prior_module.fit_prior
    monkeypatch.setattr(prior_module, "fit_prior", lambda frames_file, *a: fitting.append((frames_file.parent / "prior.lock").exists())
                        or fit(frames_file, *a))
    longer = build_prior(read_rmd17(ETHANOL, frames=[0]), tmp_path, replace(TINY, epochs=3), progress=False)
    assert len(calls) == 2 and longer.folder == report.folder and longer.model != report.model  # a new fit on the same frames
    assert fitting == [False]


def test_an_md_run_xtb_cannot_finish_is_skipped_and_counted(tmp_path, monkeypatch):
    real = prior_module.run_md

    def failing_second(atoms, *args, seed=0, **kwargs):
        report = real(atoms, *args, seed=seed, **kwargs)
        if seed == 1000:
            report.stopped = "stopped at step 3: the SCF did not converge"
        return report

    monkeypatch.setattr(prior_module, "run_md", failing_second)
    settings = PriorConfig(frames=40, starts=3, equilibration_steps=10, interval=4, epochs=1, n_valid=8, compile=False)
    report = build_prior(read_rmd17(ETHANOL, frames=[0]), tmp_path, settings, progress=False)
    assert report.n_failed_runs == 1 and report.n_frames == 28  # two runs of 14 frames


def test_train_builds_its_prior_and_starts_from_it(tmp_path):
    config = load_config(None, [f"data.train={ETHANOL}", "data.protocol=null", "data.n_valid=8", "optim.max_steps=3", "device=cpu",
                                f"output_dir={tmp_path}", "name=ft", *TINY_OVERRIDES])
    summary = train_with_prior(config, progress=False)
    assert summary["prior"]["n_frames"] == 40
    saved = (tmp_path / "ft" / "config.yaml").read_text()
    assert "prior-" in saved and summary["steps"] == 3  # the fine-tune's init is the prior's model


@pytest.mark.parametrize("atoms, message", [
    (Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=[8, 8, 8], pbc=True), "periodic"),
    (Atoms(numbers=[1, 87], positions=[[0, 0, 0], [0, 0, 2.0]]), "no parameters"),
    (Atoms("H2S", positions=[[0, 0, 0], [1.34, 0, 0], [-0.03, 1.34, 0]]), r"starts from qm9-xtb: .* also has \[16\]; prior.init=null"),
])
def test_a_prior_for_what_xtb_cannot_treat_is_refused_before_any_work(atoms, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        build_prior([atoms], tmp_path, TINY, progress=False)
    assert not list(tmp_path.iterdir())


def test_a_prior_from_a_missing_checkpoint_is_refused_before_any_md(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file 'missing.safetensors'"):
        build_prior(read_rmd17(ETHANOL, frames=[0]), tmp_path, replace(TINY, init="missing.safetensors"), progress=False)
    assert not list(tmp_path.iterdir())
