"""The denoising head: one more interaction block on the trunk's features and a degree-1
readout, predicting each atom's displacement (pretraining and auxiliary denoising). Only
training uses it; force-field checkpoints do not carry it, so the calculator never runs it."""

from __future__ import annotations

import torch
from torch import nn

from .interaction import InteractionBlock
from .model import Encoding, ModelConfig


class DenoisingHead(nn.Module):
    """A block of its own, so that denoising capacity is not all taken from the trunk the
    energy head reads (DeNS and AniDS also predict the noise with a separate block)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.inv_avg_neighbors = 1.0 / c.avg_num_neighbors
        self.block = InteractionBlock(c.channels, c.lmax, c.radial_hidden, len(c.elements))
        self.readout = nn.Linear(c.channels, 1, bias=False)  # on degree-1 features: a vector per atom

    def forward(self, encoding: Encoding, edge_index: torch.Tensor) -> torch.Tensor:
        """Per-atom vectors (N, 3) from the trunk's encoding of a graph (features (D, N, C))."""
        edges = encoding.edges
        x = self.block(encoding.features, encoding.species, edge_index, edges.sh, edges.radial, edges.envelope,
                       self.inv_avg_neighbors)
        return self.readout(x[1:4]).squeeze(-1).T
