"""Geometry optimisation and molecular dynamics with ASE, and reports on them
(energy drift in meV/atom/ps, temperature, bonds that stretched or shrank too far)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units

from .options import ENSEMBLES, OPTIMIZERS
from .units import FS_PER_PS, MEV_PER_EV

EARLY_FAILURE_STEPS = 100  # an MD run that breaks before this many steps gets the timestep hint


@dataclass
class OptimizationResult:
    converged: bool
    steps: int
    fmax_eV_per_A: float  # as ASE's optimisers define it: the largest per-atom force norm


def optimize(atoms: Atoms, fmax: float = 0.01, optimizer: str = "BFGS", steps: int = 1000, logfile=None) -> OptimizationResult:
    """Relax `atoms` in place with its calculator until every atom's force norm is below fmax
    (eV/Å), ASE's criterion."""
    import ase.optimize

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if atoms.calc is None:
        raise ValueError("atoms have no calculator: set atoms.calc = AniDSCalculator(...) first")
    opt = getattr(ase.optimize, optimizer)(atoms, logfile=logfile)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return OptimizationResult(converged, opt.get_number_of_steps(), largest_force(atoms.get_forces()))


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
    # per recorded frame, when the calculator is a committee (its `energy_std`, and the largest per-atom `forces_std`)
    energy_std_eV: list[float] = field(default_factory=list)
    max_forces_std_eV_per_A: list[float] = field(default_factory=list)

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
        """Update the extreme length ratios of the starting bonds (set up on the first call).
        Only those bonds are measured: memory and time grow with the atoms, not their square."""
        if self.bonds is None:
            self.bonds = bonded_pairs(atoms)
            self.start_bond_lengths = _bond_lengths(atoms, self.bonds)
            self.min_bond_ratio = np.ones(len(self.bonds))
            self.max_bond_ratio = np.ones(len(self.bonds))
        ratio = _bond_lengths(atoms, self.bonds) / self.start_bond_lengths
        self.min_bond_ratio = np.minimum(self.min_bond_ratio, ratio)
        self.max_bond_ratio = np.maximum(self.max_bond_ratio, ratio)


def _bond_lengths(atoms: Atoms, pairs: np.ndarray) -> np.ndarray:
    """Lengths (Å) of the pairs, through the nearest periodic image when the cell is periodic."""
    from ase.geometry import find_mic

    vectors = atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]]
    if np.any(atoms.pbc):
        return find_mic(vectors, atoms.cell, atoms.pbc)[1]
    return np.linalg.norm(vectors, axis=1)


def bonded_pairs(atoms: Atoms, tolerance: float = 1.2) -> np.ndarray:
    """Pairs (i < j) closer than `tolerance` × the sum of their covalent radii, (B, 2), found
    with a neighbour list (linear in the number of atoms)."""
    from ase.data import covalent_radii

    from .data import neighbour_list

    radii = covalent_radii[atoms.numbers]
    edge_index, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, tolerance * 2 * float(radii.max()))
    i, j = edge_index
    lengths = np.linalg.norm(atoms.positions[j] - atoms.positions[i] + shifts, axis=1)
    bonded = (i < j) & (lengths < tolerance * (radii[i] + radii[j]))
    return np.unique(np.stack([i[bonded], j[bonded]], axis=1), axis=0).reshape(-1, 2)


