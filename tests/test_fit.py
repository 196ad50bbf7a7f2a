"""`fit`: SMILES to a validated force field, on water with a minimal basis and a few frames."""

import json
from dataclasses import replace

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read

from anids_md.calculator import AniDSCalculator
from anids_md.fit import FitSettings, fit, molecule_from_smiles, sample_configurations
from anids_md.fit.sampling import hessian_displacements, hessian_from_forces, thermal_amplitude_A
from anids_md.reference import DFTLevel

FAST = DFTLevel(xc="PBE", basis="sto-3g", density_fit=False, grid_level=1)


def test_smiles_gives_the_lowest_conformer_with_charge_and_spin():
    ethanol = molecule_from_smiles("CCO")
    assert ethanol.atoms.get_chemical_formula() == "C2H6O" and (ethanol.charge, ethanol.spin) == (0, 0)
    assert molecule_from_smiles("CC(=O)[O-]").charge == -1 and molecule_from_smiles("C[CH2]").spin == 1
    d = ethanol.atoms.get_all_distances()
    assert 1.4 < d[0, 1] < 1.6  # a C-C bond from MMFF94


@pytest.mark.parametrize("smiles, message", [("C1CC", "invalid SMILES"), ("[Na+].[Cl-]", "disconnected fragments")])
def test_bad_smiles_are_named(smiles, message):
    with pytest.raises(ValueError, match=message):
        molecule_from_smiles(smiles)


def test_elements_outside_the_backbone_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"trained on elements \[1, 6, 7, 8, 9\] only .* also has \[16\]"):
        fit("CS", tmp_path, FitSettings(level=FAST, sampler="isotropic"), cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match=r"also has \[16\]"):  # the xTB route's prior started from a backbone
        fit("CS", tmp_path, FitSettings(level=FAST, prior_init="qm9-anids"), cache_dir=tmp_path / "cache", progress=False)


def test_samplers_keep_their_amplitude_and_shape():
    water = molecule("H2O")
    iso = sample_configurations(water, 400, "isotropic", 500.0, seed=0)
    displacement = np.array([a.positions - water.positions for a in iso])
    assert displacement.std() == pytest.approx(thermal_amplitude_A(500.0), rel=0.05)
    anids = np.array([a.positions - water.positions for a in sample_configurations(water, 400, "anids", 500.0, seed=0)])
    assert np.sqrt((anids**2).mean(axis=(0, 2))).mean() == pytest.approx(thermal_amplitude_A(500.0), rel=0.1)
    # A harmonic model with a known Hessian: normal-mode sampling gives kT/k per mode.
    k = 20.0  # eV/Å², one spring between the two atoms of a dimer
    dimer = molecule("CO")
    frames = hessian_displacements(dimer)
    forces = []
    for f in frames:
        r = f.positions[1] - f.positions[0]
        stretch = np.linalg.norm(r) - np.linalg.norm(dimer.positions[1] - dimer.positions[0])
        pull = k * stretch * r / np.linalg.norm(r)
        forces.append(np.array([pull, -pull]))
    hessian = hessian_from_forces(forces)
    samples = sample_configurations(dimer, 4000, "normal-modes", 300.0, seed=1, hessian=hessian)
    bond = np.array([np.linalg.norm(a.positions[1] - a.positions[0]) for a in samples]) - dimer.get_distance(0, 1)
    assert bond.var() == pytest.approx(8.617333262e-5 * 300.0 / k, rel=0.1)


