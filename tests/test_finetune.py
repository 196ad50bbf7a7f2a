"""Training with auxiliary denoising: frozen generator, force encoding, corruption bookkeeping."""

import numpy as np
import pytest
import torch
from e3nn import o3
from scipy.spatial.transform import Rotation

from anids_md.checkpoint import HEAD_PREFIX, CheckpointError, load_checkpoint, load_denoising_head, load_generator
from anids_md.cli import main
from anids_md.data import collate, graph_from_atoms
from anids_md.noise import ForceEncoding, NoiseConfig, structure_covariances
from anids_md.train import Trainer
from anids_md.train.losses import energy_force_loss

from .conftest import tiny_run


def finetune(tmp_path, frames_file, pretrained, *extra):  # noqa: F811
    config, _ = pretrained
    return Trainer(tiny_run(tmp_path, frames_file, f"init={config.run_dir / 'model.safetensors'}", *extra), progress=False)


def test_pretrained_weights_load_and_covariances_are_cached_frozen(tmp_path, frames_file, pretrained):  # noqa: F811
    trainer = finetune(tmp_path, frames_file, pretrained, "denoise.kind=anisotropic", "optim.epochs=1")
    config, _ = pretrained
    path = config.run_dir / "model.safetensors"
    backbone, _ = load_checkpoint(path)
    assert torch.equal(trainer.model.encoder.blocks[0].gate.gates.weight, backbone.encoder.blocks[0].gate.gates.weight)
    # The generator is not trained: nothing of it is among the optimised parameters ...
    names = [n for n, _ in trainer.trainable.named_parameters()]
    assert all(n.startswith(("model.", "denoising.force_encoding.", "denoising.head.")) for n in names)
    # The denoising head starts from the pretrained one.
    head = load_denoising_head(path, trainer.model.config)
    assert torch.equal(trainer.denoising.head.readout.weight, head.readout.weight)
    # ... and each frame's covariances are the frozen generator's, computed once.
    generator, settings = load_generator(path)
    noise = NoiseConfig(**settings)
    graph = trainer.train_graphs[3].to(dtype=torch.float32)
    expected = structure_covariances(noise, graph, generator).matrices.double().detach()
    cached = trainer.denoising.covariances[3]
    # ... rescaled by one factor for all frames, so the mean scale √(tr Σ/3) is denoise.mean_scale_A
    factor = float(cached[0, 0, 0] / expected[0, 0, 0])
    assert not cached.requires_grad and torch.allclose(cached, factor * expected, rtol=1e-5, atol=1e-9)
    other = structure_covariances(noise, trainer.train_graphs[5].to(dtype=torch.float32), generator).matrices.double().detach()
    assert torch.allclose(trainer.denoising.covariances[5], factor * other, rtol=1e-5, atol=1e-9)
    assert trainer.denoising.mean_noise_scale() == pytest.approx(0.05, rel=1e-9)


@pytest.mark.parametrize("mode", ["dens", "separate"])
def test_no_corrupted_atoms_gives_plain_loss_and_zero_denoising(tmp_path, frames_file, pretrained, mode):  # noqa: F811
    trainer = finetune(tmp_path, frames_file, pretrained, "denoise.kind=anisotropic", "denoise.probability=1e-12", f"denoise.mode={mode}",
                       "optim.epochs=1")
    batch = collate(trainer.train_graphs[:4]).to(dtype=torch.float32)
    losses = trainer.denoising.loss(trainer.model, batch, [0, 1, 2, 3], 0.0, 1.0, 10.0, np.random.default_rng(0))
    plain = energy_force_loss(trainer.model, batch, 1.0, 10.0)
    assert float(losses["denoise"]) == 0.0 and torch.isfinite(losses["loss"])
    assert float(losses["loss"].detach()) == pytest.approx(float(plain["loss"].detach()), rel=1e-5)


