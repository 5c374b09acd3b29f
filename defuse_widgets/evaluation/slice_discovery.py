"""Real-data slice discovery: the methods a user could run instead of Defuse.

Both methods look at the classifier on *real* validation images, through its
penultimate-layer features (:func:`classifier_outputs`):

* :class:`DominoMixture`: the error-aware mixture model of Domino (Eyuboglu
  et al., ICLR 2022), built from the paper's description: each slice s is a
  diagonal Gaussian over the (PCA-reduced) features × a categorical over the
  label y × a categorical over the prediction ŷ, the two categorical terms
  weighted by ``gamma``, fitted by EM. The ``n_slices`` components with the
  highest error rate are the slices.
* :class:`ErrorKMeans`: k-means over the features of the images the
  classifier gets wrong, the simplest alternative.

Both follow the scikit-learn estimator contract, with
``fit(features, y, probs)`` and ``predict_proba(features, y, probs)`` →
slice membership of shape (n, n_slices). This module imports no UI code.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from defuse_widgets._validation import (
    check_choice,
    check_images,
    check_int,
    check_module,
    check_number,
    check_seed,
    describe,
)
from defuse_widgets.models.inference import to_unit

__all__ = ["DominoMixture", "ErrorKMeans", "classifier_outputs"]


@torch.inference_mode()
def classifier_outputs(classifier: nn.Module, X: torch.Tensor, *,
                       batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate-layer features and softmax probabilities of ``classifier`` on ``X``.

    The features are the input of the classifier's last ``nn.Linear`` layer
    (for :class:`~defuse_widgets.models.MnistCNN`, the 128 ReLU units before
    ``fc2``), read with a forward hook in eval mode.

    Parameters
    ----------
    classifier : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes); has an ``nn.Linear``.
    X : Tensor of shape (n, C, H, W)
    batch_size : int, default=1024

    Returns
    -------
    features : ndarray of shape (n, d)
    probs : ndarray of shape (n, n_classes)
    """
    check_module("classifier", classifier)
    X = check_images("X", X)
    batch_size = check_int("batch_size", batch_size, low=1)
    linear = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError("classifier must have an nn.Linear layer whose input is the "
                         "penultimate features; found none.")
    seen = []
    hook = linear[-1].register_forward_hook(lambda m, inp, out: seen.append(inp[0].flatten(1)))
    was_training = classifier.training
    classifier.eval()
    dev = next(classifier.parameters()).device
    try:
        probs = [torch.softmax(classifier(to_unit(X[i:i + batch_size].to(dev))).float(), 1).cpu()
                 for i in range(0, len(X), batch_size)]
    finally:
        hook.remove()
        classifier.train(was_training)
    return (torch.cat(seen).float().cpu().numpy().astype(np.float64),
            torch.cat(probs).numpy().astype(np.float64))


