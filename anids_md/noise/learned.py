"""The one entry point for a pretrained noise generator's covariances: training (auxiliary
denoising), `fit`'s anids sampler and the `noise` command all read Σ_i through `LearnedNoise`."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import AtomicGraph, rebuild_edges
from ..nn.generator import NoiseGenerator
from .sampler import Covariances, NoiseConfig, structure_covariances


class LearnedNoise:
    """A frozen generator with the noise settings it was pretrained with (kind, σ_p, ...)."""

    def __init__(self, generator: NoiseGenerator, settings: dict):
        self.generator = generator.eval()
        self.config = NoiseConfig(**settings)
        if not self.config.learned:
            raise ValueError(f"{self.config.kind!r} noise has no generator to learn from")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "LearnedNoise":
        from ..checkpoint import load_generator

        return cls(*load_generator(path, device))

    @property
    def kind(self) -> str:
        return self.config.kind

    def __call__(self, graph: AtomicGraph) -> Covariances:
        """Σ_i (Å², the generator's dtype) and, for anisotropic models, Σ_j γ_ij of the clean
        structure(s) of `graph`, its edges rebuilt at the generator's cutoff; differentiable, for
        training the generator jointly."""
        parameter = next(self.generator.parameters())
        graph = rebuild_edges(graph.to(parameter.device, parameter.dtype), self.generator.config.cutoff)
        return structure_covariances(self.config, graph, self.generator)

    @torch.no_grad()
    def covariances(self, graphs: list[AtomicGraph], mean_scale_A: float | None = None) -> list[torch.Tensor]:
        """Σ_i (N, 3, 3) in Å², float64, of each clean structure. With `mean_scale_A`, all are
        rescaled by one factor (`calibration`) so that the mean over their atoms of √(tr Σ_i / 3)
        is that scale: each atom keeps its learned shape and its scale relative to the others."""
        matrices = [self(graph).matrices.double() for graph in graphs]
        if mean_scale_A is not None:
            factor = calibration(matrices, mean_scale_A)
            matrices = [c * factor for c in matrices]
        return matrices


def calibration(matrices: list[torch.Tensor], mean_scale_A: float) -> float:
    """The factor that moves the mean over all atoms of √(tr Σ_i / 3) to `mean_scale_A` (Å)."""
    traces = torch.cat([torch.diagonal(c, dim1=-2, dim2=-1).sum(-1) for c in matrices])
    return (mean_scale_A / float(torch.sqrt(traces / 3.0).mean())) ** 2