def test_corrupted_atoms_get_denoising_and_no_force_loss(tmp_path, frames_file, pretrained):  # noqa: F811
    trainer = finetune(tmp_path, frames_file, pretrained, "denoise.kind=fixed", "denoise.probability=1", "denoise.atom_ratio=1",
                       "denoise.mode=dens", "optim.epochs=1")
    batch = collate(trainer.train_graphs[:4]).to(dtype=torch.float32)
    losses = trainer.denoising.loss(trainer.model, batch, [0, 1, 2, 3], 0.5, 1.0, 10.0, np.random.default_rng(0))
    assert float(losses["forces"]) == 0.0 and float(losses["denoise"]) > 0  # every atom corrupted
    trainer.model.zero_grad()
    losses["loss"].backward()
    assert float(trainer.denoising.force_encoding.weight.grad.abs().sum()) > 0
    at_end = trainer.denoising.loss(trainer.model, batch, [0, 1, 2, 3], 1.0, 1.0, 10.0, np.random.default_rng(0))
    assert float(at_end["loss"].detach()) == pytest.approx(float(at_end["energy"]), rel=1e-5)  # λ_denoise has decayed to 0
    # λ_denoise defaults to forces weight / 32 (half DeNS's ratio): half of it at half the run, here forces weight 10
    half = trainer.denoising.loss(trainer.model, batch, [0, 1, 2, 3], 0.5, 1.0, 10.0, np.random.default_rng(1))
    assert float(half["loss"].detach()) == pytest.approx(float(half["energy"]) + 0.5 * 10.0 / 32 * float(half["denoise"]), rel=1e-5)