def _check_inputs(features, y, probs, *, n_features: int | None = None,
                  n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (features (n, d), y (n,), probs (n, c)); return them as float/int arrays."""
    features, y, probs = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
                          for v in (features, y, probs))
    F = np.asarray(features, dtype=np.float64) if isinstance(features, np.ndarray) \
        else features
    if not isinstance(F, np.ndarray) or F.ndim != 2 or len(F) == 0 or not np.isfinite(F).all():
        raise ValueError(f"features must be a finite ndarray of shape (n_samples, n_features); "
                         f"got {describe(features)}.")
    if n_features is not None and F.shape[1] != n_features:
        raise ValueError(f"features must have {n_features} columns, as in fit; "
                         f"got {describe(features)}.")
    P = np.asarray(probs, dtype=np.float64) if isinstance(probs, np.ndarray) else probs
    if (not isinstance(P, np.ndarray) or P.shape[:1] != (len(F),) or P.ndim != 2
            or P.shape[1] < 2 or not np.isfinite(P).all() or (P < 0).any()
            or not np.allclose(P.sum(1), 1, atol=1e-4)):
        raise ValueError(f"probs must be class probabilities of shape ({len(F)}, n_classes), "
                         f"rows summing to 1; got {describe(probs)}.")
    if n_classes is not None and P.shape[1] != n_classes:
        raise ValueError(f"probs must have {n_classes} columns, as in fit; got {describe(probs)}.")
    lab = np.asarray(y) if isinstance(y, (np.ndarray, list, tuple)) else y
    if (not isinstance(lab, np.ndarray) or lab.shape != (len(F),)
            or not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0
            or lab.max() >= P.shape[1]):
        raise ValueError(f"y must hold integer labels in [0, {P.shape[1] - 1}] of shape "
                         f"({len(F)},); got {describe(y)}.")
    return F, lab.astype(np.int64), P


class DominoMixture:
    """Domino's error-aware mixture model over features, labels and predictions.

    The model: slice s ~ Cat(π); features z | s ~ N(μ_s, diag σ²_s);
    y | s ~ Cat(p_s); ŷ | s ~ Cat(p̂_s). EM maximises
    Σ_i log Σ_s π_s N(z_i; μ_s, σ²_s) p_s(y_i)^γ (probs_i · p̂_s)^γ; soft
    predictions enter the ŷ term as an expectation, as in the paper. The
    slices are the ``n_slices`` of ``n_components`` components with the
    highest expected error rate Σ_i r_is (1 − probs_i[y_i]) / Σ_i r_is on the
    fitted data.

    Parameters
    ----------
    n_slices : int, default=5
    n_components : int, default=25
        Mixture components k̄ (Domino's default).
    gamma : float, default=10.0
        Weight γ ≥ 0 of the y and ŷ log-likelihood terms (Domino's library
        default is 1; a larger weight keeps slices within one confusion cell).
    n_pca : int or None, default=128
        PCA components of the features (capped at n_samples and n_features);
        None skips PCA.
    init : {"confusion", "kmeans"}, default="confusion"
        "confusion": components are dealt round-robin to the confusion cells
        (y, argmax ŷ) of the data, most populous first, and start from the
        responsibilities of their cell plus uniform noise of scale
        ``confusion_noise``; "kmeans": from a k-means partition of the features.
    max_iter : int, default=100
    tol : float, default=1e-4
        Stop when the mean weighted log-likelihood improves by less.
    reg_covar : float, default=1e-4
        Added to every variance, relative to the mean feature variance.
    confusion_noise : float, default=1e-3
    seed : int, default=0

    Attributes
    ----------
    pca_ : sklearn PCA or None
    weights_ : ndarray of shape (n_components,)
    means_, variances_ : ndarray of shape (n_components, d)
    y_probs_, y_hat_probs_ : ndarray of shape (n_components, n_classes)
    error_rate_ : ndarray of shape (n_components,)
    slice_components_ : ndarray of shape (n_slices,)
        Components that are slices, highest error rate first.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float

    Examples
    --------
    >>> m = DominoMixture(n_slices=3).fit(features, y, probs)        # doctest: +SKIP
    >>> membership = m.predict_proba(features_test, y_test, probs_test)  # (n, 3)
    """

    def __init__(self, *, n_slices: int = 5, n_components: int = 25, gamma: float = 10.0,
                 n_pca: int | None = 128, init: str = "confusion", max_iter: int = 100,
                 tol: float = 1e-4, reg_covar: float = 1e-4, confusion_noise: float = 1e-3,
                 seed: int = 0):
        self.n_slices, self.n_components, self.gamma, self.n_pca = n_slices, n_components, \
            gamma, n_pca
        self.init, self.max_iter, self.tol, self.reg_covar = init, max_iter, tol, reg_covar
        self.confusion_noise, self.seed = confusion_noise, seed

    def _check_params(self) -> None:
        check_int("n_components", self.n_components, low=1)
        check_int("n_slices", self.n_slices, low=1, high=self.n_components)
        check_number("gamma", self.gamma, low=0)
        if self.n_pca is not None:
            check_int("n_pca", self.n_pca, low=1)
        check_choice("init", self.init, ("confusion", "kmeans"))
        check_int("max_iter", self.max_iter, low=1)
        check_number("tol", self.tol, low=0)
        check_number("reg_covar", self.reg_covar, low=0)
        check_number("confusion_noise", self.confusion_noise, low=0)
        check_seed("seed", self.seed)

    def fit(self, features, y, probs) -> "DominoMixture":
        """Fit the mixture to features (n, d), labels y (n,) and probabilities (n, n_classes)."""
        self._check_params()
        F, y, P = _check_inputs(features, y, probs)
        if len(F) < self.n_components:
            raise ValueError(f"features must have at least n_components={self.n_components} "
                             f"rows; got {describe(features)}.")
        self.n_features_in_, self.n_classes_ = F.shape[1], P.shape[1]
        self.pca_ = None
        if self.n_pca is not None:
            from sklearn.decomposition import PCA

            self.pca_ = PCA(min(self.n_pca, *F.shape), random_state=self.seed).fit(F)
            F = self.pca_.transform(F)
        self._reg = self.reg_covar * float(F.var(0).mean() or 1.0)
        Y = np.eye(self.n_classes_)[y]
        resp = self._init_resp(F, y, P)
        self.converged_, bound = False, -np.inf
        for it in range(1, self.max_iter + 1):   # noqa: B007 - read after the loop (n_iter_)
            self._m_step(F, Y, P, resp)
            log_resp, new = self._e_step(F, Y, P)
            resp = np.exp(log_resp)
            self.converged_, bound = abs(new - bound) < self.tol, new
            if self.converged_:
                break
        self.n_iter_, self.lower_bound_ = it, float(bound)
        self._m_step(F, Y, P, resp)
        nk = resp.sum(0) + 1e-12
        self.error_rate_ = resp.T @ (1.0 - P[np.arange(len(y)), y]) / nk
        self.slice_components_ = np.argsort(-self.error_rate_, kind="stable")[:self.n_slices]
        return self

    def _init_resp(self, F, y, P) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        K = self.n_components
        if self.init == "kmeans":
            from sklearn.cluster import KMeans

            lab = KMeans(K, n_init=3, random_state=self.seed).fit_predict(F)
            return np.eye(K)[lab]
        cell = y * self.n_classes_ + P.argmax(1)
        cells, counts = np.unique(cell, return_counts=True)
        order = cells[np.argsort(-counts, kind="stable")]
        of_component = order[np.arange(K) % len(order)]
        resp = (cell[:, None] == of_component[None]).astype(float)
        resp += rng.uniform(0, self.confusion_noise, size=resp.shape) + 1e-12
        return resp / resp.sum(1, keepdims=True)

    def _m_step(self, F, Y, P, resp) -> None:
        nk = resp.sum(0) + 1e-10
        self.weights_ = nk / nk.sum()
        self.means_ = resp.T @ F / nk[:, None]
        self.variances_ = np.maximum(resp.T @ F ** 2 / nk[:, None] - self.means_ ** 2, 0) \
            + self._reg
        self.y_probs_ = resp.T @ Y / nk[:, None]
        self.y_hat_probs_ = resp.T @ P / nk[:, None]

    def _log_joint(self, F, Y, P) -> np.ndarray:
        """Weighted log π_s p(z|s) p(y|s)^γ p(ŷ|s)^γ, shape (n, n_components)."""
        eps = np.finfo(float).eps
        prec = 1.0 / self.variances_
        gauss = -0.5 * (F ** 2 @ prec.T - 2 * F @ (self.means_ * prec).T
                        + (self.means_ ** 2 * prec).sum(1)
                        + np.log(2 * np.pi * self.variances_).sum(1))
        cat = np.log(Y @ self.y_probs_.T + eps) + np.log(P @ self.y_hat_probs_.T + eps)
        return np.log(self.weights_) + gauss + self.gamma * cat

    def _e_step(self, F, Y, P) -> tuple[np.ndarray, float]:
        from scipy.special import logsumexp

        lj = self._log_joint(F, Y, P)
        norm = logsumexp(lj, axis=1, keepdims=True)
        return lj - norm, float(norm.mean())

    def predict_proba(self, features, y, probs) -> np.ndarray:
        """Slice membership P(s | z, y, ŷ) of each image, shape (n, n_slices).

        Rows need not sum to 1: the other components take the rest.
        """
        if not hasattr(self, "slice_components_"):
            raise RuntimeError("DominoMixture is not fitted; call fit(features, y, probs) first.")
        F, y, P = _check_inputs(features, y, probs, n_features=self.n_features_in_,
                                n_classes=self.n_classes_)
        if self.pca_ is not None:
            F = self.pca_.transform(F)
        log_resp, _ = self._e_step(F, np.eye(self.n_classes_)[y], P)
        return np.exp(log_resp[:, self.slice_components_])


class ErrorKMeans:
    """k-means over the features of the images the classifier gets wrong.

    Parameters
    ----------
    n_slices : int, default=5
        Clusters (fewer when fewer errors).
    seed : int, default=0

    Attributes
    ----------
    kmeans_ : sklearn KMeans
    scale_ : float
        Mean squared distance of an error to its centroid (the temperature of
        :meth:`predict_proba`).
    n_errors_ : int
    """

    def __init__(self, *, n_slices: int = 5, seed: int = 0):
        self.n_slices, self.seed = n_slices, seed

    def fit(self, features, y, probs) -> "ErrorKMeans":
        """Cluster the rows of features (n, d) where argmax probs (n, c) differs from y (n,)."""
        from sklearn.cluster import KMeans

        check_int("n_slices", self.n_slices, low=1)
        check_seed("seed", self.seed)
        F, y, P = _check_inputs(features, y, probs)
        wrong = P.argmax(1) != y
        self.n_features_in_, self.n_classes_, self.n_errors_ = F.shape[1], P.shape[1], \
            int(wrong.sum())
        if not wrong.any():
            raise ValueError("probs must misclassify at least one image of y to cluster the "
                             "errors; the classifier got all of them right.")
        k = min(self.n_slices, self.n_errors_)
        self.kmeans_ = KMeans(k, n_init=10, random_state=self.seed).fit(F[wrong])
        self.scale_ = max(self.kmeans_.inertia_ / self.n_errors_, 1e-12)
        return self

    def transform(self, features) -> np.ndarray:
        """Distance of each row of features (n, d) to each centroid, shape (n, n_clusters)."""
        if not hasattr(self, "kmeans_"):
            raise RuntimeError("ErrorKMeans is not fitted; call fit(features, y, probs) first.")
        F = np.asarray(features, dtype=np.float64) if isinstance(features, np.ndarray) \
            else features
        if not isinstance(F, np.ndarray) or F.ndim != 2 or F.shape[1] != self.n_features_in_:
            raise ValueError(f"features must have shape (n, {self.n_features_in_}); "
                             f"got {describe(features)}.")
        return self.kmeans_.transform(F)

    def predict_proba(self, features, y=None, probs=None) -> np.ndarray:
        """Soft membership ``softmax(−d² / (2·scale_))`` over the clusters, shape (n, n_clusters).

        ``y`` and ``probs`` are ignored (accepted for a common signature).
        """
        from scipy.special import softmax

        return softmax(-self.transform(features) ** 2 / (2 * self.scale_), axis=1)
