"""Which candidate frames get the expensive labels.

- `random`: a seeded draw, the control.
- `farthest`: farthest-point sampling in the model's feature space (each frame described by the
  final invariant features of its atoms, in atom order: the frames of one molecule), starting
  from the frame nearest the mean: spread over what the model distinguishes.
- `committee`: the frames on which a committee of models disagrees most (the largest per-atom
  force spread, `forces_std`: `largest(force_spread(...))`, in fit's rounds); where no committee
  exists yet (the first set), farthest-point.
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


def farthest_points(features: np.ndarray, n: int) -> list[int]:
    """`n` (at least 1) rows of `features`: first the row nearest the mean, then each the farthest
    (Euclidean) from all rows chosen so far."""
    chosen = [int(np.argmin(np.linalg.norm(features - features.mean(0), axis=1)))]
    distance = np.linalg.norm(features - features[chosen[0]], axis=1)
    for _ in range(n - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(features - features[chosen[-1]], axis=1))
    return chosen


def largest(values: np.ndarray, n: int) -> list[int]:
    """Indices of the `n` largest values, largest first."""
    return [int(k) for k in np.argsort(-np.asarray(values), kind="stable")[:n]]


def select_frames(frames: list[Atoms], n: int, strategy: str, seed: int, model=None) -> list[int]:
    """Indices of `n` of `frames` by `strategy`, where no committee is at hand: `random`, or
    farthest-point (for `farthest`, and `committee`'s first set) on the features of `model` (a
    ForceField)."""
    if strategy not in SELECTIONS:
        raise ValueError(f"unknown selection {strategy!r}; choose one of {SELECTIONS}")
    if not 0 < n <= len(frames):
        raise ValueError(f"cannot select {n} of {len(frames)} candidate frames")
    if strategy == "random":
        return sorted(int(k) for k in np.random.default_rng(seed).choice(len(frames), n, replace=False))
    if model is None:
        raise ValueError("farthest-point selection needs a model for the features")
    return farthest_points(frame_features(model, frames), n)
