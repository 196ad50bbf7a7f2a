"""Geometry optimisation and molecular dynamics with ASE, and reports on them
(energy drift in meV/atom/ps, temperature, bonds that stretched or shrank too far)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units

from .units import FS_PER_PS, MEV_PER_EV

OPTIMIZERS = ("BFGS", "LBFGS", "FIRE")


@dataclass
class OptimizationResult:
    converged: bool
    steps: int
    energies_eV: list[float]
    fmax_eV_per_A: float  # as ASE's optimisers define it: the largest per-atom force norm


def optimize(atoms: Atoms, fmax: float = 0.01, optimizer: str = "BFGS", steps: int = 1000, logfile=None) -> OptimizationResult:
    """Relax `atoms` in place with its calculator until every atom's force norm is below fmax
    (eV/Å), ASE's criterion."""
    import ase.optimize

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if atoms.calc is None:
        raise ValueError("atoms have no calculator: set atoms.calc = AniDSCalculator(...) first")
    energies = []
    opt = getattr(ase.optimize, optimizer)(atoms, logfile=logfile)
    opt.attach(lambda: energies.append(atoms.get_potential_energy()))
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return OptimizationResult(converged, opt.get_number_of_steps(), energies, largest_force(atoms.get_forces()))


def largest_force(forces: np.ndarray) -> float:
    """ASE's fmax: the largest per-atom force norm (eV/Å)."""
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max())


@dataclass
class MDReport:
    ensemble: str
    steps: int
    timestep_fs: float
    n_atoms: int
    times_ps: list[float] = field(default_factory=list)
    total_energies_eV: list[float] = field(default_factory=list)
    temperatures_K: list[float] = field(default_factory=list)
    bonds: np.ndarray | None = None  # (B, 2) pairs bonded at the start
    start_bond_lengths: np.ndarray | None = None  # (B,) Å
    min_bond_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) shortest length / start length
    max_bond_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) longest length / start length
    bond_limits: tuple[float, float] = (0.7, 1.5)
    stopped: str | None = None  # why the run ended early (a non-finite step, a calculator error)

    @property
    def drift_meV_per_atom_per_ps(self) -> float:
        """Slope of a straight-line fit of the total energy against time, per atom."""
        if len(self.times_ps) < 2:
            return float("nan")
        slope = np.polyfit(self.times_ps, self.total_energies_eV, 1)[0]
        return float(slope * MEV_PER_EV / self.n_atoms)

    @property
    def mean_temperature_K(self) -> float:
        return float(np.mean(self.temperatures_K))

    @property
    def unstable_bonds(self) -> list[dict]:
        """Bonds whose length left [0.7, 1.5]× the starting length in a recorded frame."""
        low, high = self.bond_limits
        if self.bonds is None:
            return []
        bad = (self.min_bond_ratio < low) | (self.max_bond_ratio > high)
        return [{"atoms": [int(i), int(j)], "min_ratio": float(a), "max_ratio": float(b)}
                for (i, j), a, b, flag in zip(self.bonds, self.min_bond_ratio, self.max_bond_ratio, bad) if flag]

    @property
    def stable(self) -> bool:
        return self.stopped is None and not self.unstable_bonds

    def track_bonds(self, atoms: Atoms) -> None:
        """Update the extreme length ratios of the starting bonds (set up on the first call)."""
        distances = atoms.get_all_distances()
        if self.bonds is None:
            self.bonds = bonded_pairs(atoms)
            self.start_bond_lengths = distances[self.bonds[:, 0], self.bonds[:, 1]]
            self.min_bond_ratio = np.ones(len(self.bonds))
            self.max_bond_ratio = np.ones(len(self.bonds))
        ratio = distances[self.bonds[:, 0], self.bonds[:, 1]] / self.start_bond_lengths
        self.min_bond_ratio = np.minimum(self.min_bond_ratio, ratio)
        self.max_bond_ratio = np.maximum(self.max_bond_ratio, ratio)


def bonded_pairs(atoms: Atoms, tolerance: float = 1.2) -> np.ndarray:
    """Pairs (i < j) closer than `tolerance` × the sum of their covalent radii, (B, 2)."""
    from ase.data import covalent_radii

    distances = atoms.get_all_distances()
    radii = covalent_radii[atoms.numbers]
    i, j = np.nonzero(np.triu(distances < tolerance * (radii[:, None] + radii[None, :]), k=1))
    return np.stack([i, j], axis=1)


def run_md(
    atoms: Atoms,
    ensemble: str = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 0.5,
    steps: int = 1000,
    trajectory: str | Path | None = None,
    interval: int = 10,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    progress: bool = False,
) -> MDReport:
    """Molecular dynamics from a Maxwell-Boltzmann start at `temperature_K` (no net momentum or
    rotation). NVE uses velocity Verlet; Langevin thermostats at `temperature_K`. Every
    `interval` steps the energies and bond lengths are recorded and, if `trajectory` is given,
    the frame is appended to that extxyz file (energies, forces and velocities included)."""
    from ase.io import write
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution as velocities
    from ase.md.verlet import VelocityVerlet
    from tqdm.auto import tqdm

    if atoms.calc is None:
        raise ValueError("atoms have no calculator: set atoms.calc = AniDSCalculator(...) first")
    rng = np.random.default_rng(seed)
    # ASE >= 3.29 names it thermalize_momenta; MaxwellBoltzmannDistribution before.
    thermalize = getattr(velocities, "thermalize_momenta", None) or velocities.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=temperature_K, rng=rng)
    velocities.Stationary(atoms)
    velocities.ZeroRotation(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dynamics = VelocityVerlet(atoms, timestep=dt)
    elif ensemble == "langevin":
        # fixcm=False: ASE warns that removing the centre-of-mass motion biases NVT sampling.
        dynamics = Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    else:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose 'nve' or 'langevin'")
    report = MDReport(ensemble, steps, timestep_fs, len(atoms))
    if trajectory is not None:
        Path(trajectory).unlink(missing_ok=True)

    def record():
        report.track_bonds(atoms)
        report.times_ps.append(dynamics.nsteps * timestep_fs / FS_PER_PS)
        report.total_energies_eV.append(float(atoms.get_total_energy()))
        report.temperatures_K.append(float(atoms.get_temperature()))
        if trajectory is not None:
            write(str(trajectory), atoms, format="extxyz", append=True)

    def check_step():
        # Before anything is recorded: a non-finite step ends the run here, named.
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.get_momenta()))):
            raise FloatingPointError("positions or velocities became non-finite")
        if dynamics.nsteps:
            bar.update(1)

    bar = tqdm(total=steps, disable=not progress, desc=f"MD {ensemble}", unit="step")
    dynamics.attach(check_step, interval=1)
    dynamics.attach(record, interval=interval)
    try:
        dynamics.run(steps)
    except (FloatingPointError, ValueError) as error:  # e.g. atoms collapsing onto each other
        report.stopped = f"stopped at step {dynamics.nsteps} of {steps}: {error}"
    bar.close()
    return report
