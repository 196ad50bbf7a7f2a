"""The force field: an encoder (element embedding and equivariant interaction blocks) and an
energy readout, composed; forces by autograd. It knows nothing of training: heads that read the
same features (the denoising head, nn/denoising_head.py) are applied by the training objectives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import torch
from e3nn import o3
from torch import nn

from ..data.graph import AtomicGraph
from .interaction import InteractionBlock, pad_components
from .radial import BesselBasis, PolynomialCutoff


@dataclass
class ModelConfig:
    """Architecture hyperparameters and the normalisation derived from the training data; stored
    in every checkpoint."""

    elements: list[int] = field(default_factory=lambda: [1, 6, 7, 8])  # atomic numbers known
    cutoff: float = 5.0  # Å
    channels: int = 32
    lmax: int = 2  # highest degree of the features and spherical harmonics
    layers: int = 2
    n_radial: int = 8
    radial_hidden: int = 32
    readout_hidden: int = 32
    density_mixing: bool = False  # mix the density's channels per degree before its product (nn/interaction.py)
    # Normalisation, derived from the training data: E = sum_i [force_scale * e_i + energy_shift + E0(Z_i)]  (eV)
    avg_num_neighbors: float = 10.0  # divides summed messages
    force_scale: float = 1.0  # eV/Å
    energy_shift: float = 0.0  # eV per atom
    reference_energies: dict[int, float] = field(default_factory=dict)  # eV per element

    # Far beyond any useful model; a checkpoint asking for more is refused before anything is
    # built (a 175 kB file must not make the loader allocate gigabytes or search a 1e9 Å cutoff).
    LIMITS = {"channels": (1, 512), "lmax": (1, 4), "layers": (1, 8), "n_radial": (1, 64), "radial_hidden": (1, 1024),
              "readout_hidden": (1, 1024)}
    MAX_CUTOFF_A = 12.0

    def __post_init__(self):
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise ValueError(f"model.{name} must be a whole number in [{low}, {high}], got {value!r}")
        if not (isinstance(self.cutoff, (int, float)) and 0 < self.cutoff <= self.MAX_CUTOFF_A):
            raise ValueError(f"model.cutoff must be in (0, {self.MAX_CUTOFF_A}] Å, got {self.cutoff!r}")
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


class Encoding(NamedTuple):
    """An encoded graph: element indices (N,), the edges' embedding, final features (D, N, C)."""

    species: torch.Tensor
    edges: EdgeEmbedding
    features: torch.Tensor


