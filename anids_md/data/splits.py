"""Reproducible train/validation splits for the rMD17 protocols (BENCHMARKS.md A)."""

from __future__ import annotations

import numpy as np

PROTOCOLS = ("rmd17-50", "rmd17-1000")


def protocol_split(protocol: str, n_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (train, validation) of a `train_01` file for `protocol`.

    rmd17-50: train on frames 0-49, validate on 50-99.
    rmd17-1000: a seeded permutation; 950 frames train, 50 validate.
    """
    if protocol == "rmd17-50":
        needed, train, valid = 100, np.arange(50), np.arange(50, 100)
    elif protocol == "rmd17-1000":
        needed = 1000
        order = np.random.default_rng(seed).permutation(1000)
        train, valid = np.sort(order[:950]), np.sort(order[950:])
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if n_frames < needed:
        raise ValueError(f"protocol {protocol} needs {needed} frames, the file has {n_frames}")
    return train, valid


def random_split(n_frames: int, n_valid: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of `n_frames` into train and `n_valid` validation frames."""
    if not 0 < n_valid < n_frames:
        raise ValueError(f"need 0 < n_valid < {n_frames}, got {n_valid}")
    order = np.random.default_rng(seed).permutation(n_frames)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])
