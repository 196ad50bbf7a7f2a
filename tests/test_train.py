import csv

import numpy as np
import pytest
import torch

from anids_md.checkpoint import load_checkpoint
from anids_md.evaluation import evaluate
from anids_md.settings import PriorConfig
from anids_md.train import Trainer, load_config, train
from anids_md.train.config import config_to_dict

from .conftest import emt_frames, interrupt, tiny_run


def test_training_lowers_the_loss_and_writes_outputs(tmp_path, frames_file):
    config = tiny_run(tmp_path, frames_file, "optim.epochs=12", f"data.test={frames_file}")
    summary = train(config, progress=False)
    run = config.run_dir
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == 12
    losses = [float(r["train_loss"]) for r in rows]
    assert np.mean(losses[-3:]) < 0.5 * losses[0]
    for name in ("best.safetensors", "model.safetensors", "state.safetensors", "summary.json", "learning_curve.png"):
        assert (run / name).exists()
    model, metadata = load_checkpoint(run / "model.safetensors")
    assert metadata["training"]["n_train"] == 20 and metadata["results"]["test"]["n_structures"] == 24
    assert summary["test"]["forces_mae_meV_per_A"] == pytest.approx(
        evaluate(model, emt_frames(24))["forces_mae_meV_per_A"], rel=1e-4)


