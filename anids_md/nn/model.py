"""The force field: element embedding, equivariant interaction blocks and an energy head
(forces by autograd). A denoising head (nn/denoising_head.py) can read the same features."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from typing import NamedTuple

import torch
from e3nn import o3
from torch import nn

from ..data.graph import AtomicGraph
from .interaction import InteractionBlock, fit_components
from .radial import BesselBasis, PolynomialCutoff


@dataclass
class ModelConfig:
    """Architecture hyperparameters; stored in every checkpoint."""

    elements: list[int] = field(default_factory=lambda: [1, 6, 7, 8])  # atomic numbers known
    cutoff: float = 5.0  # Å
    channels: int = 32
    lmax: int = 2  # highest degree of the features and spherical harmonics
    layers: int = 2
    correlation: int = 2  # body order of the per-atom product of densities (2 or 3)
    n_radial: int = 8
    radial_hidden: int = 32
    readout_hidden: int = 32
    avg_num_neighbors: float = 10.0  # divides summed messages
    # Options after the first release; their defaults are what checkpoints without them were.
    bond_projections: bool = False  # scalar messages x_j^l · Y_l(r̂_ij) (nn/interaction.py)
    radial_layers: int = 1  # hidden layers of the radial MLP shared by the blocks
    readout_every_layer: bool = False  # energy from every block's scalars (as MACE), not the last only
    # highest degree of the features passed between blocks (MACE small keeps 1); None: lmax. The
    # spherical harmonics and the density's products still go up to lmax.
    feature_lmax: int | None = None
    density_mixing: bool = False  # mix the density's channels per degree before its product (nn/interaction.py)
    # Normalisation: E = sum_i [force_scale * e_i + energy_shift + E0(Z_i)]  (eV)
    force_scale: float = 1.0  # eV/Å
    energy_shift: float = 0.0  # eV per atom
    reference_energies: dict[int, float] = field(default_factory=dict)  # eV per element

    # Far beyond any useful model; a checkpoint asking for more is refused before anything is
    # built (a 175 kB file must not make the loader allocate gigabytes or search a 1e9 Å cutoff).
    LIMITS = {"channels": (1, 512), "lmax": (1, 4), "layers": (1, 8), "correlation": (2, 3), "n_radial": (1, 64),
              "radial_hidden": (1, 1024), "readout_hidden": (1, 1024), "radial_layers": (1, 8)}
    MAX_CUTOFF_A = 12.0

    def __post_init__(self):
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise ValueError(f"model.{name} must be a whole number in [{low}, {high}], got {value!r}")
        if not (isinstance(self.cutoff, (int, float)) and 0 < self.cutoff <= self.MAX_CUTOFF_A):
            raise ValueError(f"model.cutoff must be in (0, {self.MAX_CUTOFF_A}] Å, got {self.cutoff!r}")
        if self.feature_lmax is not None and not (isinstance(self.feature_lmax, int) and 1 <= self.feature_lmax <= self.lmax):
            raise ValueError(f"model.feature_lmax must be between 1 and lmax ({self.lmax}), or None; got {self.feature_lmax!r}")
        if not (len(set(self.elements)) == len(self.elements) and all(isinstance(z, int) and 1 <= z <= 118 for z in self.elements)):
            raise ValueError(f"model.elements must be distinct atomic numbers in [1, 118], got {self.elements!r}")
        for name in ("avg_num_neighbors", "force_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"model.{name} must be a positive finite number, got {value!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reference_energies"] = {str(z): e for z, e in self.reference_energies.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        d = dict(d)
        d["reference_energies"] = {int(z): float(e) for z, e in d.get("reference_energies", {}).items()}
        return cls(**d)


class EdgeEmbedding(NamedTuple):
    """What every block reads of the edges: spherical harmonics (D, E, 1), radial features
    (E, radial_hidden) and the smooth cutoff envelope (E,)."""

    sh: torch.Tensor
    radial: torch.Tensor
    envelope: torch.Tensor


class Encoder(nn.Module):
    """Element embedding and equivariant interaction blocks: atoms in, per-atom features out.
    The force field and the noise generator are both built on it."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        if c.lmax < 1:
            raise ValueError(f"lmax must be at least 1 (the vector head needs degree-1 features), got {c.lmax}")
        index = torch.full((119,), -1, dtype=torch.long)
        index[torch.tensor(c.elements)] = torch.arange(len(c.elements))
        self.register_buffer("element_index", index, persistent=False)
        self.embedding = nn.Embedding(len(c.elements), c.channels)
        self.radial_basis = BesselBasis(c.cutoff, c.n_radial)
        self.envelope = PolynomialCutoff(c.cutoff)
        if c.radial_layers < 1:
            raise ValueError(f"radial_layers must be at least 1, got {c.radial_layers}")
        widths = [c.n_radial] + [c.radial_hidden] * c.radial_layers
        # shared by the blocks, each of which maps its output linearly to its own radial weights
        self.radial_mlp = nn.Sequential(*(m for a, b in pairwise(widths) for m in (nn.Linear(a, b), nn.SiLU())))
        self.blocks = nn.ModuleList(
            InteractionBlock(c.channels, c.lmax, c.radial_hidden, len(c.elements), c.correlation, c.bond_projections, c.feature_lmax,
                             c.density_mixing)
            for _ in range(c.layers)
        )

    def element_indices(self, numbers: torch.Tensor) -> torch.Tensor:
        idx = self.element_index[numbers]
        if bool((idx < 0).any()):
            unknown = sorted({int(z) for z in numbers[idx < 0]})
            raise ValueError(f"the model does not know elements with atomic numbers {unknown}; it knows {self.config.elements}")
        return idx

    def edge_embedding(self, graph: AtomicGraph) -> EdgeEmbedding:
        i, j = graph.edge_index
        vectors = graph.positions[j] - graph.positions[i] + graph.shifts
        r = vectors.norm(dim=-1)
        sh = o3.spherical_harmonics(list(range(self.config.lmax + 1)), vectors, normalize=True, normalization="component")
        return EdgeEmbedding(sh.T.unsqueeze(-1), self.radial_mlp(self.radial_basis(r)), self.envelope(r))

    def features(self, graph: AtomicGraph, species: torch.Tensor, edges: EdgeEmbedding,
                 node_features: torch.Tensor | None = None, scalars: list | None = None) -> torch.Tensor:
        """Final per-atom features (D, N, C), D = (feature_lmax+1)^2. `node_features` (D', N, C), if given,
        is added to the initial embedding (force encoding in denoising fine-tuning). `scalars`,
        if given, receives every block's scalar features (N, C)."""
        x = self.embedding(species).unsqueeze(0)  # (1, N, C): scalars only
        if node_features is not None:
            x = fit_components(x, len(node_features)) + node_features
        inv_avg = 1.0 / self.config.avg_num_neighbors
        for block in self.blocks:
            x = block(x, species, graph.edge_index, edges.sh, edges.radial, edges.envelope, inv_avg)
            if scalars is not None:
                scalars.append(x[0])
        return x


