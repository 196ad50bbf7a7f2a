"""Energy + force training with auxiliary denoising (docs/method.md): in a share p of the
structures, a share r of the atoms is displaced by the frozen noise model, scaled to a mean of
σ; those atoms get force encoding and a denoising target, predicted by a denoising head (an
interaction block of its own). `dens` mode fits everything in one pass (the energy target stays
the original structure's, forces are fitted on the other atoms); `separate` mode fits the clean
batch as plain training does and a noisy copy of the chosen structures only through the
denoising loss. λ_denoise decays linearly to 0."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_denoising_head
from ..data import AtomicGraph, collate
from ..nn import DenoisingHead, ForceField
from ..noise import Covariances, ForceEncoding, LearnedNoise, NoiseConfig, corrupt, structure_covariances
from ..noise.learned import calibration
from .config import TrainConfig
from .losses import energy_force_loss, energy_force_terms, vector_error

CALIBRATION_SAMPLE = 500  # structures whose covariances calibrate a jointly trained generator's scale


class AuxiliaryDenoising(nn.Module):
    """The trained force encoding and denoising head (from `init` when it holds one), and the
    noise: each training structure's covariances computed once from the frozen generator (it
    reads only the clean structure), or, with `denoise.train_generator`, recomputed every step
    by a generator trained with the model (AniDS eq. 27: KL and γ hinge added to the loss)."""

    def __init__(self, config: TrainConfig, model: ForceField, train_graphs: list[AtomicGraph]):
        super().__init__()
        d = config.denoise
        self.probability, self.atom_ratio, self.weight, self.mode = d.probability, d.atom_ratio, d.weight, d.mode
        self.form = config.optim.loss
        self.cutoff = model.config.cutoff
        self.graphs = train_graphs
        # The prior width only normalises the targets here (no KL in fine-tuning): with σ_p = the
        # mean scale they have unit scale, as with fixed noise.
        self.noise = NoiseConfig(kind=d.kind, sigma=d.mean_scale_A, sigma_prior=d.mean_scale_A)
        if d.kind == "fixed":
            self.covariances = [structure_covariances(self.noise, g, None).matrices.double() for g in train_graphs]
        else:  # the learned shape of each atom's noise, rescaled to the mean scale over the training atoms
            source = d.generator or config.init
            if source is None:
                raise ValueError(f"denoise.kind={d.kind} needs a pretrained generator: set init= or denoise.generator= to a pretrained checkpoint")
            learned = LearnedNoise.from_checkpoint(source, device=train_graphs[0].positions.device)
            if learned.kind != d.kind:
                raise ValueError(f"the generator in {source} was pretrained with {learned.kind!r} noise, not {d.kind!r}")
            # a trained generator recomputes them every step: only the calibration is needed, from a sample
            sample = train_graphs[:: max(1, len(train_graphs) // CALIBRATION_SAMPLE)] if d.train_generator else train_graphs
            raw = learned.covariances(sample)
            self.calibration = calibration(raw, d.mean_scale_A)
            self.covariances = [c * self.calibration for c in raw]
        self.learned = None
        if d.train_generator:  # the calibration of the start is kept, so the noise starts as the frozen one would
            self.learned, self.generator = learned, learned.generator  # registered: the optimiser updates it
            self.kl_weight, self.gamma_weight = d.kl_weight, d.gamma_weight
        self.force_encoding = ForceEncoding(model.config.channels, model.config.lmax)
        self.head = (load_denoising_head(config.init, model.config) if config.init else None) or DenoisingHead(model.config)

    def mean_noise_scale(self) -> float:
        """Mean over training atoms of √(tr Σ_i / 3) in Å: the noise scale actually used."""
        traces = torch.cat([torch.diagonal(c, dim1=-2, dim2=-1).sum(-1) for c in self.covariances])
        return float(torch.sqrt(traces / 3.0).mean())

    def loss(
        self, model: ForceField, batch: AtomicGraph, indices, progress: float, energy_weight: float,
        forces_weight: float, rng: np.random.Generator, noise_rng: torch.Generator | None = None,
    ) -> dict:
        """Loss of a batch made of training structures `indices`; `progress` in [0, 1] is the
        share of training done (λ_denoise = weight·(1 − progress); weight defaults to forces_weight / 32)."""
        chosen = rng.random(batch.n_structures) < self.probability
        in_chosen = chosen[batch.batch.cpu().numpy()]  # per atom: its structure was chosen
        picked = in_chosen & (rng.random(batch.n_atoms) < self.atom_ratio)
        weight = (forces_weight / 32 if self.weight is None else self.weight) * max(0.0, 1.0 - progress)
        if self.mode == "separate":
            losses = energy_force_loss(model, batch, energy_weight, forces_weight, self.form)
            denoise = losses["loss"].new_zeros(())
            if picked.any():  # the noisy pass needs only the chosen structures
                noisy = [i for i, c in zip(indices, chosen) if c]
                sub = collate([self.graphs[i] for i in noisy]).to(dtype=batch.positions.dtype)
                mask = torch.from_numpy(picked[in_chosen]).to(sub.positions.device)
                corruption, features, atoms = self._corrupt(model, sub, noisy, mask, noise_rng)
                graph = corruption.graph
                encoding = model.predict(graph, compute_forces=False, initial=features)["encoding"]
                denoise = vector_error(self.head(encoding, graph.edge_index)[atoms] - corruption.target, self.form, corruption.weights)
                losses["loss"] = losses["loss"] + self._generator_terms(corruption)
            return {**losses, "loss": losses["loss"] + weight * denoise, "denoise": denoise.detach()}
        mask = torch.from_numpy(picked).to(batch.positions.device)
        corruption, features, atoms = self._corrupt(model, batch, indices, mask, noise_rng)
        graph = batch if corruption is None else corruption.graph
        out = model.predict(graph, compute_forces=True, create_graph=True, initial=features)
        # forces only on the atoms left in place: a displaced atom's label is its denoising target
        losses = energy_force_terms(out, batch, model.config.force_scale, energy_weight, forces_weight, self.form, ~mask)
        if len(atoms):
            denoise = vector_error(self.head(out["encoding"], graph.edge_index)[atoms] - corruption.target, self.form, corruption.weights)
            losses["loss"] = losses["loss"] + self._generator_terms(corruption)
        else:
            denoise = losses["loss"].new_zeros(())
        return {**losses, "loss": losses["loss"] + weight * denoise, "denoise": denoise.detach()}

    def _generator_terms(self, corruption) -> torch.Tensor:
        """λ_KL·KL + λ_γ·L_γ of the displaced atoms when the generator is trained (eq. 27), else 0."""
        if self.learned is None:
            return corruption.kl.new_zeros(())
        return self.kl_weight * corruption.kl + self.gamma_weight * corruption.hinge

    def _corrupt(self, model: ForceField, batch: AtomicGraph, indices, mask: torch.Tensor, noise_rng):
        """The corruption of the batch (of training structures `indices`) with the atoms in `mask`
        displaced (None when there are none), the force encoding, and the displaced atoms' indices."""
        atoms = torch.nonzero(mask).squeeze(-1)
        if not len(atoms):
            return None, None, atoms
        if self.learned is None:
            cov = Covariances(torch.cat([self.covariances[i] for i in indices]), None)
        else:  # recomputed by the generator being trained, with gradients
            out = self.learned(batch)
            cov = Covariances(out.matrices.to(batch.positions.dtype) * self.calibration, out.gamma_sum)
        corruption = corrupt(self.noise, batch, cov, atoms, self.cutoff, noise_rng)
        features = self.force_encoding(batch.forces / model.config.force_scale, mask)
        return corruption, features, atoms
