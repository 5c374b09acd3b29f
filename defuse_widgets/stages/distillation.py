"""Distillation (paper §3.2): a Dirichlet-process GMM over adversarial codes."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from defuse_widgets._validation import (
    check_choice,
    check_codes,
    check_int,
    check_labels,
    check_number,
    check_seed,
    resolve_device,
)
from defuse_widgets.callbacks import Stopped
from defuse_widgets.stages.identification import AdversarialExamples
from defuse_widgets.stages.regions import Regions
from defuse_widgets.stages.vbgmm import DPGaussianMixture

#: Mixture implementations ``Distiller(backend=...)`` accepts.
BACKENDS = ("torch", "sklearn")


class Distiller(BaseEstimator):
    """Learn misclassification regions from unrestricted adversarial examples.

    Fits a variational Gaussian mixture with a (truncated stick-breaking)
    Dirichlet-process prior and full covariances, then keeps the components
    whose weight exceeds ``eps``. Two backends fit the same model with the same
    k-means initialisation: scikit-learn's ``BayesianGaussianMixture`` and
    :class:`~defuse_widgets.stages.vbgmm.DPGaussianMixture`, a vectorized torch
    version of the same updates that runs on CUDA when asked.

    Parameters
    ----------
    n_components : int, default=100
        Upper bound K on the number of mixture components.
    eps : float, default=0.01
        Components with weight ≤ eps are dropped.
    max_samples : int or None, default=50000
        Random down-sampling of the codes before fitting (the paper uses 50,000).
    max_iter : int, default=500
    n_init : int, default=1
    tol : float, default=1e-3
    seed : int, default=0
    backend : {"torch", "sklearn"}, default="torch"
        ``"torch"`` fits :class:`~defuse_widgets.stages.vbgmm.DPGaussianMixture`;
        ``"sklearn"`` fits ``sklearn.mixture.BayesianGaussianMixture``. Both
        reach the same mixture to rounding error (same iterations, same
        regions); on the shipped models' adversarial codes (10k and 50k, K=100)
        ``"torch"`` was 21x and 15x faster on an idle 2-core CPU
        (``benchmarks/stages.py``).
    device : str, torch.device or None, default=None
        Device of the ``"torch"`` backend; CUDA when available, else CPU, when
        None. Ignored by ``"sklearn"``.

    Attributes
    ----------
    mixture_ : BayesianGaussianMixture or DPGaussianMixture
        The fitted mixture (``weights_``, ``means_``, ``covariances_``,
        ``predict``, ``score`` in both).
    regions_ : Regions
        Kept components, with every input example assigned to one.
    fit_index_ : ndarray of shape (n_fit,)
        Indices of the examples the mixture was fitted on.
    converged_ : bool
    n_iter_ : int

    Examples
    --------
    >>> distiller = Distiller(n_components=100, eps=0.01).fit(  # doctest: +SKIP
    ...     adversarial, n_classes=10)
    >>> len(distiller.regions_)  # doctest: +SKIP
    """

    def __init__(self, *, n_components: int = 100, eps: float = 0.01,
                 max_samples: int | None = 50000, max_iter: int = 500, n_init: int = 1,
                 tol: float = 1e-3, seed: int = 0, backend: str = "torch",
                 device=None):
        self.n_components = n_components
        self.eps = eps
        self.max_samples = max_samples
        self.max_iter = max_iter
        self.n_init = n_init
        self.tol = tol
        self.seed = seed
        self.backend = backend
        self.device = device

    def fit(self, X, *, source_label=None, predicted_label=None,
            n_classes: int | None = None, callback=None) -> "Distiller":
        """Fit the mixture to adversarial codes.

        Parameters
        ----------
        X : AdversarialExamples or ndarray of shape (n_examples, n_latent)
            With an :class:`AdversarialExamples`, labels are taken from it.
        source_label, predicted_label : ndarray of shape (n_examples,), optional
            Labels for the per-region confusion histograms when X is an array.
        n_classes : int, optional
            Number of classes (the classifier's output width). Required with
            labels (always with AdversarialExamples): the labels present need
            not include the highest class. Without labels, 1.
        callback : ProgressCallback, optional
            ``callback("distillation", iteration, max_iter)`` after every EM
            iteration of the torch backend (the sklearn backend reports once, at
            the end); a True return raises :class:`~defuse_widgets.callbacks.Stopped`
            and leaves the distiller unfitted.

        Returns
        -------
        self
        """
        if isinstance(X, AdversarialExamples):
            source_label, predicted_label, X = X.true_label, X.predicted_label, X.codes
        K = check_int("n_components", self.n_components, low=1)
        eps = check_number("eps", self.eps, low=0, high=1, high_inclusive=False)
        if self.max_samples is not None:
            check_int("max_samples", self.max_samples, low=1)
        check_int("max_iter", self.max_iter, low=1)
        check_int("n_init", self.n_init, low=1)
        check_number("tol", self.tol, low=0)
        check_seed("seed", self.seed)
        backend = check_choice("backend", self.backend, BACKENDS)
        if backend == "torch":
            resolve_device(self.device)
        if n_classes is None and (source_label is not None or predicted_label is not None):
            raise TypeError("n_classes must be given with labels (the classifier's number of "
                            "outputs); got None. It is not inferred from the labels, which "
                            "may miss the highest class.")
        n_classes = 1 if n_classes is None else check_int("n_classes", n_classes, low=1)
        if isinstance(X, np.ndarray) and X.ndim == 2 and len(X) == 0:
            raise ValueError("X must hold at least one adversarial example; got an empty set "
                             "(identification found no misclassified decodes: try a larger Q "
                             "or a, b that perturb more).")
        z = check_codes("X", X, min_rows=1)
        n = len(z)
        src = np.zeros(n, np.int64) if source_label is None else check_labels(
            "source_label", source_label, n_samples=n, n_classes=n_classes).numpy()
        pred = np.zeros(n, np.int64) if predicted_label is None else check_labels(
            "predicted_label", predicted_label, n_samples=n, n_classes=n_classes).numpy()
        if min(src.min(), pred.min()) < 0:
            raise ValueError(f"source_label and predicted_label must hold class indices >= 0; "
                             f"got {int(min(src.min(), pred.min()))}.")

        rng = np.random.default_rng(self.seed)
        if self.max_samples is not None and n > self.max_samples:
            fit_index = np.sort(rng.choice(n, self.max_samples, replace=False))
        else:
            fit_index = np.arange(n)
        if len(fit_index) < K:
            raise ValueError(f"X must hold at least n_components={K} codes to fit the mixture; "
                             f"got {len(fit_index)}. Lower n_components or find more "
                             "adversarial examples.")
        if backend == "torch":
            self.mixture_ = DPGaussianMixture(
                n_components=K, max_iter=self.max_iter, n_init=self.n_init, tol=self.tol,
                random_state=self.seed, device=self.device)
        else:
            self.mixture_ = BayesianGaussianMixture(
                n_components=K, covariance_type="full",
                weight_concentration_prior_type="dirichlet_process",
                max_iter=self.max_iter, n_init=self.n_init, tol=self.tol,
                random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if backend == "torch":
                self.mixture_.fit(z[fit_index], callback=callback)
            else:
                self.mixture_.fit(z[fit_index])
                if callback is not None and callback("distillation", 1, 1):
                    raise Stopped("distillation")
        self.fit_index_ = fit_index
        self.converged_ = bool(self.mixture_.converged_)
        self.n_iter_ = int(self.mixture_.n_iter_)
        self.regions_ = self._regions(z, src, pred, eps, n_classes)
        return self

    def _regions(self, z, src, pred, eps, n_classes) -> Regions:
        mix = self.mixture_
        kept = np.flatnonzero(mix.weights_ > eps)
        order = kept[np.argsort(-mix.weights_[kept], kind="stable")]
        remap = np.full(mix.n_components, -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        assignment = remap[mix.predict(z)]
        return Regions(means=mix.means_[order].copy(), covariances=mix.covariances_[order].copy(),
                       weights=mix.weights_[order].copy(), component=order.astype(np.int64),
                       assignment=assignment, source_label=src, predicted_label=pred,
                       n_classes=n_classes)


def distill(adversarial, *, source_label=None, predicted_label=None, n_classes=None,
            **params) -> Regions:
    """Shortcut for ``Distiller(**params).fit(adversarial, ...).regions_``."""
    return Distiller(**params).fit(adversarial, source_label=source_label,
                                   predicted_label=predicted_label, n_classes=n_classes).regions_