def test_fit_water_end_to_end(tmp_path):
    settings = FitSettings(level=FAST, sampler="normal-modes", frames=12, rounds=1, frames_per_round=4, test_frames=4, md_steps=40, steps=150,
                           nve_steps=40, workers=2, temperature_K=300.0)
    report = fit("O", tmp_path / "water", settings, cache_dir=tmp_path / "cache", progress=False)
    saved = json.loads((tmp_path / "water" / "report.json").read_text())
    for key in ("heldout_forces_mae_meV_per_A", "heldout_energy_mae_meV", "minimum_rmsd_A", "nve_drift_meV_per_atom_per_ps",
                "md_stable", "n_dft_calls", "wall_s", "level"):
        assert key in saved
    optimisation = report.dft_calls_per_stage["dft_minimum"]  # its gradients are training frames too
    # round 1: its 4 MD frames and the first fit's minimum
    assert saved["level"] == "PBE/sto-3g" and report.n_train_frames == 17 + optimisation and report.n_heldout_frames == 4
    assert report.dft_calls_per_stage == {"dft_minimum": optimisation, "Hessian": 18, "first frames": 12, "round 1": 5, "held out": 4}
    assert report.n_dft_calls == report.n_dft_computed == optimisation + 18 + 12 + 5 + 4
    assert np.isfinite(report.heldout_forces_mae_meV_per_A) and report.minimum_rmsd_A < 0.05
    calc = AniDSCalculator(tmp_path / "water" / "model.safetensors")
    minimum = molecule("H2O")
    minimum.calc = calc
    assert np.isfinite(minimum.get_potential_energy())
    assert (tmp_path / "water" / "report.png").stat().st_size > 0 and (tmp_path / "water" / "ml_minimum.xyz").exists()
    # Started again, everything comes from the cache and the finished fits.
    again = fit("O", tmp_path / "water", settings, cache_dir=tmp_path / "cache", progress=False)
    assert again.n_dft_computed == 0 and again.heldout_forces_mae_meV_per_A == pytest.approx(report.heldout_forces_mae_meV_per_A)
    assert again.rounds_stopped == "1 rounds done"
    # A DFT budget that the round would pass: no round, the first fit is final.
    budget = optimisation + 18 + 12 + 4
    tight = fit("O", tmp_path / "water", replace(settings, dft_budget=budget), cache_dir=tmp_path / "cache", progress=False)
    assert tight.rounds_stopped.startswith(f"DFT budget: {budget - 4} calls used, a round adds 5") and "round 1" not in tight.dft_calls_per_stage
    assert tight.n_train_frames == 12 + optimisation and len(tight.rounds) == 1
    with pytest.raises(ValueError, match="dft_budget must be positive"):
        FitSettings(dft_budget=0)
    with pytest.raises(ValueError, match="refit_steps must be positive"):
        FitSettings(refit_steps=0)
    with pytest.raises(ValueError, match="needs committee selection"):
        FitSettings(stop_spread_meV_per_A=50.0)


def test_a_frame_whose_scf_fails_is_left_out_and_counted(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import anids_md.reference.labelling as labelling
    from anids_md.reference import DFTConvergenceError, dft_single_point

    def flaky(atoms, level, cache_dir):
        if atoms.positions[0, 2] > 0.5:
            raise DFTConvergenceError("the SCF did not converge")
        return dft_single_point(atoms, level, cache_dir)

    monkeypatch.setattr(labelling, "single_point", flaky)
    frames = [molecule("H2O") for _ in range(3)]
    frames[1].positions[0, 2] += 1.0
    frames[2].positions[0, 2] += 0.03
    with ThreadPoolExecutor(1) as executor:
        labelled, computed, failed = labelling.label_structures(frames, FAST, executor, tmp_path, progress=False)
    assert failed == 1 and computed == 2 and len(labelled) == 2
    np.testing.assert_allclose(labelled[1].positions, frames[2].positions)  # order kept, the failed frame gone


def test_fit_command_names_bad_input(capsys):
    from anids_md.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["fit", "C1CC", "-o", "unused"])
    assert "invalid SMILES 'C1CC'" in str(stop.value)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "CCO", "-o", "unused", "--charge", "1"])
    assert "--charge 1 contradicts the SMILES 'CCO'" in str(stop.value)


def test_labelling_on_a_dask_cluster_matches_the_direct_calculation(tmp_path):
    from distributed import LocalCluster

    from anids_md.reference import dft_single_point
    from anids_md.reference.labelling import label_structures, make_executor

    frames = [molecule("H2O")]
    frames.append(frames[0].copy())
    frames[1].positions[0, 2] += 0.05
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        executor = make_executor("dask", scheduler=cluster.scheduler_address)
        labelled, computed, failed = label_structures(frames, FAST, executor, tmp_path, progress=False)
        executor.shutdown()
    assert computed == 2 and failed == 0
    for atoms, frame in zip(labelled, frames):
        direct = dft_single_point(frame, FAST, cache_dir=tmp_path / "direct")
        assert atoms.get_potential_energy() == pytest.approx(direct.energy_eV, abs=1e-8)
        np.testing.assert_allclose(atoms.get_forces(), direct.forces_eV_per_A, atol=1e-7)


