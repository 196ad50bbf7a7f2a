"""The `xtb-md` sampler of `fit`: a pool of candidate frames from GFN2-xTB, in minutes.

RDKit conformers are relaxed with xTB; a conformer whose bonding changes on the way (a proton
moves, a ring opens) is dropped and counted, and minima within 0.05 Å RMSD or 1 meV of a kept
one are duplicates. From each distinct minimum, Langevin MD with xTB at the temperature (the molecule
prior's sampler, anids_md/prior.py) and a quarter of the frames at 1.5× the temperature, which
reaches the soft modes (rotors, wagging) that a weak first model and displacements miss. The
frames keep their xTB energies and forces: the molecule prior is fitted to them. The minima come
first and on their own (`xtb_minima`), so that `fit` can start its DFT optimisations from them
while the MD runs.

Everything lands in one folder; minima and MD runs that finished are read back, so a killed fit resumes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from ..atomic import write_text_atomically
from ..prior import sample_with_xtb, xtb_minimum
from ..reference import XTBConvergenceError, XTBLevel
from ..reference.xtb import xtb_energy_forces
from ..settings import PriorConfig
from ..simulate import bonded_pairs
from ..validate.rmsd import kabsch_rmsd

DUPLICATE_RMSD_A = 0.05
# Minima this close in energy are one conformer up to symmetry (hydrogens of a methyl group
# swapped, a mirror image), which an RMSD in fixed atom order calls different.
DUPLICATE_ENERGY_EV = 1e-3
HOT_FACTOR = 1.5  # the hotter pass, × the temperature
HOT_SHARE = 0.25  # of the frames


@dataclass
class XTBMinima:
    atoms: list[Atoms]  # distinct xTB minima, lowest energy first
    energies_eV: list[float]
    n_conformers: int  # tried
    n_bonding_changed: int  # dropped: their xTB optimisation changed the bonding
    n_xtb_failures: int  # dropped: xTB could not finish their optimisation


@dataclass
class XTBPool:
    frames: list[Atoms]  # with xTB energies and forces
    n_xtb_failures: int  # MD runs xTB could not finish
    xtb_wall_s: float


def same_bonding(a: Atoms, b: Atoms) -> bool:
    return {tuple(p) for p in bonded_pairs(a)} == {tuple(p) for p in bonded_pairs(b)}


def xtb_minima(conformers: list[Atoms], level: XTBLevel, folder: Path) -> XTBMinima:
    """The distinct xTB minima of `conformers` (seconds), recorded in `folder`/minima.json and read
    back from there, so a resumed fit starts its DFT optimisations from the same structures."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "minima.json"
    if record.exists():
        d = json.loads(record.read_text())
        positions = d.pop("positions")
        return XTBMinima(atoms=[Atoms(numbers=conformers[0].numbers, positions=np.array(p)) for p in positions], **d)
    minima, energies, changed, failures = [], [], 0, 0
    for conformer in conformers:
        try:
            minimum = xtb_minimum(conformer, level)
            energy, _ = xtb_energy_forces(minimum, level)
        except XTBConvergenceError:
            failures += 1
            continue
        if not same_bonding(conformer, minimum):
            changed += 1
            continue
        if all(kabsch_rmsd(kept, minimum) > DUPLICATE_RMSD_A and abs(e - energy) > DUPLICATE_ENERGY_EV
               for kept, e in zip(minima, energies)):
            minima.append(minimum)
            energies.append(energy)
    if not minima:
        raise RuntimeError(f"none of {len(conformers)} conformers kept its bonding through an xTB optimisation "
                           f"({changed} changed, {failures} xTB failures): xTB cannot sample this molecule")
    order = np.argsort(energies, kind="stable")
    result = XTBMinima([minima[k] for k in order], [float(energies[k]) for k in order], len(conformers), changed, failures)
    write_text_atomically(record, json.dumps({"positions": [m.positions.tolist() for m in result.atoms], "energies_eV": result.energies_eV,
                                              "n_conformers": result.n_conformers, "n_bonding_changed": changed,
                                              "n_xtb_failures": failures}, indent=2))
    return result


def xtb_pool(minima: XTBMinima, settings: PriorConfig, level: XTBLevel, seed: int, folder: Path, progress: bool) -> XTBPool:
    """`settings.frames` xTB-labelled frames from MD around the distinct `minima`, in `folder`
    (pool.extxyz, pool.json); read back when they exist."""
    record, frames_file = folder / "pool.json", folder / "pool.extxyz"
    if record.exists() and frames_file.exists():
        d = json.loads(record.read_text())
        return XTBPool(frames=read(frames_file, index=":"), n_xtb_failures=d["n_xtb_failures"], xtb_wall_s=d["xtb_wall_s"])
    begin = time.perf_counter()
    hot = max(1, round(HOT_SHARE * settings.frames / len(minima.atoms)))
    warm = max(1, -(-settings.frames // len(minima.atoms)) - hot)
    frames, failures = [], 0
    for k, minimum in enumerate(minima.atoms):
        for tag, count, temperature in ((f"minimum{k}", warm, settings.temperature_K),
                                         (f"minimum{k}_hot", hot, HOT_FACTOR * settings.temperature_K)):
            sampled, failed, _ = sample_with_xtb(minimum, settings, level, seed + 10 * k, folder, tag, progress, count, temperature)
            frames += sampled
            failures += failed
    if len(frames) <= settings.n_valid:
        raise RuntimeError(f"only {len(frames)} xTB frames were made ({failures} failures); the prior needs more than {settings.n_valid}")
    pool = XTBPool(frames[: settings.frames], failures, round(time.perf_counter() - begin, 1))
    write(frames_file, pool.frames, format="extxyz")
    write_text_atomically(record, json.dumps({"n_xtb_failures": failures, "xtb_wall_s": pool.xtb_wall_s}, indent=2))
    return pool
