"""Seeding of every random number generator the package uses."""
from __future__ import annotations

import random

import numpy as np
import torch

from defuse_widgets._validation import check_int


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)   # noqa: NPY002 - the legacy global RNG, for code that uses it
    torch.manual_seed(seed)


def seeded_subset(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` of ``n`` items (all if None).

    Returns
    -------
    ndarray of shape (min(n, size),), int64
    """
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    size = check_int("size", size, low=1)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False)).astype(np.int64)