def test_xtb_md_fit_with_a_committee_resumes_and_fails_validation_by_exit_status(tmp_path, monkeypatch):
    """The chain on water: xTB conformer minima and MD, a molecule prior, a committee of two
    fine-tunes choosing the round's frames, the report; killed in its second fit and started
    again through the command line, it recomputes no DFT label it had, and an impossible
    --max-rmsd makes it exit non-zero."""
    import anids_md.fit.pipeline as pipeline
    from anids_md.cli import main

    settings = FitSettings(level=FAST, sampler="xtb-md", selection="committee", committee=2, frames=6, candidates=3, pool_frames=20,
                           prior_epochs=2, rounds=1, frames_per_round=2, test_frames=4, md_steps=40, steps=60, nve_steps=40,
                           workers=2, temperature_K=300.0, max_rmsd_A=1e-6)
    real = pipeline._fit_models
    labels_at_kill = []

    def killed_in_round_one(out, index, *args, **kwargs):
        if index == 1:  # the held-out frames are queued by now: some may be labelled before the kill
            labels_at_kill.append(len(list((tmp_path / "cache").glob("sp-*"))))
            raise KeyboardInterrupt
        return real(out, index, *args, **kwargs)

    monkeypatch.setattr(pipeline, "_fit_models", killed_in_round_one)
    with pytest.raises(KeyboardInterrupt):
        fit("O", tmp_path / "water", settings, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.setattr(pipeline, "_fit_models", real)
    with pytest.raises(SystemExit, match="FAILED VALIDATION: the ML minimum lies"):
        main(["fit", "O", "-o", str(tmp_path / "water"), "--sampler", "xtb-md", "--selection", "committee", "--committee", "2",
              "--frames", "6", "--candidates", "3", "--pool-frames", "20", "--prior-epochs", "2", "--rounds", "1",
              "--frames-per-round", "2", "--test-frames", "4", "--md-steps", "40", "--steps", "60", "--workers", "2",
              "--temperature", "300", "--max-rmsd", "1e-6", "--basis", "sto-3g", "--grid", "1", "--no-density-fit",
              "--cache", str(tmp_path / "cache"), "--quiet"])
    saved = json.loads((tmp_path / "water" / "report.json").read_text())
    assert saved["validation"].startswith("FAILED VALIDATION") and not saved["passed"]
    calls = saved["dft_calls_per_stage"]
    # every label made before the kill came from the cache: only held-out frames still unlabelled then were computed
    assert labels_at_kill[0] >= calls["first frames"] + calls["round 1"]
    assert saved["n_dft_computed"] == len(list((tmp_path / "cache").glob("sp-*"))) - labels_at_kill[0] <= 4
    assert calls["first frames"] == 6 and calls["round 1"] == 2 + 1 and calls["held out"] == 4
    assert saved["n_train_frames"] == 6 + 3 + calls["dft_minimum"]
    assert saved["xtb"]["frames"] == 20 and saved["xtb"]["minima"] == 1 and saved["xtb"]["conformers_dropped_bonding_changed"] == 0
    assert -1.0 <= saved["spread_error_spearman"] <= 1.0
    atoms = molecule("H2O")
    atoms.calc = AniDSCalculator(tmp_path / "water" / "model.safetensors")
    assert len(atoms.calc.models) == 2 and atoms.calc.get_property("forces_std", atoms).shape == (3,)


def test_selection_picks_where_the_committee_disagrees_and_spreads_farthest_points(tiny_model, tmp_path):
    from anids_md.checkpoint import save_checkpoint, save_committee
    from anids_md.fit.selection import farthest_points, force_spread, largest, select_frames

    from .test_committee import perturbed

    members = [save_checkpoint(m, tmp_path / f"m{k}.safetensors") for k, m in enumerate([tiny_model, perturbed(tiny_model, 1, 0.02)])]
    committee = AniDSCalculator(save_committee(members, tmp_path / "c.safetensors"))
    water = molecule("H2O")
    frames = []
    for stretch in (0.0, 0.02, 0.3, 0.05):  # the strongly stretched frame is where two fits of little data part most
        frame = water.copy()
        frame.positions[1] += stretch * (frame.positions[1] - frame.positions[0])
        frames.append(frame)
    spread = [float(np.max(committee.get_property("forces_std", f))) for f in frames]
    np.testing.assert_allclose(force_spread(committee, frames), spread)
    assert largest(force_spread(committee, frames), 1) == [2]  # the stretched frame
    assert largest(force_spread(committee, frames), 2) == list(np.argsort(spread)[::-1][:2])
    # Farthest-point: from the point nearest the mean, then the farthest each time.
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.1, 0.0], [0.0, 3.0], [1.0, 1.0]])
    assert farthest_points(points, 3) == [4, 1, 3]
    assert sorted(select_frames(frames, 4, "random", 0)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot select 5 of 4"):
        select_frames(frames, 5, "random", 0)


def test_xtb_pool_drops_conformers_whose_bonding_changes_and_keeps_distinct_minima(tmp_path, monkeypatch):
    import anids_md.fit.xtb_sampling as xtb_sampling
    from anids_md.reference import XTBLevel
    from anids_md.settings import PriorConfig

    water = molecule("H2O")
    moved = water.copy()
    moved.positions[1] += [0.0, 0.0, 0.3]
    broken = water.copy()
    broken.positions[2] += 2.0 * (broken.positions[2] - broken.positions[0])  # an O-H bond gone
    real = xtb_sampling.xtb_minimum
    # the first two relax to the same minimum; the third "relaxes" into another bonding
    monkeypatch.setattr(xtb_sampling, "xtb_minimum", lambda atoms, level: broken if atoms is moved else real(water, level))
    settings = PriorConfig(frames=12, starts=1, equilibration_steps=4, interval=2, n_valid=2)
    minima = xtb_sampling.xtb_minima([water, water.copy(), moved], XTBLevel(), tmp_path)
    assert minima.n_conformers == 3 and minima.n_bonding_changed == 1 and len(minima.atoms) == 1
    assert xtb_sampling.same_bonding(water, minima.atoms[0]) and not xtb_sampling.same_bonding(water, broken)
    pool = xtb_sampling.xtb_pool(minima, settings, XTBLevel(), 0, tmp_path, progress=False)
    assert len(pool.frames) == 12 and all(f.get_forces().shape == (3, 3) for f in pool.frames)
    # read back, not recomputed: the minima (the DFT optimisations start there) and the frames
    monkeypatch.setattr(xtb_sampling, "xtb_minimum", None)
    again = xtb_sampling.xtb_pool(xtb_sampling.xtb_minima([water], XTBLevel(), tmp_path), settings, XTBLevel(), 0, tmp_path, progress=False)
    assert len(again.frames) == 12
    np.testing.assert_allclose(again.frames[5].positions, pool.frames[5].positions)


def test_xtb_md_fit_labels_on_the_workers_while_xtb_runs_and_the_prior_fits(tmp_path, monkeypatch):
    """The DFT optimisation is handed to the workers before the xTB MD starts, and (random
    selection needs no model) the first frames before the prior's fit: the slow DFT work runs
    beside the xTB work instead of after it. The held-out frames are queued before the last fit,
    so they are labelled while it trains."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import contextmanager

    import anids_md.fit.pipeline as pipeline

    events = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            events.append(fn.__name__)
            return super().submit(fn, *args, **kwargs)

    @contextmanager
    def recording_pool(kind, workers, threads, scheduler):
        with Recording(workers) as executor:
            yield executor

    def recorded(name, real):
        def call(*args, **kwargs):
            events.append(name)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(pipeline, "labelling_pool", recording_pool)
    monkeypatch.setattr(pipeline, "xtb_pool", recorded("xtb MD", pipeline.xtb_pool))
    monkeypatch.setattr(pipeline, "fit_prior", recorded("prior fit", pipeline.fit_prior))
    monkeypatch.setattr(pipeline, "_fit_models", recorded("fit", pipeline._fit_models))
    settings = FitSettings(level=FAST, sampler="xtb-md", frames=5, pool_frames=20, prior_epochs=2, rounds=1, frames_per_round=2,
                           test_frames=3, md_steps=40, steps=40, nve_steps=40, workers=2, temperature_K=300.0, max_rmsd_A=1.0)
    report = fit("O", tmp_path / "water", settings, cache_dir=tmp_path / "cache", progress=False)
    assert events[:8] == ["dft_optimize", "xtb MD"] + ["single_point"] * 5 + ["prior fit"]
    # round 1's frames and the first fit's minimum, the held-out frames, the last fit
    assert events[8:] == ["fit"] + ["single_point"] * (2 + 1 + 3) + ["fit"]
    assert report.dft_calls_per_stage["first frames"] == 5 and report.n_train_frames == 5 + 3 + report.dft_calls_per_stage["dft_minimum"]
    # the first fit's minimum, relaxed from DFT's, is labelled and trained on in round 1
    first_fit = next((tmp_path / "water" / "training").glob("fit0-*")) / "model.safetensors"
    (at_minimum,), _ = pipeline._ml_minima(first_fit, [read(tmp_path / "water" / "dft_minimum.xyz")])
    trained = read(tmp_path / "water" / "train_frames.extxyz", index=":")
    assert any(np.allclose(a.positions, at_minimum.positions, atol=1e-6) and np.isfinite(a.get_forces()).all() for a in trained)
    assert not any(np.allclose(a.positions, at_minimum.positions, atol=1e-6) for a in read(tmp_path / "water" / "fit0_frames.extxyz", index=":"))
    assert set(report.stage_wall_s) >= {"xtb_sampling", "prior", "dft_minimum", "sampling_and_labelling", "training"}


def test_fine_tunes_from_a_prior_follow_the_recommended_recipe(tmp_path):
    from ase.io import write

    from anids_md.fit.pipeline import fine_tune_configs
    from anids_md.train import load_config

    frames = tmp_path / "frames.extxyz"
    write(frames, molecule("H2O"))
    recipe = load_config("rmd17-50-anids").optim
    prior = tmp_path / "prior.safetensors"
    configs = fine_tune_configs(frames, 10, 1, tmp_path / "training", FitSettings(steps=123, committee=2, selection="committee"), prior)
    assert [c.seed for c in configs] == [0, 1] and configs[0].data.n_valid == 2
    for c in configs:  # the recipe's optimiser from the prior, the fit's own number of steps, no prior built again
        assert (c.optim.lr, c.optim.energy_weight) == (recipe.lr, recipe.energy_weight)
        assert c.optim.max_steps == 123 and c.init == str(prior) and c.prior is None and c.denoise.kind == "none"
    from_backbone = fine_tune_configs(frames, 10, 1, tmp_path / "training", FitSettings(steps=123), None)
    assert from_backbone[0].init == FitSettings().init and from_backbone[0].denoise.kind == "anisotropic"
    assert from_backbone[0].name != configs[0].name.removesuffix("-m0")  # another recipe, another run folder
    # a round's refit: each member continues from its own previous model, for refit_steps
    previous = [tmp_path / "m0.safetensors", tmp_path / "m1.safetensors"]
    refits = fine_tune_configs(frames, 10, 2, tmp_path / "training", FitSettings(steps=123, refit_steps=45, committee=2,
                                                                              selection="committee"), prior, previous)
    assert [c.init for c in refits] == [str(m) for m in previous] and {c.optim.max_steps for c in refits} == {45}
    assert refits[0].optim.lr == recipe.lr and refits[0].name != configs[0].name
    # the last round's refit runs the first fit's steps; every fit keeps its last weights
    last = fine_tune_configs(frames, 10, 2, tmp_path / "training", FitSettings(steps=123, refit_steps=45), prior, previous[:1], last=True)
    assert last[0].optim.max_steps == 123 and last[0].init == str(previous[0]) and last[0].name != refits[0].name.removesuffix("-m0")
    assert {c.optim.keep for c in [*configs, *from_backbone, *refits, *last]} == {"last"}