@pytest.mark.parametrize("form", ["mse", "dens"])
def test_separate_mode_supervises_the_clean_batch_exactly_as_plain_training(tmp_path, frames_file, pretrained, form):  # noqa: F811
    trainer = finetune(tmp_path, frames_file, pretrained, "denoise.kind=anisotropic", "denoise.mode=separate", f"optim.loss={form}",
                       "denoise.probability=1", "denoise.atom_ratio=0.5", "optim.epochs=1")
    batch = collate(trainer.train_graphs[:4]).to(dtype=torch.float32)

    def gradients(losses):
        trainer.model.zero_grad()
        losses["loss"].backward()
        return [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    plain = energy_force_loss(trainer.model, batch, 1.0, 10.0, form)
    expected = gradients(plain)
    at_end = trainer.denoising.loss(trainer.model, batch, [0, 1, 2, 3], 1.0, 1.0, 10.0, np.random.default_rng(0))  # λ = 0
    assert float(at_end["denoise"]) > 0 and float(at_end["forces"]) == pytest.approx(float(plain["forces"]), rel=1e-6)
    for got, want in zip(gradients(at_end), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    early = trainer.denoising.loss(trainer.model, batch, [0, 1, 2, 3], 0.0, 1.0, 10.0, np.random.default_rng(0))
    gradients(early)
    assert float(trainer.denoising.force_encoding.weight.grad.abs().sum()) > 0  # the noisy pass trains too


def test_loss_forms_equal_their_closed_forms():
    from anids_md.train.losses import scalar_error, vector_error

    e = torch.tensor([0.3, -1.2, 0.5])
    v = torch.tensor([[3.0, 4.0, 0.0], [0.0, -1.0, 0.0]])
    assert float(scalar_error(e, "mse")) == pytest.approx((0.09 + 1.44 + 0.25) / 3)
    assert float(scalar_error(e, "dens")) == pytest.approx((0.3 + 1.2 + 0.5) / 3)
    assert float(vector_error(v, "mse")) == pytest.approx((9 + 16 + 1) / 6)  # per component
    assert float(vector_error(v, "dens")) == pytest.approx((5 + 1) / 2)  # L2MAE: mean per-atom norm
    assert float(vector_error(v[:0], "dens")) == 0.0 and float(vector_error(v[:0], "mse")) == 0.0
    zero = torch.zeros(2, 3, requires_grad=True)
    vector_error(zero, "dens").backward()
    assert torch.all(torch.isfinite(zero.grad))  # no NaN gradient at a perfect fit


@pytest.mark.parametrize("override, message", [
    ("denoise.mean_scale_A=0", "denoise.mean_scale_A must be positive"), ("denoise.probability=1.5", "denoise.probability must be in"),
    ("denoise.atom_ratio=0", "denoise.atom_ratio must be in"), ("denoise.mode=both", "denoise.mode must be"),
    ("optim.loss=l1", "optim.loss must be"),
])
def test_bad_denoising_settings_are_named(override, message):
    from anids_md.train import load_config

    with pytest.raises(ValueError, match=message):
        load_config("rmd17-50", [override])


def test_force_field_checkpoints_leave_the_denoising_head_behind(tmp_path, frames_file, pretrained):  # noqa: F811
    from safetensors import safe_open

    trainer = finetune(tmp_path, frames_file, pretrained, "denoise.kind=fixed", "optim.epochs=1")
    trainer.fit()
    config, _ = pretrained
    with safe_open(str(config.run_dir / "model.safetensors"), framework="pt") as handle:
        assert any(k.startswith(HEAD_PREFIX) for k in handle.keys())  # pretraining keeps it for fine-tuning
    with safe_open(str(trainer.run_dir / "model.safetensors"), framework="pt") as handle:
        assert not any(k.startswith(HEAD_PREFIX) for k in handle.keys())  # the calculator never runs it
    assert load_denoising_head(trainer.run_dir / "model.safetensors", trainer.model.config) is None


def test_force_encoding_is_equivariant(tiny_model, tiny_head, ethanol):
    torch.manual_seed(0)
    encoding = ForceEncoding(tiny_model.config.channels, tiny_model.config.lmax).double()
    forces = torch.randn(len(ethanol), 3, dtype=torch.float64)
    mask = torch.tensor([True, False, True, True, False, True, False, False, True])
    rotation = torch.from_numpy(Rotation.random(random_state=7).as_matrix())

    def run(atoms, f):
        graph = graph_from_atoms(atoms, tiny_model.config.cutoff)
        out = tiny_model.predict(graph, initial=encoding(f, mask))
        return out["energy"], tiny_head(out["encoding"], graph.edge_index), out["forces"]

    moved = ethanol.copy()
    moved.positions = ethanol.positions @ rotation.numpy().T + 1.5
    e0, v0, f0 = run(ethanol, forces)
    e1, v1, f1 = run(moved, forces @ rotation.T)
    assert float((e0 - e1).abs().detach()) < 1e-9
    assert torch.allclose(v1, v0 @ rotation.T, atol=1e-9) and torch.allclose(f1, f0 @ rotation.T, atol=1e-9)
    e2, _, _ = run(ethanol, -forces)  # the encoding really depends on the forces
    assert float((e0 - e2).abs().detach()) > 1e-4
    # degree-2 block is Y_2 of the direction times the magnitude
    features = encoding(forces, mask)
    expected = o3.spherical_harmonics(2, forces, normalize=True, normalization="component") * forces.norm(dim=-1, keepdim=True)
    assert torch.allclose(features[4:9, 0, 0] / encoding.weight[2, 0], expected[0])
    assert torch.all(features[:, ~mask] == 0)


def test_train_command_fine_tunes_with_each_objective(tmp_path, frames_file, pretrained, capsys):  # noqa: F811
    config, _ = pretrained
    init = str(config.run_dir / "model.safetensors")
    common = [f"output_dir={tmp_path}", f"data.train={frames_file}", "data.protocol=null", "data.n_valid=4",
              "optim.batch_size=4", "optim.epochs=2", "device=cpu", "data.test=null", "data.reference_energies=null"]
    for noise in ("none", "fixed", "anisotropic"):
        main(["--debug", "train", "--config", "rmd17-50", "--quiet", f"name={noise}", f"init={init}", f"denoise.kind={noise}", *common])
        _, metadata = load_checkpoint(tmp_path / noise / "model.safetensors")
        assert metadata["results"]["denoise"] == noise and metadata["results"]["init"] == init
    assert "noise_scale_A" in load_checkpoint(tmp_path / "anisotropic" / "model.safetensors")[1]["results"]
    # A generator trained with the model stays in its checkpoint (moved from the start's), so the
    # next fine-tune from it denoises with that generator; a frozen one is not copied.
    main(["--debug", "train", "--config", "rmd17-50", "--quiet", "name=joint", f"init={init}", "denoise.kind=anisotropic",
          "denoise.train_generator=true", *common])
    trained, noise = load_generator(tmp_path / "joint" / "model.safetensors")
    start, _ = load_generator(init)
    moved = max(float((a - b).abs().max()) for a, b in zip(trained.state_dict().values(), start.state_dict().values()))
    assert noise["kind"] == "anisotropic" and moved > 1e-6
    with pytest.raises(CheckpointError, match="holds no noise generator"):
        load_generator(tmp_path / "anisotropic" / "model.safetensors")
    main(["--debug", "train", "--config", "rmd17-50", "--quiet", "name=next", f"init={tmp_path / 'joint' / 'model.safetensors'}",
          "denoise.kind=anisotropic", *common])
    assert load_checkpoint(tmp_path / "next" / "model.safetensors")[1]["results"]["denoise"] == "anisotropic"
    with pytest.raises(ValueError, match="pretrained with 'anisotropic' noise, not 'isotropic'"):
        main(["--debug", "train", "--config", "rmd17-50", "--quiet", "name=x", f"init={init}", "denoise.kind=isotropic", *common])
    with pytest.raises(ValueError, match="needs a pretrained generator"):
        main(["--debug", "train", "--config", "rmd17-50", "--quiet", "name=y", "denoise.kind=anisotropic", *common])


def test_denoising_recipe_runs_from_the_shipped_pretraining(tmp_path):
    import json
    from pathlib import Path

    frames = Path(__file__).parent / "data" / "rmd17_ethanol_test_01_first32.npz"
    main(["--debug", "train", "--config", "rmd17-50", "--quiet", "init=qm9-anids", "denoise.kind=anisotropic", f"output_dir={tmp_path}",
          "name=recipe", "seed=1",
                 f"data.train={frames}", f"data.test={frames}", "data.reference_energies=pbe-def2svp",
                 "data.protocol=null", "data.n_valid=8", "optim.max_steps=4", "device=cpu"])  # 32 frames: too few for rmd17-50
    summary = json.loads((tmp_path / "recipe" / "summary.json").read_text())
    assert summary["init"] == "qm9-anids" and summary["denoise"] == "anisotropic" and summary["steps"] == 4
    assert summary["noise_scale_A"] == pytest.approx(0.05, rel=1e-6)
    # the test figures are those of the written model, evaluated independently here
    from anids_md.data import read_rmd17
    from anids_md.evaluation import evaluate

    model, _ = load_checkpoint(tmp_path / "recipe" / "model.safetensors")
    assert summary["test"]["forces_mae_meV_per_A"] == pytest.approx(evaluate(model, read_rmd17(frames))["forces_mae_meV_per_A"], rel=1e-5)


def test_a_jointly_trained_generator_adds_kl_and_hinge_and_gets_gradients(tmp_path, frames_file, pretrained):  # noqa: F811
    """AniDS eq. 27: with denoise.train_generator the loss gains λ_KL·KL + λ_γ·L_γ of the displaced
    atoms (closed forms here, from the generator's own covariances), and only then does the
    generator receive gradients."""
    common = ["denoise.kind=anisotropic", "denoise.mode=dens", "denoise.probability=1", "denoise.atom_ratio=1", "denoise.weight=0",
              "optim.epochs=1"]
    frozen = finetune(tmp_path / "frozen", frames_file, pretrained, *common)
    assert not any("generator" in n for n, _ in frozen.trainable.named_parameters())
    joint = finetune(tmp_path / "joint", frames_file, pretrained, *common, "denoise.train_generator=true")
    assert any(n.startswith("denoising.generator.") for n, _ in joint.trainable.named_parameters())
    batch = collate(joint.train_graphs[:3]).to(dtype=torch.float32)
    d = joint.denoising

    def loss(kl_weight, gamma_weight):
        d.kl_weight, d.gamma_weight = kl_weight, gamma_weight
        return d.loss(joint.model, batch, [0, 1, 2], 0.0, 1.0, 10.0, np.random.default_rng(0), torch.Generator().manual_seed(3))["loss"]

    base, weighted = loss(0.0, 0.0), loss(2.0, 3.0)
    cov = d.learned(batch)
    matrices = cov.matrices.double() * d.calibration
    prior = 0.05**2  # denoise.mean_scale_A
    kl = 0.5 * (torch.diagonal(matrices, dim1=-2, dim2=-1).sum(-1) / prior - 3 + 3 * np.log(prior) - torch.logdet(matrices))
    hinge = torch.clamp(0.3 - cov.gamma_sum.double(), min=0) ** 2
    assert float(weighted - base) == pytest.approx(float(2 * kl.mean() + 3 * hinge.mean()), rel=1e-4)
    assert float(kl.mean()) > 1e-3  # the terms are not trivially zero
    weighted.backward()
    gradients = [p.grad for n, p in joint.trainable.named_parameters() if n.startswith("denoising.generator.")]
    assert any(g is not None and float(g.abs().max()) > 0 for g in gradients)
