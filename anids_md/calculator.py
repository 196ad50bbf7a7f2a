"""ASE calculator for anids-md force fields."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .checkpoint import check_elements, load_force_fields
from .data import check_structure, graph_from_atoms, neighbour_list
from .runtime import available_memory_bytes, check_compiler, resolve_device, resolve_dtype, set_threads

logger = logging.getLogger(__name__)

# Peak memory of one energy+forces call per neighbour pair (edge) within the cutoff + skin, for
# float32; float64 doubles it. Measured 7 500-9 400 bytes (float32; float64 15 200-17 500) on
# water at liquid density (53-62 neighbours within 5.5 Å, the densest molecular case) from 1 000
# to 10 000 atoms with rmd17-ethanol: benchmarks/results/memory.json.
BYTES_PER_EDGE_FLOAT32 = 9_500


@dataclass
class _Topology:
    """A neighbour-list build (cutoff + skin): the system it was built for, and its edges."""

    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    numbers: np.ndarray
    edge_index: np.ndarray
    shifts: np.ndarray

    def still_valid(self, atoms, skin: float) -> bool:
        return (
            np.array_equal(self.numbers, atoms.numbers)
            and np.array_equal(self.cell, atoms.cell.array)
            and np.array_equal(self.pbc, atoms.pbc)
            and np.max(np.linalg.norm(atoms.positions - self.positions, axis=1)) < skin / 2
        )


class AniDSCalculator(Calculator):
    """Energy (eV), forces (eV/Å) and per-atom energies of an anids-md checkpoint.

    checkpoint: a file path or the name of a shipped model (e.g. "rmd17-ethanol").
    device: "cpu", "cuda" or a torch device. dtype: "float32"/"float64" (default: float64 on CPU
    for smooth MD and tight optimisation, float32 on GPU). skin (Å): the neighbour list is built
    with cutoff + skin and reused until an atom has moved more than skin / 2. num_threads: sets
    torch's (process-wide) CPU threads when given; one is fastest for small molecules.
    compile: run the network through torch.compile (measured 1.6–2× faster per aspirin call,
    1.05–1.6× on 1000–3000-atom clusters; the first call compiles, tens of seconds, cached on disk
    by torch; on CPU it needs a C++ compiler). Results match the uncompiled model to rounding.

    Structures with elements outside the model's training data, atoms closer than 0.5 Å, empty
    structures, non-finite coordinates, and a charge (`atoms.info["charge"]`) or spin
    (`atoms.info["spin"]`, 2S, the number of unpaired electrons) other than the training data's
    (neutral, closed shell unless the checkpoint records others) raise a ValueError; so does a
    structure whose call would need more memory than is available. A model trained on one
    molecule warns once when given a structure of another formula. Periodic cells are supported (the
    neighbour list follows the cell), but the shipped models know only isolated molecules.
    One calculator serves one thread at a time: a second thread waits for the first's result.

    A committee file (`anids-md committee`, several models from different seeds) predicts with the
    members' mean and adds their spread: `energy_std` (eV, the standard deviation of the members'
    energies) and `forces_std` (eV/Å, per atom: the root-mean-square deviation of the members'
    force vectors from their mean), read with `calc.get_property("forces_std", atoms)`.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies"]
    uncertainty_properties = ["energy_std", "forces_std"]

    def __init__(self, checkpoint, device="cpu", dtype=None, skin: float = 0.5, num_threads: int | None = None,
                 compile: bool = False, **kwargs):
        if not (np.isfinite(skin) and skin >= 0):
            raise ValueError(f"skin must be 0 or more (Å, added to the cutoff for the neighbour list), got {skin}")
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        set_threads(num_threads)
        super().__init__(**kwargs)
        self.models, self.metadata = load_force_fields(checkpoint, device=device, dtype=dtype)
        if len(self.models) > 1:
            self.implemented_properties = [*self.implemented_properties, *self.uncertainty_properties]
        if compile:
            check_compiler(device)
            for model in self.models:
                model.compile_network()
        self.device, self.dtype, self.skin = device, dtype, float(skin)
        self.parameters.update(checkpoint=str(checkpoint), device=str(device), dtype=str(dtype).replace("torch.", ""),
                               skin=self.skin, num_threads=num_threads, compile=compile)
        self.cutoff = self.models[0].config.cutoff  # shared by a committee's members
        self._topology = None  # the last neighbour-list build, reused while atoms stay within the skin
        self._lock = threading.RLock()
        self.neighbour_list_builds = 0
        training = self.metadata.get("training", {})
        self.charge, self.spin = int(training.get("charge", 0)), int(training.get("spin", 0))
        self._formulae = set(training.get("formulae", []))
        self._warned_formula = False

    def get_property(self, name, atoms=None, allow_calculation=True):
        # ASE computes, then reads self.results: both under the lock, or another thread's
        # calculation could land in between.
        if name in self.uncertainty_properties and name not in self.implemented_properties:
            raise ValueError(f"{name} needs a committee of models (anids-md committee MODEL MODEL ... -o FILE); "
                             f"{self.parameters['checkpoint']} is a single model")
        with self._lock:
            target = self.atoms if atoms is None else atoms
            if target is not None:
                self._check_state(target)  # ASE's cache ignores atoms.info
            return super().get_property(name, atoms, allow_calculation)

    def reset(self):
        super().reset()
        self._topology = None

    def _current_topology(self, atoms) -> "_Topology":
        """The cached topology, rebuilt only when atoms moved more than skin / 2 or the cell,
        periodicity or elements changed."""
        cached = self._topology
        if cached is not None and cached.still_valid(atoms, self.skin):
            return cached
        check_structure(atoms)  # before the neighbour list meets NaN or an empty structure
        check_elements(self.metadata, atoms.numbers)
        self._check_formula(atoms)
        edge_index, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, self.cutoff + self.skin)
        self._check_memory(edge_index.shape[1], len(atoms))
        self._topology = _Topology(atoms.positions.copy(), atoms.cell.array.copy(), atoms.pbc.copy(), atoms.numbers.copy(),
                                   edge_index, shifts)
        self.neighbour_list_builds += 1
        return self._topology

    def _check_state(self, atoms) -> None:
        """The total charge and spin of `atoms.info` must be those the model was trained for."""
        for key, known in (("charge", self.charge), ("spin", self.spin)):
            value = atoms.info.get(key, known)
            if value != known:
                raise ValueError(f"atoms.info[{key!r}] is {value}, but the model knows {key} {known} only "
                                 "(its training data were neutral closed-shell molecules unless the checkpoint says otherwise)")

    def _check_formula(self, atoms) -> None:
        formula = atoms.get_chemical_formula()
        if len(self._formulae) == 1 and formula not in self._formulae and not self._warned_formula:
            self._warned_formula = True
            logger.warning("this model was trained on %s only; %s is another molecule, so its energies and forces are "
                           "extrapolations", next(iter(self._formulae)), formula)

    def _check_memory(self, n_edges: int, n_atoms: int) -> None:
        needed = n_edges * BYTES_PER_EDGE_FLOAT32 * (2 if self.dtype == torch.float64 else 1)
        available = available_memory_bytes(self.device)
        if available is not None and needed > available:
            raise MemoryError(f"{n_atoms} atoms with {n_edges} neighbour pairs need about {needed / 2**20:.0f} MiB for one call "
                              f"({self.device}), but {available / 2**20:.0f} MiB are available; split the system, "
                              "use float32 or a machine with more memory")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        with self._lock:  # self.atoms and self.results are shared state
            super().calculate(atoms, properties, system_changes)
            atoms = self.atoms
            topology = self._current_topology(atoms)
            graph = graph_from_atoms(atoms, self.cutoff, edges=(topology.edge_index, topology.shifts), dtype=self.dtype,
                                     device=self.device)
            outs = [model(graph, compute_forces=True) for model in self.models]
            energies = np.array([float(out["energy"].item()) for out in outs])
            forces = np.stack([out["forces"].detach().double().cpu().numpy() for out in outs])
            if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(forces))):
                raise FloatingPointError("the model gave a non-finite energy or forces for finite input; please report this")
            energy = float(energies.mean())
            self.results = {
                "energy": energy,
                "free_energy": energy,
                "energies": np.mean([out["energies"].detach().double().cpu().numpy() for out in outs], axis=0),
                "forces": forces.mean(axis=0),
            }
            if len(self.models) > 1:
                self.results["energy_std"] = float(energies.std())
                self.results["forces_std"] = np.sqrt(((forces - forces.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))