def check_md_settings(temperature_K: float, timestep_fs: float, steps: int, interval: int, friction_per_fs: float = 0.01) -> None:
    """A ValueError naming the first setting that cannot give a meaningful run."""
    if not (np.isfinite(temperature_K) and temperature_K >= 0):
        raise ValueError(f"temperature must be 0 K or more, got {temperature_K}")
    if not (np.isfinite(timestep_fs) and timestep_fs > 0):
        raise ValueError(f"timestep must be positive (fs), got {timestep_fs}")
    for name, value in (("steps", steps), ("interval", interval)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    if not (np.isfinite(friction_per_fs) and friction_per_fs >= 0):
        raise ValueError(f"friction must be 0 or more (1/fs), got {friction_per_fs}")


def _with_spread(atoms: Atoms, energy_std: float, forces_std: np.ndarray) -> Atoms:
    """A copy of `atoms` with its calculator's results, and the committee's spread (ASE's extxyz
    writer keeps only the results it knows)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
    frame.info["energy_std"] = float(energy_std)
    frame.arrays["forces_std"] = np.asarray(forces_std, dtype=float)
    return frame


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
    the frame is appended to that extxyz file (energies, forces and velocities included). With a
    calculator that reports `forces_std` (a committee), each recorded frame's spread goes into the
    report and the trajectory (`energy_std` in its info, `forces_std` per atom)."""
    dynamics = md_integrator(atoms, ensemble, temperature_K, timestep_fs, steps, interval, friction_per_fs, seed)
    report = MDReport(ensemble, steps, timestep_fs, len(atoms))
    observe(dynamics, report, steps, interval, trajectory, progress)
    return report


def md_integrator(atoms: Atoms, ensemble: str, temperature_K: float, timestep_fs: float, steps: int, interval: int,
                  friction_per_fs: float, seed: int):
    """The settings checked, velocities drawn at `temperature_K`, and ASE's integrator."""
    from ase.md import velocitydistribution as velocities
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    if atoms.calc is None:
        raise ValueError("atoms have no calculator: set atoms.calc = AniDSCalculator(...) first")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {ENSEMBLES}")
    check_md_settings(temperature_K, timestep_fs, steps, interval, friction_per_fs)
    if atoms.get_number_of_degrees_of_freedom() == 0:
        raise ValueError("every atom is fixed (constraints leave no degree of freedom): there is nothing to move")
    rng = np.random.default_rng(seed)
    # ASE >= 3.29 names it thermalize_momenta; MaxwellBoltzmannDistribution before.
    thermalize = getattr(velocities, "thermalize_momenta", None) or velocities.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=temperature_K, rng=rng)
    velocities.Stationary(atoms)
    velocities.ZeroRotation(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    # fixcm=False: ASE warns that removing the centre-of-mass motion biases NVT sampling.
    return Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs, fixcm=False, rng=rng)


def observe(dynamics, report: MDReport, steps: int, interval: int, trajectory: str | Path | None, progress: bool) -> None:
    """Run `dynamics` for `steps`, recording into `report` every `interval` steps (and appending
    the frame to `trajectory`); a non-finite step or a calculator's refusal ends the run, named."""
    from ase.io import write
    from tqdm.auto import tqdm

    atoms, timestep_fs = dynamics.atoms, report.timestep_fs
    if trajectory is not None:
        Path(trajectory).unlink(missing_ok=True)

    committee = "forces_std" in getattr(atoms.calc, "implemented_properties", ())

    def record():
        report.track_bonds(atoms)
        report.times_ps.append(dynamics.nsteps * timestep_fs / FS_PER_PS)
        report.total_energies_eV.append(float(atoms.get_total_energy()))
        report.temperatures_K.append(float(atoms.get_temperature()))
        frame = atoms
        if committee:
            energy_std, forces_std = (atoms.calc.get_property(name, atoms) for name in ("energy_std", "forces_std"))
            report.energy_std_eV.append(float(energy_std))
            report.max_forces_std_eV_per_A.append(float(np.max(forces_std)))
            frame = _with_spread(atoms, energy_std, forces_std)
        if trajectory is not None:
            write(str(trajectory), frame, format="extxyz", append=True)

    def check_step():
        # Before anything is recorded: a non-finite step ends the run here, named.
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.get_momenta()))):
            raise FloatingPointError("positions or velocities became non-finite")
        if dynamics.nsteps:
            bar.update(1)

    bar = tqdm(total=steps, disable=not progress, desc=f"MD {report.ensemble}", unit="step")
    dynamics.attach(check_step, interval=1)
    dynamics.attach(record, interval=interval)
    try:
        dynamics.run(steps)
    except (FloatingPointError, ValueError) as error:  # e.g. atoms collapsing onto each other
        report.stopped = f"stopped at step {dynamics.nsteps} of {steps}: {error}"
        if dynamics.nsteps < EARLY_FAILURE_STEPS:
            report.stopped += (f"; a run that fails within its first {EARLY_FAILURE_STEPS} steps usually has too large a timestep "
                               f"({timestep_fs:g} fs): try a smaller one (0.5 fs suits molecules with hydrogen)")
    finally:
        bar.close()
