"""Scoring regions against planted bugs: purity per region, recall per bug.

This module imports no UI code.
"""
from __future__ import annotations

import numpy as np

from defuse_widgets._validation import check_int, check_number, describe

__all__ = ["bug_purity", "bug_recall", "region_shares"]


def bug_purity(assignment: np.ndarray, source_index: np.ndarray, bugs,
               n_regions: int) -> np.ndarray:
    """Share of each region's members whose source image is a bug's planted image.

    Parameters
    ----------
    assignment : ndarray of shape (n_examples,)
        Region of each adversarial example (-1: none), as ``Regions.assignment``.
    source_index : ndarray of shape (n_examples,)
        Index into the planted training split of each example's source image.
    bugs : sequence of PlantedBug, or of index arrays into the training split
    n_regions : int

    Returns
    -------
    ndarray of shape (n_regions, n_bugs)
        ``purity[k, b]``; 0 for empty regions.
    """
    assignment = np.asarray(assignment)
    source_index = np.asarray(source_index)
    if assignment.shape != source_index.shape or assignment.ndim != 1:
        raise ValueError(f"assignment and source_index must be 1-d of the same length; got "
                         f"{describe(assignment)} and {describe(source_index)}.")
    n_regions = check_int("n_regions", n_regions, low=0)
    sources = [np.asarray(b.train_index if hasattr(b, "train_index") else b) for b in bugs]
    hit = np.stack([np.isin(source_index, s) for s in sources], axis=1) if sources \
        else np.zeros((len(source_index), 0), bool)
    return region_shares(assignment, hit, n_regions)


def region_shares(assignment: np.ndarray, hit: np.ndarray, n_regions: int) -> np.ndarray:
    """Mean of ``hit`` (n_examples, n_bugs) over each region's members; 0 for empty regions."""
    out = np.zeros((n_regions, hit.shape[1]))
    for k in range(n_regions):
        m = assignment == k
        if m.any():
            out[k] = hit[m].mean(0)
    return out


def bug_recall(purity: np.ndarray, accepted=None, *, min_purity: float = 0.5) -> dict:
    """Which bugs a region traces back to with at least ``min_purity``.

    Parameters
    ----------
    purity : ndarray of shape (n_regions, n_bugs)
        From :func:`bug_purity`.
    accepted : array-like of bool of shape (n_regions,), optional
        Misclassification regions; None counts every region.
    min_purity : float in (0, 1], default=0.5

    Returns
    -------
    dict
        ``found`` (bool per bug), ``recall`` (share found), ``regions``
        (per bug, the counted regions with purity ≥ ``min_purity``) and
        ``best_purity`` (per bug, the highest purity over counted regions).
    """
    P = np.asarray(purity, dtype=float)
    if P.ndim != 2:
        raise ValueError(f"purity must have shape (n_regions, n_bugs); got {describe(purity)}.")
    min_purity = check_number("min_purity", min_purity, low=0, high=1, low_inclusive=False)
    acc = np.ones(len(P), bool) if accepted is None else np.asarray(accepted, dtype=bool)
    if acc.shape != (len(P),):
        raise ValueError(f"accepted must have shape ({len(P)},); got {describe(accepted)}.")
    Pc = P[acc]
    ids = np.flatnonzero(acc)
    regions = [ids[Pc[:, j] >= min_purity].tolist() for j in range(P.shape[1])]
    found = [bool(r) for r in regions]
    best = [float(Pc[:, j].max()) if len(Pc) else 0.0 for j in range(P.shape[1])]
    return dict(found=found, recall=float(np.mean(found)) if found else 0.0,
                regions=regions, best_purity=best)

