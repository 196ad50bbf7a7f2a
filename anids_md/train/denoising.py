"""Energy + force training with auxiliary denoising (METHOD.md §3.2): in a share p of the
structures, a share r of the atoms is displaced by the frozen noise model; those atoms get force
encoding and a denoising target, the energy target stays the original structure's, and forces are
supervised on the other atoms. λ_denoise decays linearly to 0."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_generator
from ..data import AtomicGraph, rebuild_edges
from ..nn import ForceField
from ..noise import Covariances, ForceEncoding, NoiseConfig, corrupt, masked_mean, structure_covariances
from .config import TrainConfig


class AuxiliaryDenoising(nn.Module):
    """The trained force-encoding weights, and each training structure's noise covariances,
    computed once: the generator is frozen and reads only the clean structure."""

    def __init__(self, config: TrainConfig, model: ForceField, train_graphs: list[AtomicGraph]):
        super().__init__()
        d = config.denoise
        self.probability, self.atom_ratio, self.weight = d.probability, d.atom_ratio, d.weight
        self.label_corrupted = d.label_corrupted
        self.cutoff = model.config.cutoff
        generator = None
        sigma_prior = NoiseConfig.sigma_prior
        if config.noise != "fixed":
            source = d.generator or config.init
            if source is None:
                raise ValueError(f"noise={config.noise} needs a pretrained generator: set init= or denoise.generator= to a pretrained checkpoint")
            generator, settings = load_generator(source, device=train_graphs[0].positions.device)
            if settings.get("kind") != config.noise:
                raise ValueError(f"the generator in {source} was pretrained with {settings.get('kind')!r} noise, not {config.noise!r}")
            sigma_prior = settings["sigma_prior"]
        self.noise = NoiseConfig(kind=config.noise, sigma=d.sigma, sigma_prior=sigma_prior)
        self.covariances = [self._covariance(g, generator) for g in train_graphs]
        self.force_encoding = ForceEncoding(model.config.channels, model.config.lmax)

    @torch.no_grad()
    def _covariance(self, graph: AtomicGraph, generator) -> torch.Tensor:
        if generator is not None:
            graph = rebuild_edges(graph.to(dtype=torch.float32), generator.config.cutoff)
        return structure_covariances(self.noise, graph, generator).matrices.double()

    def mean_noise_scale(self) -> float:
        """Mean over training atoms of √(tr Σ_i / 3) in Å: the noise scale actually used."""
        traces = torch.cat([torch.diagonal(c, dim1=-2, dim2=-1).sum(-1) for c in self.covariances])
        return float(torch.sqrt(traces / 3.0).mean())

    def loss(
        self, model: ForceField, batch: AtomicGraph, indices, progress: float, energy_weight: float,
        forces_weight: float, rng: np.random.Generator, noise_rng: torch.Generator | None = None,
    ) -> dict:
        """Loss of a batch made of training structures `indices`; `progress` in [0, 1] is the
        share of training done (λ_denoise = weight·(1 − progress))."""
        chosen = rng.random(batch.n_structures) < self.probability
        picked = chosen[batch.batch.cpu().numpy()] & (rng.random(batch.n_atoms) < self.atom_ratio)
        mask = torch.from_numpy(picked).to(batch.positions.device)
        atoms = torch.nonzero(mask).squeeze(-1)
        scale = model.config.force_scale
        graph, node_features, target = batch, None, None
        if len(atoms):
            cov = torch.cat([self.covariances[i] for i in indices])
            corruption = corrupt(self.noise, batch, Covariances(cov, None), atoms, self.cutoff, noise_rng)
            graph, target = corruption.graph, corruption.target
            node_features = self.force_encoding(batch.forces / scale, mask)
        out = model(graph, compute_forces=True, training=True, node_features=node_features)
        labelled_structures = torch.ones(batch.n_structures, dtype=torch.bool, device=mask.device)
        if not self.label_corrupted:
            labelled_structures[batch.batch[atoms]] = False
        labelled_atoms = ~mask & labelled_structures[batch.batch]
        energy_error = ((out["energy"] - batch.energy) / scale).to(out["forces"].dtype)[labelled_structures]
        energy_loss = masked_mean(energy_error.pow(2))
        forces_loss = masked_mean(((out["forces"] - batch.forces)[labelled_atoms] / scale).pow(2)) / 3.0
        denoise = masked_mean((out["vectors"][atoms] - target).pow(2)) if target is not None else energy_loss.new_zeros(())
        weight = self.weight * max(0.0, 1.0 - progress)
        total = energy_weight * energy_loss + forces_weight * forces_loss + weight * denoise
        return {"loss": total, "energy": energy_loss.detach(), "forces": forces_loss.detach(), "denoise": denoise.detach()}
