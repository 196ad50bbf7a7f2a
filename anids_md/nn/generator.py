"""The noise generator (METHOD.md §2): a small equivariant encoder of the clean structure with
invariant heads for the parameters of each atom's noise covariance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..data.graph import AtomicGraph
from .model import Encoder, ModelConfig


@dataclass
class GeneratorConfig:
    """Architecture of the generator's encoder and heads; stored in checkpoints that hold one."""

    elements: list[int] = field(default_factory=lambda: [1, 6, 7, 8, 9])
    cutoff: float = 5.0  # Å; all atoms within it are neighbours (not only bonded ones)
    channels: int = 16
    lmax: int = 1
    layers: int = 2
    n_radial: int = 8
    hidden: int = 32
    avg_num_neighbors: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown generator settings {sorted(unknown)}")
        return cls(**d)

    def encoder_config(self) -> ModelConfig:
        return ModelConfig(
            elements=list(self.elements), cutoff=self.cutoff, channels=self.channels, lmax=self.lmax,
            layers=self.layers, n_radial=self.n_radial, radial_hidden=self.hidden,
            avg_num_neighbors=self.avg_num_neighbors,
        )


def _mlp(n_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, 1))


class NoiseGenerator(nn.Module):
    """Invariant per-atom log a_i and log c_i and per-edge logits b_ij of the clean structure
    (AniDS eq. 14): a_i = exp(ω0(h_i)), c_i = exp(ω2(h_i)), b_ij = ω1([h_i; h_j; rbf(r_ij)])."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.encoder_config())
        c = config.channels
        self.log_scale_head = _mlp(c, config.hidden)  # ω0: log a_i, relative to ln σ_p²
        self.log_sink_head = _mlp(c, config.hidden)  # ω2: log c_i
        self.edge_head = _mlp(2 * c + config.n_radial, config.hidden)  # ω1: b_ij

    def forward(self, graph: AtomicGraph) -> dict:
        """`log_scale` (N,), `log_sink` (N,), `edge_logits` (E,) and the edges' unit vectors
        r̂_ij = (x_i - x_j)/|x_i - x_j| (E, 3), from centre i = edge_index[0]."""
        h = self.encoder(graph).features[0]  # invariant (degree-0) features (N, C)
        i, j = graph.edge_index
        vectors = graph.positions[i] - graph.positions[j] - graph.shifts
        r = vectors.norm(dim=-1, keepdim=True)
        rbf = self.encoder.radial_basis(r.squeeze(-1))
        return {
            "log_scale": self.log_scale_head(h).squeeze(-1),
            "log_sink": self.log_sink_head(h).squeeze(-1),
            "edge_logits": self.edge_head(torch.cat([h[i], h[j], rbf], dim=-1)).squeeze(-1),
            "unit_vectors": vectors / r,
        }