@pytest.mark.parametrize("noise", ["none", "fixed"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, frames_file, monkeypatch, noise):
    extra = ("optim.epochs=4", f"denoise.kind={noise}", "denoise.probability=1")
    reference = train(tiny_run(tmp_path / "a", frames_file, *extra), progress=False)

    restore = interrupt(monkeypatch, Trainer, "validate", at_call=3)  # killed during the third epoch's validation
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(tmp_path / "b", frames_file, *extra), progress=False)
    restore()
    rows = list(csv.DictReader(open(tmp_path / "b" / "runs" / "tiny" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [5, 10]
    resumed = train(tiny_run(tmp_path / "b", frames_file, *extra), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "b" / "runs" / "tiny" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert resumed["valid"]["forces_mae_meV_per_A"] == pytest.approx(reference["valid"]["forces_mae_meV_per_A"], rel=1e-9)


def test_wall_clock_budget_stops_training_and_stretches_the_cosine(tmp_path, frames_file, monkeypatch):
    from anids_md.train import loop

    class Clock:  # every reading advances one second: each epoch costs 1 s of training and 1 s of validation
        now = 0.0

        def perf_counter(self):
            self.now += 1.0
            return self.now

    monkeypatch.setattr(loop, "time", Clock())
    config = tiny_run(tmp_path, frames_file, "optim.epochs=50", "optim.max_wall_s=7", "optim.patience=1000")
    summary = train(config, progress=False)
    rows = list(csv.DictReader(open(config.run_dir / "log.csv")))
    # 5 steps per 2 s: budgets of 5 + 5*5/2 = 17 steps re-estimated each epoch, reached in the 4th epoch
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 17]
    assert summary["steps"] == 17 and "cores" in summary["machine"]  # where it ran, for the record
    assert float(rows[-1]["lr"]) == pytest.approx(0.01 * config.optim.min_lr_ratio)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["optim.lr"])
    config = load_config("rmd17-50", ["optim.lr=0.001", "model.channels=16"])
    assert config.optim.lr == 0.001 and config.model.channels == 16 and config.data.protocol == "rmd17-50"


def test_recipes_refuse_what_they_would_ignore(tmp_path, capsys):
    from anids_md.cli import main

    # with init, the architecture is the checkpoint's: a model key that contradicts it is refused by name
    with pytest.raises(SystemExit, match="model.channels=64 \\(the checkpoint has 32\\)"):
        main(["train", "--config", "rmd17-50", "init=qm9-anids", "model.channels=64", f"data.train={tmp_path / 'x.npz'}", f"output_dir={tmp_path}"])
    with pytest.raises(SystemExit, match="model.force_scale: derived from the training data"):
        main(["train", "--config", "rmd17-50", "model.force_scale=2", f"data.train={tmp_path / 'x.npz'}"])
    with pytest.raises(SystemExit, match="config.optim.lr must be a number, got 'fast'"):
        main(["train", "--config", "rmd17-50", "optim.lr=fast", f"data.train={tmp_path / 'x.npz'}"])
    assert not list(tmp_path.iterdir())  # nothing was claimed
    # the rmd17-50-anids recipe is rmd17-50 plus its own keys (base:), and the defaults are rmd17-50's
    anids, plain = load_config("rmd17-50-anids", ["data.train=x"]), load_config("rmd17-50", ["data.train=x"])
    assert anids.data == plain.data and anids.init is None and anids.prior == PriorConfig() and plain.prior is None
    assert (anids.optim.max_steps, anids.optim.energy_weight, anids.optim.lr) == (4000, 3.0, 2e-3)
    assert (plain.optim.max_steps, plain.optim.energy_weight, plain.optim.lr) == (None, 1.0, 5e-3)
    assert load_config("rmd17-50-anids", ["data.train=x", "prior=null"]).prior is None
    assert load_config(None, ["data.train=x"]).optim == plain.optim


def test_energy_shift_is_aligned_from_a_sample_of_a_large_set(tiny_model, ethanol, monkeypatch):
    """A start trained at another level gets the per-atom shift that zeroes its mean energy error;
    on a large training set that mean comes from at most SHIFT_SAMPLE structures."""
    from anids_md.data import graph_from_atoms
    from anids_md.evaluation import predict
    from anids_md.train import trainer

    graph = graph_from_atoms(ethanol, tiny_model.config.cutoff, with_labels=False)
    (energy,), _ = predict(tiny_model, [graph])
    graph.energy = torch.tensor(energy + 0.25 * len(ethanol))  # labels 0.25 eV per atom above the model
    seen = []
    monkeypatch.setattr(trainer, "predict", lambda model, graphs: seen.append(len(graphs)) or predict(model, graphs))
    before = tiny_model.config.energy_shift
    trainer.align_energy_shift(tiny_model, [graph] * 3 * trainer.SHIFT_SAMPLE)
    assert seen == [trainer.SHIFT_SAMPLE]
    assert tiny_model.config.energy_shift - before == pytest.approx(0.25, abs=1e-9)


def test_wall_clock_budget_is_kept_within_an_epoch(tmp_path, frames_file, monkeypatch):
    from anids_md.train import loop

    class Clock:  # every reading advances one second: each step costs 1 s
        now = 0.0

        def perf_counter(self):
            self.now += 1.0
            return self.now

    monkeypatch.setattr(loop, "time", Clock())
    monkeypatch.setattr(loop, "BUDGET_CHECK_STEPS", 1)
    config = tiny_run(tmp_path, frames_file, "optim.epochs=50", "optim.max_wall_s=3", "optim.patience=1000")
    summary = train(config, progress=False)
    rows = list(csv.DictReader(open(config.run_dir / "log.csv")))
    # an epoch is 5 steps: the budget of 3 s stops the first one after 3, at the cosine's floor
    assert summary["steps"] == 3 and [int(r["step"]) for r in rows] == [3]
    assert float(rows[-1]["lr"]) == pytest.approx(0.01 * config.optim.min_lr_ratio)


@pytest.mark.parametrize("keep, kept_epoch", [("best", 1), ("last", 6)])
def test_kept_weights_are_the_best_epochs_or_the_last(tmp_path, frames_file, monkeypatch, keep, kept_epoch):
    """optim.keep=last keeps the last epoch's EMA weights even when validation got worse after
    the first epoch (and does not stop early); best keeps the first epoch's."""
    from safetensors.torch import load_file

    validate, calls = Trainer.validate, []

    def worsening(self):  # the real metrics, with a loss that grows every epoch
        calls.append(1)
        return {**validate(self), "loss": float(len(calls))}

    monkeypatch.setattr(Trainer, "validate", worsening)
    config = tiny_run(tmp_path, frames_file, "optim.epochs=6", "optim.patience=2", f"optim.keep={keep}")
    summary = train(config, progress=False)
    assert summary["best_epoch"] == kept_epoch and summary["epochs"] == (6 if keep == "last" else 3)
    kept, _ = load_checkpoint(config.run_dir / "model.safetensors")
    ema = {k.removeprefix("ema."): v for k, v in load_file(config.run_dir / "state.safetensors").items() if k.startswith("ema.")}
    same = all(torch.equal(value, ema[name]) for name, value in kept.state_dict().items())
    assert same == (keep == "last")


def test_a_run_folders_config_loads_again_and_names_the_architecture_trained(tmp_path, frames_file):
    """config.yaml is the run's settings as --config reads them: with init, its model section is
    the checkpoint's architecture (not the defaults the run ignored); no data-derived keys."""
    import yaml

    first = tiny_run(tmp_path / "a", frames_file, "optim.epochs=1", "model.elements=[1, 6, 7, 8, 9]")  # not the default
    train(first, progress=False)
    again = load_config(str(first.run_dir / "config.yaml"))
    assert config_to_dict(again) == config_to_dict(first)
    continued = tiny_run(tmp_path / "b", frames_file, "optim.epochs=1", f"init={first.run_dir / 'model.safetensors'}")
    train(continued, progress=False)
    saved = yaml.safe_load((continued.run_dir / "config.yaml").read_text())
    stored = load_checkpoint(first.run_dir / "model.safetensors")[1]["model"]
    assert saved["model"]["elements"] == stored["elements"] == [1, 6, 7, 8, 9] and saved["model"]["channels"] == stored["channels"]
    assert not set(saved["model"]) & {"force_scale", "energy_shift", "reference_energies", "avg_num_neighbors"}
    assert load_config(str(continued.run_dir / "config.yaml")).init == continued.init
