"""Labelled frames in compact shards: one .npz per shard (atomic numbers and positions in Å,
energies in eV, forces in eV/Å, with the molecule and conformer each frame came from) and a
manifest.json that lists the shards with their sha256, frame counts and skipped frames. A reader
checks every shard against the manifest, so a corrupt or truncated shard is named, never read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..atomic import atomic_path

MANIFEST = "manifest.json"
KIND = "anids-md labelled shards"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_shard(path: Path, frames: list[Atoms], molecule_ids, conformer_ids) -> None:
    """Write labelled `frames` as one shard, whole or not at all."""
    counts = np.array([len(a) for a in frames], dtype=np.int32)
    arrays = {
        "n_atoms": counts,
        "numbers": np.concatenate([a.numbers for a in frames]).astype(np.int16),
        "positions": np.concatenate([a.positions for a in frames]).astype(np.float64),
        "energy": np.array([a.get_potential_energy() for a in frames], dtype=np.float64),
        "forces": np.concatenate([a.get_forces() for a in frames]).astype(np.float32),
        "molecule": np.asarray(molecule_ids, dtype=np.int64),
        "conformer": np.asarray(conformer_ids, dtype=np.int32),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def read_shard(path: Path) -> list[Atoms]:
    with np.load(path, allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}  # each npz[key] decompresses its whole array again: read once
    ends = np.cumsum(data["n_atoms"])
    starts = ends - data["n_atoms"]
    frames = []
    for k, (s, e) in enumerate(zip(starts, ends)):
        atoms = Atoms(numbers=data["numbers"][s:e].astype(int), positions=data["positions"][s:e])
        atoms.calc = SinglePointCalculator(atoms, energy=float(data["energy"][k]), forces=data["forces"][s:e].astype(np.float64))
        atoms.info.update(molecule=int(data["molecule"][k]), conformer=int(data["conformer"][k]))
        frames.append(atoms)
    return frames


def is_manifest(path: Path) -> bool:
    """A file named manifest.json is read as a shard manifest (and refused by name if it is not one)."""
    return Path(path).name == MANIFEST


def read_shards(manifest_path: str | Path) -> list[Atoms]:
    """Every frame of the shards a manifest lists, each shard checked against its sha256."""
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        shards = manifest["shards"] if manifest.get("kind") == KIND else None
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise ValueError(f"{manifest_path}: not a readable shard manifest ({type(error).__name__}: {error})") from None
    if shards is None:
        raise ValueError(f"{manifest_path}: not a manifest of {KIND}")
    frames = []
    for entry in shards:
        path = manifest_path.parent / entry["file"]
        if not path.exists() or sha256_of(path) != entry["sha256"]:
            raise ValueError(f"{path}: missing, or its content does not match the manifest's sha256 (corrupt or replaced); "
                             "delete it and its manifest entry and run the builder again")
        frames += read_shard(path)
    return frames
