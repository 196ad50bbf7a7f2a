"""The data of a foundation that knows forces: molecules (all of QM9 by default) in
non-equilibrium conformers, labelled with GFN2-xTB. Per molecule, K conformers are thermal
displacements drawn from the pretrained generator's covariances (small along stiff bonds) at
temperatures spread over a range; the labels come from tblite through any
`concurrent.futures.Executor` (local processes, or a Dask cluster).

The builder is deterministic (a molecule's conformers depend only on the seed and its index) and
resumable: molecules are labelled in shards (anids_md/data/shards.py), each written whole and
entered in the manifest with its sha256 and its skipped frames (an xTB SCF that does not converge
is counted, never labelled with NaN); a restarted build skips the shards the manifest holds."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from .atomic import write_text_atomically
from .data import graph_from_atoms
from .data.shards import KIND, MANIFEST, sha256_of, write_shard
from .fit.sampling import thermal_amplitude_A
from .reference import XTBConvergenceError, XTBLevel
from .reference.xtb import xtb_energy_forces
from .settings import DatasetSettings

logger = logging.getLogger(__name__)

def label_frame(numbers, positions, method: str):
    """(energy eV, forces eV/Å) of one frame with xTB, or None when the SCF does not converge;
    a module-level function, so that process pools and Dask can ship it."""
    try:
        return xtb_energy_forces(Atoms(numbers=numbers, positions=positions), XTBLevel(method=method))
    except XTBConvergenceError:
        return None


# A conformer whose atoms come closer than this (Å) is drawn again: the model refuses such
# structures (data/graph.py, 0.5 Å), and hydrogens at 1000 K can get there.
MIN_CONTACT_A = 0.6
REDRAWS = 20


def conformers(molecule: Atoms, index: int, noise, settings: DatasetSettings) -> list[Atoms]:
    """The K displaced conformers of molecule `index`, deterministic in (seed, index); a draw
    that brings two atoms closer than MIN_CONTACT_A is drawn again (up to REDRAWS times, then the
    conformer is left out)."""
    (cov,) = noise.covariances([graph_from_atoms(molecule, noise.generator.config.cutoff)], mean_scale_A=1.0)
    shapes = cov.numpy()
    rng = np.random.default_rng([settings.seed, index])
    temperatures = np.linspace(settings.min_temperature_K, settings.max_temperature_K, settings.conformers)
    frames = []
    for temperature in temperatures:
        factors = np.linalg.cholesky(shapes * thermal_amplitude_A(temperature) ** 2)
        for _ in range(REDRAWS):
            positions = molecule.positions + np.einsum("nij,nj->ni", factors, rng.normal(size=(len(molecule), 3)))
            gaps = np.linalg.norm(positions[:, None] - positions[None], axis=-1)[np.triu_indices(len(molecule), 1)]
            if len(gaps) == 0 or gaps.min() >= MIN_CONTACT_A:
                frames.append(Atoms(numbers=molecule.numbers, positions=positions))
                break
    return frames


def build_dataset(molecules: list[Atoms], out_dir: str | Path, settings: DatasetSettings, executor: Executor,
                  progress: bool = True) -> dict:
    """Label the conformers of `molecules` in shards under `out_dir`; returns the manifest."""
    from .noise import LearnedNoise

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "kind": KIND, "settings": asdict(settings), "n_molecules": len(molecules), "shards": [], "wall_s": 0.0}
    if manifest["settings"] != asdict(settings) or manifest["n_molecules"] != len(molecules):
        raise ValueError(f"{out} holds a data set built with other settings or molecules; choose another folder")
    done = {entry["index"] for entry in manifest["shards"]}
    noise = LearnedNoise.from_checkpoint(settings.generator)
    n_shards = -(-len(molecules) // settings.shard_molecules)
    bar = tqdm(total=n_shards, initial=len(done), disable=not progress, desc="xTB shards", unit="shard")
    for index in range(n_shards):
        if index in done:
            continue
        start = time.perf_counter()
        first = index * settings.shard_molecules
        frames, ids, too_close = [], [], 0
        for k, molecule in enumerate(molecules[first : first + settings.shard_molecules], start=first):
            drawn = conformers(molecule, k, noise, settings)
            too_close += settings.conformers - len(drawn)
            for c, frame in enumerate(drawn):
                frames.append(frame)
                ids.append((k, c))
        futures = [executor.submit(label_frame, f.numbers, f.positions, settings.method) for f in frames]
        labelled, kept, skipped = [], [], 0
        for frame, (k, c), future in zip(frames, ids, futures):
            result = future.result()
            if result is None:
                skipped += 1
                continue
            frame.calc = SinglePointCalculator(frame, energy=result[0], forces=result[1])
            labelled.append(frame)
            kept.append((k, c))
        path = out / f"shard{index:05d}.npz"
        write_shard(path, labelled, [k for k, _ in kept], [c for _, c in kept])
        manifest["shards"].append({"index": index, "file": path.name, "sha256": sha256_of(path), "frames": len(labelled),
                                   "skipped_scf": skipped, "skipped_contact": too_close,
                                   "molecules": [first, min(first + settings.shard_molecules, len(molecules))]})
        manifest["wall_s"] = round(manifest["wall_s"] + time.perf_counter() - start, 1)
        write_text_atomically(manifest_path, json.dumps(manifest, indent=1))  # the shard counts once it is listed
        bar.update(1)
    bar.close()
    manifest["shards"].sort(key=lambda entry: entry["index"])
    manifest["frames"] = sum(entry["frames"] for entry in manifest["shards"])
    manifest["skipped_scf"] = sum(entry["skipped_scf"] for entry in manifest["shards"])
    write_text_atomically(manifest_path, json.dumps(manifest, indent=1))
    return manifest
