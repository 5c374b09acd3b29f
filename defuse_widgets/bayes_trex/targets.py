"""Bayes-TrEx targets: what confidence a level set asks for, and its likelihood.

This module imports no UI code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from defuse_widgets._validation import check_int, check_number, describe

__all__ = ["KINDS", "Target", "level_set_log_likelihood", "pack_targets"]

KINDS = ("high", "ambiguous", "graded", "vector")


@dataclass(frozen=True)
class Target:
    """One level-set target of Bayes-TrEx.

    Build targets with :meth:`high_confidence`, :meth:`ambiguous`,
    :meth:`graded` or :meth:`vector`.

    Attributes
    ----------
    kind : {"high", "ambiguous", "graded", "vector"}
    classes : tuple of int
        Classes whose confidence the target sets.
    confidence : tuple of float
        Target confidence of each of ``classes``.
    """

    kind: str
    classes: tuple
    confidence: tuple

    @classmethod
    def high_confidence(cls, i: int) -> "Target":
        """``p_i = 1`` (paper eq. 5)."""
        return cls("high", (check_int("i", i, low=0),), (1.0,))

    @classmethod
    def ambiguous(cls, i: int, j: int) -> "Target":
        """``p_i = p_j = 0.5``, all other classes 0 (paper eqs. 6-7)."""
        i, j = check_int("i", i, low=0), check_int("j", j, low=0)
        if i == j:
            raise ValueError(f"j must differ from i for an ambiguous target; got i = j = {i}.")
        return cls("ambiguous", (min(i, j), max(i, j)), (0.5, 0.5))

    @classmethod
    def graded(cls, i: int, c: float) -> "Target":
        """``p_i = c`` for a confidence c in [0, 1]; other classes are free."""
        return cls("graded", (check_int("i", i, low=0),), (check_number("c", c, low=0, high=1),))

    @classmethod
    def vector(cls, p) -> "Target":
        """A full target vector ``p`` of shape (n_classes,) on the probability simplex."""
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 1 or p.size < 2 or not np.isfinite(p).all():
            raise ValueError(f"p must be a finite vector of shape (n_classes,); got {describe(p)}.")
        if (p < 0).any() or abs(p.sum() - 1) > 1e-6:
            raise ValueError(f"p must be non-negative and sum to 1; got sum {p.sum():.4g}.")
        return cls("vector", tuple(range(p.size)), tuple(float(v) for v in p))

    @property
    def label(self) -> str:
        """Short name in the paper's notation, e.g. ``"P_1 = P_7 = 0.5"``."""
        if self.kind == "high":
            return f"P_{self.classes[0]} = 1"
        if self.kind == "ambiguous":
            return f"P_{self.classes[0]} = P_{self.classes[1]} = 0.5"
        if self.kind == "graded":
            return f"P_{self.classes[0]} = {self.confidence[0]:g}"
        return ", ".join(f"P_{k} = {v:g}" for k, v in zip(self.classes, self.confidence) if v > 0)

    @property
    def reported_classes(self) -> tuple:
        """Classes whose confidence Table 1 reports (the non-zero ones of a vector)."""
        if self.kind != "vector":
            return self.classes
        return tuple(k for k, v in zip(self.classes, self.confidence) if v > 0)


def pack_targets(targets: Sequence[Target], target_index: np.ndarray, n_classes: int, device):
    """Per-chain target tensors: kind, i, j, c and the full vector."""
    kinds, ii, jj, cc, vec = [], [], [], [], []
    for t in targets:
        if max(t.classes) >= n_classes or (t.kind == "vector" and len(t.classes) != n_classes):
            raise ValueError(f"targets must refer to classes of a {n_classes}-class classifier; "
                             f"got {t.label}.")
        kinds.append({"high": 0, "graded": 0, "ambiguous": 1, "vector": 2}[t.kind])
        ii.append(t.classes[0])
        jj.append(t.classes[1] if t.kind == "ambiguous" else t.classes[0])
        cc.append(t.confidence[0])
        v = np.zeros(n_classes)
        v[list(t.classes)] = t.confidence
        vec.append(v)
    idx = torch.as_tensor(target_index, device=device)
    as_t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt, device=device)[idx]  # noqa: E731
    return (as_t(kinds, torch.long), as_t(ii, torch.long), as_t(jj, torch.long),
            as_t(cc, torch.float32), as_t(np.stack(vec), torch.float32))


def level_set_log_likelihood(probs: torch.Tensor, packed, sigma: float) -> torch.Tensor:
    """Log N(u*; g(f), σ²) up to a constant, per chain.

    Parameters
    ----------
    probs : Tensor of shape (n_chains, n_classes)
        Classifier softmax f(dec(z)).
    packed : tuple
        Per-chain ``(kind, i, j, c, vector)`` from the sampler.
    sigma : float

    Returns
    -------
    Tensor of shape (n_chains,)
    """
    kind, i, j, c, vec = packed
    pi = probs.gather(1, i[:, None])[:, 0]
    pj = probs.gather(1, j[:, None])[:, 0]
    single = (pi - c) ** 2                                             # eq. 5 / graded
    # max over k != i, j; clamp maps the empty max of a 2-class problem (-inf) to 0
    others = probs.scatter(1, torch.stack([i, j], 1), float("-inf")).amax(1).clamp(min=0)
    u1 = (pi - pj).abs()                                               # eq. 6, u1* = 0
    u2 = torch.minimum(pi, pj) - others                                # eq. 7, u2* = 0.5
    amb = u1 ** 2 + (u2 - 0.5) ** 2
    full = ((probs - vec) ** 2).sum(1)
    sq = torch.where(kind == 0, single, torch.where(kind == 1, amb, full))
    return -0.5 * sq / sigma ** 2
