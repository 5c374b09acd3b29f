"""A vectorized Dirichlet-process Gaussian mixture (the fast distillation backend).

:class:`DPGaussianMixture` runs the same variational inference as scikit-learn's
``BayesianGaussianMixture(covariance_type="full",
weight_concentration_prior_type="dirichlet_process", init_params="kmeans")``:
the same priors and defaults, the same k-means initialisation (scikit-learn's
``KMeans`` driven by the same ``random_state``), the same E and M steps, the
same lower bound and the same ``abs(change) < tol`` stopping rule. With equal
``random_state`` it reaches the same mixture to rounding error.

What differs is how the work is laid out. scikit-learn loops over the K
components in Python for the Gaussian log-densities, the covariances and the
Cholesky factors; here each step is a few large matrix products over all
components at once:

* with ``Z = [1, x, triu(x x^T)]`` per code (shape (n, 1 + d + d(d+1)/2), the
  codes centred on their mean so that the expansion does not lose digits),
  every E-step log-density ``-(x - mu_k)^T P_k (x - mu_k) / 2 + const_k`` is one
  product ``Z @ W.T`` and every M-step statistic (counts, means, scatter
  matrices) is one product ``resp.T @ Z``;
* Cholesky factors, log-determinants, digamma and Wishart terms are batched over K.
* responsibilities are floored at ``tiny**0.75`` of the dtype (1e-231 in float64),
  which keeps the arithmetic out of slow subnormal numbers and changes nothing
  measurable.

It is written in torch so that the same code runs on CUDA (``device``). On the
2-core CPU it was also measured against NumPy/SciPy doing the same vectorized
steps (50,000 codes, K=100, one E+M step): NumPy 308 ms, torch 149 ms on one
thread (measured under load). The matrix products are BLAS in both; the
difference is the element-wise work on the (n, K) responsibilities (``exp``,
``logsumexp``), where torch's kernels are vectorized and fused better. So there
is one implementation, in torch.

Computation is float64 by default, as in scikit-learn. ``dtype="float32"`` is
about 3x faster again on CPU (50,000 codes: 1.9 s against 5.3 s, one thread,
under load) and agreed with float64 to ARI 0.9999 with the same held-out
log-likelihood, but it does not reproduce scikit-learn's iteration count (the
lower bound is always summed in float64).

Only the ``"full"`` covariance type and the ``"dirichlet_process"`` weight prior
are implemented: that is the model distillation uses.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from defuse_widgets._validation import (
    check_choice,
    check_codes,
    check_int,
    check_number,
    resolve_device,
)
from defuse_widgets.callbacks import Stopped


class DPGaussianMixture(DensityMixin, BaseEstimator):
    """Truncated Dirichlet-process mixture of full-covariance Gaussians (variational).

    Parameters
    ----------
    n_components : int, default=1
        Truncation level K (upper bound on the number of components).
    tol : float, default=1e-3
        Stop when the lower bound changes by less than ``tol`` in one iteration.
    reg_covar : float, default=1e-6
        Added to the diagonal of each component's sample covariance.
    max_iter : int, default=100
        Variational EM iterations per initialisation.
    n_init : int, default=1
        Initialisations; the one with the largest lower bound is kept.
    weight_concentration_prior : float or None, default=None
        Stick-breaking concentration; ``1 / n_components`` when None.
    mean_precision_prior : float or None, default=None
        Precision prior on the means; 1 when None.
    mean_prior : array-like of shape (n_features,) or None, default=None
        Prior on the means; the mean of X when None.
    degrees_of_freedom_prior : float or None, default=None
        Wishart degrees of freedom; ``n_features`` when None. Must exceed
        ``n_features - 1``.
    covariance_prior : array-like of shape (n_features, n_features) or None
        Wishart scale prior; the empirical covariance of X when None.
    random_state : int, RandomState or None, default=None
        Seeds the k-means initialisation exactly as in scikit-learn.
    device : str, torch.device or None, default=None
        Where to compute; CUDA when available, else CPU, when None.
    dtype : {"float64", "float32"}, default="float64"

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Expected mixing weights.
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray of shape (n_components, n_features, n_features)
    precisions_ : ndarray of shape (n_components, n_features, n_features)
    precisions_cholesky_ : ndarray of shape (n_components, n_features, n_features)
        Upper-triangular ``U`` with ``precisions_ = U @ U.T``, as in scikit-learn.
    weight_concentration_ : tuple of two ndarrays of shape (n_components,)
        Beta parameters of the stick-breaking weights.
    mean_precision_ : ndarray of shape (n_components,)
    degrees_of_freedom_ : ndarray of shape (n_components,)
    converged_ : bool
    n_iter_ : int
        Iterations of the best initialisation.
    lower_bound_ : float
        Lower bound of the best initialisation.
    lower_bounds_ : list of float
        Lower bound after each iteration of the best initialisation.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> gmm = DPGaussianMixture(n_components=5, random_state=0, device="cpu").fit(X)
    >>> gmm.predict(X).shape
    (500,)
    """

    def __init__(self, n_components: int = 1, *, tol: float = 1e-3, reg_covar: float = 1e-6,
                 max_iter: int = 100, n_init: int = 1, weight_concentration_prior=None,
                 mean_precision_prior=None, mean_prior=None, degrees_of_freedom_prior=None,
                 covariance_prior=None, random_state=None, device=None,
                 dtype: str = "float64"):
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, callback=None) -> "DPGaussianMixture":
        """Fit the mixture by variational EM.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : ignored
        callback : ProgressCallback, optional
            ``callback("distillation", iteration, max_iter)`` after every EM
            iteration; a True return raises :class:`~defuse_widgets.callbacks.Stopped`.

        Returns
        -------
        self
        """
        K = check_int("n_components", self.n_components, low=1)
        X = check_codes("X", X, min_rows=max(2, K))
        n, d = X.shape
        check_number("tol", self.tol, low=0)
        check_number("reg_covar", self.reg_covar, low=0)
        max_iter = check_int("max_iter", self.max_iter, low=0)
        n_init = check_int("n_init", self.n_init, low=1)
        check_choice("dtype", self.dtype, ["float64", "float32"])
        dev = self._dev = resolve_device(self.device)
        self._dt = getattr(torch, self.dtype)
        self._shift = torch.as_tensor(X.mean(axis=0), device=dev, dtype=torch.float64)
        self._set_priors(X)
        random_state = check_random_state(self.random_state)

        Z = self._features(X)
        best, best_lb, self.converged_ = None, -math.inf, False
        for _ in range(n_init):
            labels = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(X).labels_
            resp = torch.zeros((n, K), device=dev, dtype=self._dt)
            resp[torch.arange(n, device=dev), torch.as_tensor(labels, device=dev)] = 1
            self._m_step(Z, resp)
            lb, lbs, converged, n_iter = -math.inf, [], False, 0
            for n_iter in range(1, max_iter + 1):
                prev = lb
                resp, resp_log_resp = self._e_step(Z)
                self._m_step(Z, resp)
                lb = self._lower_bound(resp_log_resp)
                lbs.append(lb)
                if callback is not None and callback("distillation", n_iter, max_iter):
                    raise Stopped("distillation")
                if abs(lb - prev) < self.tol:
                    converged = True
                    break
            if lb > best_lb or best_lb == -math.inf:
                best_lb, best = lb, dict(self._state, n_iter=n_iter, lbs=lbs)
                self.converged_ = converged
        self._state = best
        self._publish()
        self.n_iter_, self.lower_bound_, self.lower_bounds_ = best["n_iter"], best_lb, best["lbs"]
        self.n_features_in_ = d
        return self

    def _set_priors(self, X: np.ndarray) -> None:
        n, d = X.shape
        wcp, mpp = self.weight_concentration_prior, self.mean_precision_prior
        self.weight_concentration_prior_ = (1.0 / self.n_components if wcp is None else
                                            check_number("weight_concentration_prior", wcp,
                                                         low=0, low_inclusive=False))
        self.mean_precision_prior_ = 1.0 if mpp is None else check_number(
            "mean_precision_prior", mpp, low=0, low_inclusive=False)
        if self.mean_prior is None:
            self.mean_prior_ = X.mean(axis=0)
        else:
            self.mean_prior_ = np.asarray(self.mean_prior, dtype=np.float64)
            if self.mean_prior_.shape != (d,):
                raise ValueError(f"mean_prior must have shape ({d},) to match X; got shape "
                                 f"{self.mean_prior_.shape}.")
        dof = self.degrees_of_freedom_prior
        self.degrees_of_freedom_prior_ = float(d) if dof is None else check_number(
            "degrees_of_freedom_prior", dof, low=d - 1, low_inclusive=False)
        if self.covariance_prior is None:
            self.covariance_prior_ = np.atleast_2d(np.cov(X.T))
        else:
            cov = np.asarray(self.covariance_prior, dtype=np.float64)
            if cov.shape != (d, d):
                raise ValueError(f"covariance_prior must have shape ({d}, {d}) to match X; "
                                 f"got shape {cov.shape}.")
            if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
                raise ValueError("covariance_prior must be symmetric positive-definite; got a "
                                 "matrix that is not.")
            self.covariance_prior_ = cov
        t = dict(device=self._dev, dtype=self._dt)
        self._m0 = (torch.as_tensor(self.mean_prior_, device=self._dev) - self._shift).to(**t)
        self._cov0 = torch.as_tensor(self.covariance_prior_, **t)
        self._ar = torch.arange(d, **t)

    # ------------------------------------------------------------- EM steps
    def _features(self, X: np.ndarray) -> torch.Tensor:
        """``[1, x, triu(x x^T)]`` of the centred codes: shape (n, 1 + d + d(d+1)/2).

        Every sufficient statistic of the M step is ``resp.T @ Z`` and every
        E-step log-density is ``Z @ W.T`` for a per-component ``W``.
        """
        Xc = torch.as_tensor(X, device=self._dev, dtype=torch.float64) - self._shift
        return torch.cat([Xc.new_ones((len(Xc), 1)), Xc, _outer_triu(Xc)], 1).to(self._dt)

    def _m_step(self, Z, resp) -> None:
        """Variational M step (Bishop 10.58-10.63 with scikit-learn's normalisation)."""
        d, K = self._ar.numel(), resp.shape[1]
        S = resp.T @ Z                                                            # (K, m)
        nk = S[:, 0] + 10 * torch.finfo(resp.dtype).eps                           # (K,)
        xk = S[:, 1:1 + d] / nk[:, None]                                          # (K, d)
        sk = _from_triu(S[:, 1 + d:] / nk[:, None], d) - xk[:, :, None] * xk[:, None, :]
        sk.diagonal(dim1=1, dim2=2).add_(self.reg_covar)
        tail = torch.flip(torch.cumsum(torch.flip(nk, (0,)), 0), (0,))           # sum_{j>=k}
        a, b = 1.0 + nk, self.weight_concentration_prior_ + (tail - nk)
        mpp = self.mean_precision_prior_
        mean_precision = mpp + nk
        means = (mpp * self._m0 + nk[:, None] * xk) / mean_precision[:, None]
        dof = self.degrees_of_freedom_prior_ + nk
        diff = xk - self._m0
        cov = (self._cov0 + nk[:, None, None] * sk
               + (nk * mpp / mean_precision)[:, None, None] * diff[:, :, None] * diff[:, None, :])
        cov = cov / dof[:, None, None]
        chol, info = torch.linalg.cholesky_ex(cov)
        if bool((info > 0).any()):
            raise ValueError("Fitting the mixture failed because some components have an "
                             "ill-defined covariance (for instance singleton or collapsed "
                             "samples). Decrease n_components, increase reg_covar, or scale X.")
        eye = torch.eye(d, device=cov.device, dtype=cov.dtype).expand(K, d, d)
        prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).mT     # upper U
        self._state = dict(a=a, b=b, mean_precision=mean_precision, means=means, dof=dof,
                           cov=cov, prec_chol=prec_chol)

    def _weighted_log_prob(self, Z) -> torch.Tensor:
        """E[log p(x | k)] + E[log w_k] of shape (n, K)."""
        s = self._state
        U, mu, dof = s["prec_chol"], s["means"], s["dof"]
        d = U.shape[1]
        P = U @ U.mT                                                             # (K, d, d)
        Pmu = (P @ mu[:, :, None])[..., 0]                                       # (K, d)
        muPmu = (Pmu * mu).sum(1)                                                # (K,)
        Pw = _triu_weights(P)                                                    # (K, d(d+1)/2)
        log_det = torch.log(torch.diagonal(U, dim1=1, dim2=2)).sum(1)           # (K,)
        digamma = torch.special.digamma
        log_lambda = d * math.log(2.0) + digamma(0.5 * (dof[:, None] - self._ar)).sum(1)
        a, b = s["a"], s["b"]
        dg_ab = digamma(a + b)
        cum = torch.cumsum(digamma(b) - dg_ab, 0)
        log_w = digamma(a) - dg_ab + torch.cat([cum.new_zeros(1), cum[:-1]])
        const = (-0.5 * d * math.log(2 * math.pi) + log_det - 0.5 * d * torch.log(dof)
                 + 0.5 * (log_lambda - d / s["mean_precision"]) + log_w - 0.5 * muPmu)
        # -(x - mu)^T P (x - mu) / 2 = -x^T P x / 2 + x^T P mu - mu^T P mu / 2
        return Z @ torch.cat([const[:, None], Pmu, -0.5 * Pw], 1).T

    def _e_step(self, Z) -> tuple[torch.Tensor, torch.Tensor]:
        """Responsibilities (n, K) and ``sum(resp * log(resp))`` (a float64 scalar)."""
        wlp = self._weighted_log_prob(Z)
        wlp -= wlp.amax(1, keepdim=True)
        # Floor responsibilities at tiny**0.75 (1e-29 in float32, 1e-231 in float64), far
        # from subnormal numbers: subnormal exp outputs, and the products of the M step
        # with them, are many times slower, above all in float32.
        wlp.clamp_(min=0.75 * math.log(torch.finfo(wlp.dtype).tiny))
        resp = wlp.exp()
        norm = resp.sum(1, keepdim=True)
        resp /= norm
        # sum_nk r log r = sum_nk r (wlp - log norm_n) = <r, wlp> - sum_n log norm_n
        # (row dot products in the working dtype, their sum in float64)
        r_wlp = torch.einsum("nk,nk->n", resp, wlp).sum(dtype=torch.float64)
        return resp, r_wlp - norm.log().sum(dtype=torch.float64)

    def _lower_bound(self, resp_log_resp) -> float:
        s = self._state
        d = self._ar.numel()
        dof = s["dof"].double()
        log_det = (torch.log(torch.diagonal(s["prec_chol"], dim1=1, dim2=2)).sum(1).double()
                   - 0.5 * d * torch.log(dof))
        log_wishart = -(dof * log_det + dof * d * 0.5 * math.log(2.0)
                        + torch.lgamma(0.5 * (dof[:, None] - self._ar.double())).sum(1)).sum()
        a, b = s["a"].double(), s["b"].double()
        log_norm_weight = -(torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)).sum()
        entropy = -resp_log_resp
        lb = (entropy - log_wishart - log_norm_weight
              - 0.5 * d * torch.log(s["mean_precision"].double()).sum())
        return float(lb)

    def _publish(self) -> None:
        """Copy the kept state to numpy attributes in the caller's coordinates."""
        s = self._state
        np_ = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
        a, b = np_(s["a"]), np_(s["b"])
        self.weight_concentration_ = (a, b)
        w = a / (a + b) * np.hstack((1.0, np.cumprod(b / (a + b))[:-1]))
        self.weights_ = w / w.sum()
        self.mean_precision_ = np_(s["mean_precision"])
        self.means_ = np_(s["means"]) + self._shift.cpu().numpy()
        self.degrees_of_freedom_ = np_(s["dof"])
        self.covariances_ = np_(s["cov"])
        self.precisions_cholesky_ = np_(s["prec_chol"])
        self.precisions_ = self.precisions_cholesky_ @ np.swapaxes(self.precisions_cholesky_,
                                                                   1, 2)

    # ------------------------------------------------------------- predict
    def _prepare(self, X) -> torch.Tensor:
        if not hasattr(self, "weights_"):
            raise NotFittedError("This DPGaussianMixture is not fitted yet; call fit first.")
        return self._features(check_codes("X", X, n_latent=self.n_features_in_))

    def score_samples(self, X) -> np.ndarray:
        """Per-sample log-likelihood, as in scikit-learn (logsumexp of the weighted E-step terms).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        return self._in_chunks(X, lambda f: torch.logsumexp(self._weighted_log_prob(f), 1)
                               .to("cpu", torch.float64).numpy())

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples` over X."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X) -> np.ndarray:
        """Posterior responsibilities, an ndarray of shape (n_samples, n_components)."""
        return self._in_chunks(X, lambda f: self._e_step(f)[0].to("cpu", torch.float64).numpy())

    def predict(self, X) -> np.ndarray:
        """Most probable component of each sample, an ndarray of shape (n_samples,)."""
        return self._in_chunks(X, lambda f: self._weighted_log_prob(f).argmax(1).cpu().numpy())

    def _in_chunks(self, X, fn, rows: int = 65_536) -> np.ndarray:
        """``fn`` on the features of ``rows`` samples at a time, concatenated.

        The features and the (n, K) log-probabilities of all of X at once took
        about 1.3 KB per sample: 1.6 GB more peak memory for 1.2M adversarial codes.
        """
        X = check_codes("X", X, n_latent=getattr(self, "n_features_in_", None))
        parts = [fn(self._prepare(X[i:i + rows])) for i in range(0, len(X), rows)]
        return np.concatenate(parts) if parts else fn(self._prepare(X))


# ---------------------------------------------------------------- helpers
def _triu_index(d: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.triu_indices(d, d, device=device))


def _outer_triu(X: torch.Tensor) -> torch.Tensor:
    """Upper triangle of every ``x x^T``: shape (n, d(d+1)/2)."""
    i, j = _triu_index(X.shape[1], X.device)
    return X[:, i] * X[:, j]


def _triu_weights(P: torch.Tensor) -> torch.Tensor:
    """Weights w with ``<triu(x x^T), w> = x^T P x``: the off-diagonal entries doubled."""
    i, j = _triu_index(P.shape[1], P.device)
    return P[:, i, j] * torch.where(i == j, 1.0, 2.0).to(P.dtype)


def _from_triu(T: torch.Tensor, d: int) -> torch.Tensor:
    """Symmetric (K, d, d) matrices from their upper triangles of shape (K, d(d+1)/2)."""
    i, j = _triu_index(d, T.device)
    out = T.new_zeros((T.shape[0], d, d))
    out[:, i, j] = T
    out[:, j, i] = T
    return out
