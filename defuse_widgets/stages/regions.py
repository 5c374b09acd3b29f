"""Misclassification regions: the kept components of the distillation mixture."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from defuse_widgets._validation import check_int, check_module, check_number, check_seed
from defuse_widgets.models.inference import decode


@dataclass(frozen=True)
class Regions:
    """Candidate misclassification regions Λ = {(μ_j, Σ_j, π_j) | π_j > ε}.

    Attributes
    ----------
    means : ndarray of shape (n_regions, n_latent)
    covariances : ndarray of shape (n_regions, n_latent, n_latent)
    weights : ndarray of shape (n_regions,)
        Mixing proportions π_j of the kept components (not renormalised).
    component : ndarray of shape (n_regions,), int64
        Index of each region's component in the fitted mixture.
    assignment : ndarray of shape (n_examples,), int64
        Region of each adversarial example the mixture was fitted on (its most
        probable component), or -1 when that component was dropped.
    source_label : ndarray of shape (n_examples,), int64
        Ground-truth label of each example's source image.
    predicted_label : ndarray of shape (n_examples,), int64
        Classifier prediction on each example's decode.
    n_classes : int
    """

    means: np.ndarray
    covariances: np.ndarray
    weights: np.ndarray
    component: np.ndarray
    assignment: np.ndarray
    source_label: np.ndarray
    predicted_label: np.ndarray
    n_classes: int

    def __len__(self) -> int:
        return len(self.means)

    @property
    def n_latent(self) -> int:
        return self.means.shape[1]

    @property
    def member_counts(self) -> np.ndarray:
        """Adversarial examples assigned to each region, shape (n_regions,)."""
        kept = self.assignment[self.assignment >= 0]
        return np.bincount(kept, minlength=len(self)).astype(np.int64)

    def members(self, k: int) -> np.ndarray:
        """Indices (into the fitted examples) of region ``k``'s members, shape (m,)."""
        k = self.check_region(k)
        return np.flatnonzero(self.assignment == k)

    def confusion(self, k: int) -> np.ndarray:
        """Source-class → predicted-class histogram of region ``k``'s members.

        Returns
        -------
        ndarray of shape (n_classes, n_classes), int64
            Entry [s, p] counts members whose source image has label s and
            whose decode the classifier predicts as p.
        """
        idx = self.members(k)
        hist = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        np.add.at(hist, (self.source_label[idx], self.predicted_label[idx]), 1)
        return hist

    def top_confusions(self, k: int, n: int = 3) -> list:
        """The ``n`` most frequent (source, predicted, count) triples of region ``k``."""
        hist = self.confusion(k)
        flat = np.argsort(hist, axis=None)[::-1][:n]
        return [(int(s), int(p), int(hist[s, p])) for s, p in
                zip(*np.unravel_index(flat, hist.shape)) if hist[s, p] > 0]

    def sample(self, k: int, n: int, *, tau: float = 0.5, seed: int = 0) -> np.ndarray:
        """Draw ``n`` latent codes from N(μ_k, τ Σ_k).

        Parameters
        ----------
        k : int
            Region index.
        n : int
            Number of codes.
        tau : float, default=0.5
            Sample diversity (paper: 0.5 for MNIST, 0.01 for SVHN/GTSRB).
        seed : int, default=0

        Returns
        -------
        ndarray of shape (n, n_latent), float32
        """
        k = self.check_region(k)
        n = check_int("n", n, low=1)
        tau = check_number("tau", tau, low=0, low_inclusive=False)
        rng = np.random.default_rng(check_seed("seed", seed))
        with np.errstate(over="ignore", invalid="ignore"):
            cov = tau * self.covariances[k]
            try:
                codes = rng.multivariate_normal(self.means[k], cov, size=n, method="cholesky")
            except np.linalg.LinAlgError as exc:
                raise ValueError(f"tau must keep τΣ of region {k} positive definite and finite; "
                                 f"got tau={tau!r} ({exc}).") from exc
            codes = codes.astype(np.float32)
        if not np.isfinite(codes).all():
            raise ValueError(f"tau must be small enough for finite samples of region {k}; "
                             f"got tau={tau!r}, which overflows.")
        return codes

    def decode(self, k: int, n: int, decoder: nn.Module, *, tau: float = 0.5,
               seed: int = 0, device="cpu") -> tuple:
        """Sample ``n`` codes of region ``k`` and decode them.

        Parameters
        ----------
        decoder : BetaVAE or any module with ``decode(z)``
            Maps codes (n, n_latent) to images (n, C, H, W).

        Returns
        -------
        codes : ndarray of shape (n, n_latent)
        images : Tensor of shape (n, C, H, W)
        """
        check_module("decoder", decoder)
        codes = self.sample(k, n, tau=tau, seed=seed)
        return codes, decode(decoder, torch.from_numpy(codes), device=device)

    def check_region(self, k) -> int:
        """``k`` as an int, or a ValueError naming ``region`` when it is not in ``[0, len)``."""
        return check_int("region", k, low=0, high=len(self) - 1)

    def to_npz(self) -> dict:
        """Arrays as a dict ready for ``np.savez``."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_npz(cls, data) -> "Regions":
        """Inverse of :meth:`to_npz`; ``data`` is a mapping such as ``np.load(path)``."""
        kw = {f: np.asarray(data[f]) for f in cls.__dataclass_fields__}
        kw["n_classes"] = int(kw["n_classes"])
        k, d = kw["means"].shape if kw["means"].ndim == 2 else (-1, -1)
        n = kw["assignment"].shape[0] if kw["assignment"].ndim == 1 else -1
        shapes = {"means": (k, d), "covariances": (k, d, d), "weights": (k,),
                  "component": (k,), "assignment": (n,), "source_label": (n,),
                  "predicted_label": (n,)}
        for f, shape in shapes.items():
            if kw[f].shape != shape or min(shape) < 0 or kw[f].dtype.kind not in "fiu":
                raise ValueError(f"{f} must be a numeric array of shape {shape} (regions: {k}, "
                                 f"latent: {d}, examples: {n}); got shape {kw[f].shape} and "
                                 f"dtype {kw[f].dtype}")
        if n and (kw["assignment"].min() < -1 or kw["assignment"].max() >= k):
            raise ValueError(f"assignment must hold regions in [-1, {k - 1}]; got values in "
                             f"[{kw['assignment'].min()}, {kw['assignment'].max()}]")
        return cls(**kw)

    def summary(self) -> list:
        """One dict per region: weight, member count and top confusions."""
        counts = self.member_counts
        return [dict(region=k, weight=float(self.weights[k]), members=int(counts[k]),
                     top_confusions=self.top_confusions(k)) for k in range(len(self))]