class Encoder(nn.Module):
    """Element embedding and equivariant interaction blocks: atoms in, per-atom features out.
    The force field and the noise generator are both built on it."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        index = torch.full((119,), -1, dtype=torch.long)
        index[torch.tensor(c.elements)] = torch.arange(len(c.elements))
        self.register_buffer("element_index", index, persistent=False)
        self.embedding = nn.Embedding(len(c.elements), c.channels)
        self.radial_basis = BesselBasis(c.cutoff, c.n_radial)
        self.envelope = PolynomialCutoff(c.cutoff)
        # shared by the blocks, each of which maps its output linearly to its own radial weights
        self.radial_mlp = nn.Sequential(nn.Linear(c.n_radial, c.radial_hidden), nn.SiLU())
        self.blocks = nn.ModuleList(
            InteractionBlock(c.channels, c.lmax, c.radial_hidden, len(c.elements), c.density_mixing) for _ in range(c.layers)
        )

    def element_indices(self, numbers: torch.Tensor) -> torch.Tensor:
        """Indices into the known elements. Under torch.compile the check is left to the caller
        (`check_elements` before the compiled call): a data-dependent check would split the graph."""
        return self.element_index[numbers] if torch.compiler.is_compiling() else self.check_elements(numbers)

    def check_elements(self, numbers: torch.Tensor) -> torch.Tensor:
        """Indices into the known elements; a ValueError naming the atomic numbers the model does not know."""
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

    def forward(self, graph: AtomicGraph, initial: torch.Tensor | None = None) -> Encoding:
        """Per-atom features (D, N, C), D = (lmax+1)^2. `initial` (D', N, C), if given, is added to
        the embedding that starts the blocks (e.g. an encoding of known forces)."""
        species = self.element_indices(graph.numbers)
        edges = self.edge_embedding(graph)
        x = self.embedding(species).unsqueeze(0)  # (1, N, C): scalars only, the first block makes the rest
        if initial is not None:
            x = pad_components(x, len(initial)) + initial
        inv_avg = 1.0 / self.config.avg_num_neighbors
        for block in self.blocks:
            x = block(x, species, graph.edge_index, edges.sh, edges.radial, edges.envelope, inv_avg)
        return Encoding(species, edges, x)


class EnergyReadout(nn.Module):
    """Per-atom energies (eV, float64) from the final scalars: an MLP scaled by the training
    force RMS, shifted by the mean per-atom energy and the element's reference energy."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.mlp = nn.Sequential(nn.Linear(config.channels, config.readout_hidden), nn.SiLU(), nn.Linear(config.readout_hidden, 1))
        self.register_buffer("reference_energies", self._reference_energy_table(), persistent=False)

    def _reference_energy_table(self) -> torch.Tensor:
        c = self.config
        return torch.tensor([c.reference_energies.get(z, 0.0) for z in c.elements], dtype=torch.float64)

    def _apply(self, fn, recurse=True):
        # Keep reference energies in float64 whatever dtype the network is cast to.
        super()._apply(fn, recurse)
        self.reference_energies = self._reference_energy_table().to(self.mlp[0].weight.device)
        return self

    def forward(self, species: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The network's output is small and keeps the model's dtype; adding the large reference
        energies in float64 keeps totals of -10^4 eV exact to well below a meV in float32."""
        e = self.mlp(features[0]).squeeze(-1)  # features[0]: scalars
        c = self.config
        return (c.force_scale * e + c.energy_shift).double() + self.reference_energies[species]


class ForceField(nn.Module):
    """E(3)-equivariant message-passing potential. Energies in eV, forces in eV/Å."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.readout = EnergyReadout(config)
        self._compiled = None  # see compile_network

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
            for block in grown.encoder.blocks:
                block.density_mix.weight.copy_(torch.eye(block.channels).expand_as(block.density_mix.weight))
        return grown.to(next(self.parameters()))

    def network(self, graph: AtomicGraph, initial: torch.Tensor | None = None) -> tuple[torch.Tensor, Encoding]:
        """Per-atom energies (eV, float64) and the encoding: everything between coordinates and
        energies, the part that `compile_network` hands to torch.compile."""
        encoding = self.encoder(graph, initial)
        return self.readout(encoding.species, encoding.features), encoding

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

    def predict(self, graph: AtomicGraph, compute_forces: bool = True, create_graph: bool = False,
                initial: torch.Tensor | None = None) -> dict:
        """`forward`, with `initial` features added to the embedding (see `Encoder.forward`), and
        the `encoding` returned for heads that read the same features."""
        positions = graph.positions
        if compute_forces and not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
            graph = replace(graph, positions=positions)
        if self._compiled is not None:
            self.encoder.check_elements(graph.numbers)
        energies, encoding = (self._compiled or self.network)(graph, initial)
        energy = energies.new_zeros(graph.n_structures).index_add(0, graph.batch, energies)
        out = {"energy": energy, "energies": energies, "encoding": encoding}
        if compute_forces:
            (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
            out["forces"] = -gradient
        return out

    def forward(self, graph: AtomicGraph, compute_forces: bool = True, create_graph: bool = False) -> dict:
        """`energy` (n_structures,) and `energies` (N,) in eV, both float64; `forces` (N, 3) in
        eV/Å. `create_graph` keeps the graph of the forces for a second derivative (a force loss)."""
        return self.predict(graph, compute_forces, create_graph)
