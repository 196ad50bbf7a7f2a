"""Training through torch.compile (optim.compile): the same losses, gradients and runs as eager
training. Without a C++ compiler on this machine the checks run on torch.compile's graph capture
alone (backend aot_eager), as the compiled calculator's test does."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.build import molecule

from anids_md.data import collate, graph_from_atoms
from anids_md.runtime import check_compiler
from anids_md.settings import PriorConfig
from anids_md.train import PretrainConfig, load_config, train
from anids_md.train import compiled as compiled_module
from anids_md.train.compiled import CompiledEnergyForceLoss
from anids_md.train.losses import energy_force_loss

from .conftest import emt_frames, tiny_run


def backend() -> str:
    try:
        check_compiler(torch.device("cpu"))
        return "inductor"
    except RuntimeError:
        return "aot_eager"


def labelled_batch(model, frames, rng):
    """Frames with labels near the model's own predictions, as in training (large label errors
    would hide a wrong force term behind the energy term)."""
    graphs = [graph_from_atoms(a, model.config.cutoff) for a in frames]
    batch = collate(graphs)
    out = model(batch)
    energy = out["energy"].detach() + torch.from_numpy(rng.normal(0, 0.05, batch.n_structures))
    forces = out["forces"].detach() + torch.from_numpy(rng.normal(0, 0.05, (batch.n_atoms, 3)))
    return replace(batch, energy=energy, forces=forces)


def test_compiled_loss_and_gradients_equal_eager_on_batches_of_any_size(tiny_model):
    """Batches of other atom and edge counts and other molecules after the first give the eager
    loss and parameter gradients (float64: to rounding). On torch.compile's graph capture
    (aot_eager), which is what this module builds; the run below goes through inductor."""
    rng = np.random.default_rng(0)
    water, methane = molecule("H2O"), molecule("CH4")
    for a in (water, methane):
        a.positions += rng.normal(0, 0.05, a.positions.shape)
    batches = [labelled_batch(tiny_model, frames, rng)
               for frames in (emt_frames(3), emt_frames(2, seed=1), [water, methane] + emt_frames(2, seed=2), emt_frames(5, seed=3))]
    assert len({(b.n_atoms, b.edge_index.shape[1]) for b in batches}) == 4
    compiled = CompiledEnergyForceLoss(tiny_model, energy_weight=3.0, forces_weight=100.0, form="mse", backend="aot_eager")
    for batch in batches:
        tiny_model.zero_grad()
        eager = energy_force_loss(tiny_model, batch, 3.0, 100.0)
        eager["loss"].backward()
        expected = [p.grad.clone() for p in tiny_model.parameters()]
        tiny_model.zero_grad()
        result = compiled(batch)
        result["loss"].backward()
        assert result["loss"].item() > 1e-3  # the labels' noise: a loss that could be wrong
        for key in ("loss", "energy", "forces"):
            assert result[key].item() == pytest.approx(eager[key].item(), rel=1e-9)
        for p, g in zip(tiny_model.parameters(), expected):
            assert torch.allclose(p.grad, g, rtol=1e-7, atol=1e-10)


def test_compiled_loss_and_compiled_network_name_unknown_elements(tiny_model):
    """Inside a compiled graph an unknown element would index another's weights: refused before."""
    compiled = CompiledEnergyForceLoss(tiny_model, 1.0, 100.0, "mse", backend="aot_eager")
    gold = molecule("H2O")
    gold.numbers[0] = 79
    batch = collate([graph_from_atoms(gold, tiny_model.config.cutoff)])
    batch.energy, batch.forces = torch.zeros(1, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="atomic numbers \\[79\\]"):
        compiled(batch)
    tiny_model.compile_network(backend="aot_eager")
    with pytest.raises(ValueError, match="atomic numbers \\[79\\]"):
        tiny_model(batch)


def test_a_compiled_training_run_equals_the_eager_run(tmp_path, frames_file, monkeypatch):
    if backend() == "aot_eager":
        monkeypatch.setattr("anids_md.train.trainer.check_compiler", lambda device: None)
        monkeypatch.setattr(compiled_module.CompiledEnergyForceLoss.__init__, "__defaults__", ("aot_eager",))
    extra = ("optim.epochs=3", "dtype=float64")
    eager = train(tiny_run(tmp_path / "eager", frames_file, *extra), progress=False)
    compiled = train(tiny_run(tmp_path / "compiled", frames_file, *extra, "optim.compile=true"), progress=False)
    assert eager["valid"]["forces_mae_meV_per_A"] > 1.0
    for key in ("forces_mae_meV_per_A", "energy_mae_meV"):
        assert compiled["valid"][key] == pytest.approx(eager["valid"][key], rel=1e-6)


def test_compile_is_refused_where_it_would_be_ignored():
    with pytest.raises(ValueError, match="optim.compile applies to energy \\+ force training only"):
        load_config(None, ["data.train=x", "optim.compile=true", "denoise.kind=fixed"])
    with pytest.raises(ValueError, match="denoising pretraining is not compiled"):
        load_config(None, ["optim.compile=true"], kind=PretrainConfig)


def test_a_compiled_prior_fit_is_a_fit_of_its_own_and_uncompiled_fits_keep_their_names():
    from anids_md import prior

    plain = PriorConfig(init=None, compile=False)
    old_name = prior._digest({"fit": {"epochs": plain.epochs, "n_valid": plain.n_valid, "init": None}, "init": None, "seed": 0})
    assert prior.fit_digest(plain, 0) == old_name
    assert prior.fit_digest(PriorConfig(init=None, compile=True), 0) != old_name
    assert prior.prior_digest([molecule("H2O")], PriorConfig(compile=True), 0) == prior.prior_digest([molecule("H2O")], plain, 0)


def test_compile_auto_compiles_a_prior_fit_on_cpu_only_where_a_compiler_is_found(monkeypatch):
    from anids_md import prior

    monkeypatch.setattr(prior, "resolve_device", lambda _: torch.device("cpu"))
    monkeypatch.delenv("CXX", raising=False)
    for found in (True, False):
        monkeypatch.setattr("shutil.which", lambda name, found=found: f"/usr/bin/{name}" if found else None)
        assert prior.with_compile_resolved(PriorConfig()).compile is found
        assert prior.with_compile_resolved(PriorConfig(compile=False)).compile is False
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):  # asked for, not found: named before any MD
        prior.with_compile_resolved(PriorConfig(compile=True))
    with pytest.raises(ValueError, match="prior.compile must be true, false or auto"):
        PriorConfig(compile="yes")