class ForceField(Encoder):
    """E(3)-equivariant message-passing potential. Energies in eV, forces in eV/Å."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.register_buffer("reference_energies", self._reference_energy_table(), persistent=False)
        self._compiled = None  # see compile_network
        self.energy_head = nn.Sequential(nn.Linear(c.channels, c.readout_hidden), nn.SiLU(), nn.Linear(c.readout_hidden, 1))
        # with readout_every_layer: a linear energy of the scalars of each block before the last
        self.layer_readouts = nn.ModuleList(nn.Linear(c.channels, 1, bias=False) for _ in range(c.layers - 1)) \
            if c.readout_every_layer else None

    def with_density_mixing(self) -> ForceField:
        """A copy of this model with `density_mixing` added as the identity: it predicts the same
        energies and forces, and further training can use the new weights (growing a trained model
        instead of training one with mixing from scratch)."""
        if self.config.density_mixing:
            raise ValueError("the model already mixes its density's channels (density_mixing is true)")
        grown = ForceField(replace(self.config, density_mixing=True))
        missing, unexpected = grown.load_state_dict(self.state_dict(), strict=False)
        assert not unexpected and all(".density_mix." in key for key in missing), (missing, unexpected)
        with torch.no_grad():
            for block in grown.blocks:
                block.density_mix.weight.copy_(torch.eye(block.channels).expand_as(block.density_mix.weight))
        return grown.to(next(self.parameters()))

    def _reference_energy_table(self) -> torch.Tensor:
        c = self.config
        return torch.tensor([c.reference_energies.get(z, 0.0) for z in c.elements], dtype=torch.float64)

    def _apply(self, fn, recurse=True):
        # Keep reference energies in float64 whatever dtype the network is cast to.
        super()._apply(fn, recurse)
        self.reference_energies = self._reference_energy_table().to(self.element_index.device)
        return self

    def atomic_energies(self, species: torch.Tensor, x: torch.Tensor, earlier: list | None = None) -> torch.Tensor:
        """Per-atom energies (eV, float64) from final features (and, with readout_every_layer,
        the `earlier` blocks' scalars). The network's output is small and keeps the model's
        dtype; adding the large reference energies in float64 keeps totals of -10^4 eV exact to
        well below a meV even for float32 models."""
        e = self.energy_head(x[0]).squeeze(-1)  # x[0]: scalars
        if self.layer_readouts is not None:
            for readout, s in zip(self.layer_readouts, earlier):
                e = e + readout(s).squeeze(-1)
        c = self.config
        return (c.force_scale * e + c.energy_shift).double() + self.reference_energies[species]

    def network(self, graph: AtomicGraph, species: torch.Tensor, node_features=None):
        """Per-atom energies (eV, float64), final features and edge embedding: everything
        between coordinates and energies, the part that `compile_network` hands to torch.compile."""
        edges = self.edge_embedding(graph)
        scalars = [] if self.layer_readouts is not None else None
        x = self.features(graph, species, edges, node_features, scalars)
        return self.atomic_energies(species, x, scalars), x, edges

    def compile_network(self, backend: str = "inductor") -> None:
        """Run `network` through torch.compile from now on (dynamic shapes, so molecules of any
        size and changing neighbour lists reuse one compilation; the first call compiles, and
        torch keeps the result in its on-disk cache for later processes). Forces stay −∂E/∂x
        by autograd through the compiled graph."""
        compiled = torch.compile(self.network, backend=backend, dynamic=True)

        def network(*args):
            # Python floats (the normalisation constants) traced as dynamic inputs made torch
            # 2.13's inductor miscompile this network (4.3 eV off on aspirin); as constants it is exact.
            with torch._dynamo.config.patch(specialize_float=True):
                return compiled(*args)

        self._compiled = network

    def forward(self, graph: AtomicGraph, compute_forces: bool = True, training: bool = False, node_features=None,
                denoiser: nn.Module | None = None) -> dict:
        """Returns `energy` (n_structures,) and `energies` (N,) in eV, both float64; `forces`
        (N, 3) in eV/Å; with a `denoiser` (a DenoisingHead), its per-atom `vectors` (N, 3).
        `training` keeps the graph of the forces for a second derivative (force loss)."""
        species = self.element_indices(graph.numbers)
        positions = graph.positions
        if compute_forces and not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
            graph = replace(graph, positions=positions)
        energies, x, edges = (self._compiled or self.network)(graph, species, node_features)
        energy = energies.new_zeros(graph.n_structures).index_add(0, graph.batch, energies)
        out = {"energy": energy, "energies": energies}
        if denoiser is not None:
            out["vectors"] = denoiser(x, species, graph.edge_index, edges, 1.0 / self.config.avg_num_neighbors)
        if compute_forces:
            (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=training)
            out["forces"] = -gradient
        return out
