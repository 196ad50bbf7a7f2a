"""Which candidate frames get the expensive labels.

- `random`: a seeded draw, the control.
- `farthest`: farthest-point sampling in the model's feature space (each frame described by the
  final invariant features of its atoms, in atom order: the frames of one molecule), starting
  from the frame nearest the mean: spread over what the model distinguishes.
- `committee`: the frames on which a committee of models disagrees most (the largest per-atom
  force spread, `forces_std`); where no committee exists yet (the first set), farthest-point.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from ..options import SELECTIONS


def force_spread(committee, frames: list[Atoms]) -> np.ndarray:
    """Per frame, the largest per-atom `forces_std` (eV/Å) of `committee` (an AniDSCalculator of a
    committee checkpoint)."""
    spread = []
    for atoms in frames:
        atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        atoms.calc = committee
        spread.append(float(np.max(committee.get_property("forces_std", atoms))))
    return np.array(spread)


def frame_features(model, frames: list[Atoms]) -> np.ndarray:
    """(F, N·C): the final invariant (scalar) features of every atom of each frame."""
    from ..data import graph_from_atoms

    parameter = next(model.parameters())
    rows = []
    with torch.no_grad():
        for atoms in frames:
            graph = graph_from_atoms(atoms, model.config.cutoff).to(parameter.device, parameter.dtype)
            rows.append(model.encoder(graph).features[0].double().cpu().numpy().ravel())
    if len({len(r) for r in rows}) > 1:
        raise ValueError("farthest-point selection compares frames of one molecule; these have different numbers of atoms")
    return np.array(rows)


def farthest_points(features: np.ndarray, n: int, chosen: list[int] | None = None) -> list[int]:
    """`n` more rows of `features`, each the farthest (Euclidean) from all rows chosen so far;
    the first, when nothing is chosen, is the row nearest the mean."""
    chosen = list(chosen or [])
    if n > len(features) - len(chosen):
        raise ValueError(f"cannot choose {n} more of {len(features)} frames ({len(chosen)} already chosen)")
    if not chosen and n:
        chosen.append(int(np.argmin(np.linalg.norm(features - features.mean(0), axis=1))))
        n -= 1
    distance = np.min([np.linalg.norm(features - features[k], axis=1) for k in chosen], axis=0) if chosen else None
    for _ in range(n):
        pick = int(np.argmax(distance))
        chosen.append(pick)
        distance = np.minimum(distance, np.linalg.norm(features - features[pick], axis=1))
    return chosen


def largest(values: np.ndarray, n: int) -> list[int]:
    """Indices of the `n` largest values, largest first."""
    return [int(k) for k in np.argsort(-np.asarray(values), kind="stable")[:n]]


def select_frames(frames: list[Atoms], n: int, strategy: str, seed: int, model=None, committee=None) -> list[int]:
    """Indices of `n` of `frames` by `strategy` (see the module); `model` (a ForceField) gives
    the features of farthest-point sampling, `committee` (a calculator) the spread."""
    if strategy not in SELECTIONS:
        raise ValueError(f"unknown selection {strategy!r}; choose one of {SELECTIONS}")
    if not 0 < n <= len(frames):
        raise ValueError(f"cannot select {n} of {len(frames)} candidate frames")
    if strategy == "random":
        return sorted(int(k) for k in np.random.default_rng(seed).choice(len(frames), n, replace=False))
    if strategy == "committee" and committee is not None:
        return largest(force_spread(committee, frames), n)
    if model is None:
        raise ValueError("farthest-point selection needs a model for the features")
    return farthest_points(frame_features(model, frames), n)
