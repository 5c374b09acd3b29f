import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture

from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.vbgmm import DPGaussianMixture

K = 20


def _codes(n=2000, d=6, n_blobs=5, seed=0):
    """``n`` codes from ``n_blobs`` anisotropic Gaussians, plus 400 held-out codes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, d)) * 4
    mix = rng.normal(size=(n_blobs, d, d)) * 0.5
    label = rng.integers(n_blobs, size=n + 400)
    z = centres[label] + np.einsum("ni,nij->nj", rng.normal(size=(n + 400, d)), mix[label])
    return z[:n], z[n:]


@pytest.fixture(scope="module")
def fitted():
    X, held = _codes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = BayesianGaussianMixture(n_components=K, covariance_type="full",
                                      weight_concentration_prior_type="dirichlet_process",
                                      max_iter=500, random_state=0).fit(X)
    ours = DPGaussianMixture(n_components=K, max_iter=500, random_state=0, device="cpu").fit(X)
    return X, held, ref, ours


def test_matches_sklearn_on_the_quality_targets(fitted):
    X, held, ref, ours = fitted
    assert adjusted_rand_score(ref.predict(X), ours.predict(X)) >= 0.9
    ll_ref, ll_ours = ref.score(held), ours.score(held)
    assert abs(ll_ours - ll_ref) <= 0.01 * abs(ll_ref)
    kept_ref, kept_ours = (ref.weights_ > 0.01).sum(), (ours.weights_ > 0.01).sum()
    assert abs(kept_ours - kept_ref) <= 0.2 * kept_ref
    np.testing.assert_allclose(ours.weights_, ref.weights_, atol=1e-3)


def test_same_updates_as_sklearn_to_rounding(fitted):
    X, held, ref, ours = fitted
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(ours.means_, ref.means_, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, atol=1e-8)
    np.testing.assert_allclose(ours.precisions_cholesky_, ref.precisions_cholesky_, atol=1e-6)
    np.testing.assert_allclose(ours.degrees_of_freedom_, ref.degrees_of_freedom_, rtol=1e-9)
    np.testing.assert_allclose(ours.score_samples(held), ref.score_samples(held), rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(held), ref.predict_proba(held), atol=1e-8)


def test_fitted_attributes_have_documented_shapes(fitted):
    X, _, _, ours = fitted
    d = X.shape[1]
    assert ours.weights_.shape == (K,) and ours.weights_.sum() == pytest.approx(1)
    assert ours.means_.shape == (K, d)
    assert ours.covariances_.shape == ours.precisions_cholesky_.shape == (K, d, d)
    np.testing.assert_allclose(ours.precisions_ @ ours.covariances_,
                               np.broadcast_to(np.eye(d), (K, d, d)), atol=1e-8)
    assert np.allclose(np.tril(ours.precisions_cholesky_, -1), 0)   # upper, as in sklearn
    assert ours.predict_proba(X).shape == (len(X), K)
    np.testing.assert_allclose(ours.predict_proba(X).sum(1), 1)
    assert ours.predict(X).dtype.kind == "i" and ours.n_features_in_ == d
    assert isinstance(ours.converged_, bool) and isinstance(ours.lower_bound_, float)


def test_float32_stays_close():
    X, held = _codes(n=800, seed=1)
    f64 = DPGaussianMixture(n_components=8, random_state=0, device="cpu").fit(X)
    f32 = DPGaussianMixture(n_components=8, random_state=0, device="cpu", dtype="float32").fit(X)
    assert adjusted_rand_score(f64.predict(X), f32.predict(X)) >= 0.99
    assert f32.score(held) == pytest.approx(f64.score(held), rel=1e-3)


def test_estimator_contract():
    gmm = DPGaussianMixture(n_components=3, random_state=1, device="cpu")
    assert clone(gmm).get_params() == gmm.get_params()
    with pytest.raises(NotFittedError):
        gmm.predict(np.zeros((2, 2)))
    X, _ = _codes(n=300, d=2, n_blobs=2)
    assert gmm.fit(X) is gmm
    with pytest.raises(ValueError, match=r"X must have 2 latent dimensions; got array of "
                                         r"shape \(4, 3\)"):
        gmm.predict(np.zeros((4, 3)))


@pytest.mark.parametrize("kw, match", [
    (dict(n_components=0), r"n_components must be >= 1; got 0"),
    (dict(max_iter=-1), r"max_iter must be >= 0; got -1"),
    (dict(n_init=0), r"n_init must be >= 1; got 0"),
    (dict(tol=-1.0), r"tol must be >= 0; got -1.0"),
    (dict(dtype="float16"), r"dtype must be one of \['float64', 'float32'\]; got 'float16'"),
    (dict(device="tpu"), r"device must be 'cpu', 'cuda', 'cuda:N' or None; got 'tpu'"),
    (dict(degrees_of_freedom_prior=0.5), r"degrees_of_freedom_prior must be > 1; got 0.5"),
    (dict(mean_prior=[0, 0, 0]), r"mean_prior must have shape \(2,\) to match X; got shape"),
    (dict(covariance_prior=-np.eye(2)), r"covariance_prior must be symmetric positive"),
    (dict(n_components=400), r"X must hold at least 400 codes; got 300"),
])
def test_bad_parameters(kw, match):
    X, _ = _codes(n=300, d=2, n_blobs=2)
    with pytest.raises(ValueError, match=match):
        DPGaussianMixture(**{"n_components": 3, "device": "cpu", **kw}).fit(X)


def test_nan_codes():
    X, _ = _codes(n=300, d=2, n_blobs=2)
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="X must not contain NaN or inf; got 1 rows"):
        DPGaussianMixture(n_components=3, device="cpu").fit(X)


def test_distiller_backends_agree():
    X, _ = _codes(n=1500)
    src = np.arange(len(X)) % 10
    fits = {b: Distiller(n_components=K, eps=0.01, backend=b, device="cpu").fit(
        X, source_label=src, predicted_label=(src + 1) % 10, n_classes=10)
        for b in ("sklearn", "torch")}
    ours, ref = fits["torch"], fits["sklearn"]
    assert isinstance(ours.mixture_, DPGaussianMixture)
    assert isinstance(ref.mixture_, BayesianGaussianMixture)
    assert len(ours.regions_) == len(ref.regions_)
    np.testing.assert_array_equal(ours.regions_.assignment, ref.regions_.assignment)
    np.testing.assert_allclose(ours.regions_.weights, ref.regions_.weights, atol=1e-8)
    np.testing.assert_allclose(ours.regions_.means, ref.regions_.means, atol=1e-8)
    assert ours.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("kw, match", [
    (dict(backend="cuml"), r"backend must be one of \['torch', 'sklearn'\]; got 'cuml'"),
    (dict(backend="torch", device="gpu0"), r"device must be 'cpu', 'cuda', 'cuda:N' or None"),
])
def test_distiller_bad_backend(kw, match):
    X, _ = _codes(n=300, d=2, n_blobs=2)
    with pytest.raises(ValueError, match=match):
        Distiller(n_components=3, **kw).fit(X)
