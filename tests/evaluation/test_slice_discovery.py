"""Real-data slice discovery: Domino's error-aware mixture and k-means on errors."""
import numpy as np
import pytest
import torch

from benchmarks.harness.peers import best_slice_precision
from defuse_widgets.evaluation.slice_discovery import DominoMixture, ErrorKMeans, classifier_outputs
from defuse_widgets.models.inference import predict


def _errors_data(seed, n_class=120, n_err=40, d=6):
    """Three classes predicted right, plus two error clusters elsewhere in feature space.

    Cluster A: label 0 predicted 1; cluster B: label 2 predicted 0. Returns
    features (n, d), y (n,), probs (n, 3) and which cluster each row is in
    (0 none, 1 A, 2 B).
    """
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:5] * 8.0               # classes 0, 1, 2, then clusters A and B
    F, y, pred, which = [], [], [], []
    for c in range(3):
        F.append(centres[c] + rng.normal(size=(n_class, d)))
        y += [c] * n_class
        pred += [c] * n_class
        which += [0] * n_class
    for j, (lab, p) in enumerate(((0, 1), (2, 0))):
        F.append(centres[3 + j] + rng.normal(size=(n_err, d)))
        y += [lab] * n_err
        pred += [p] * n_err
        which += [j + 1] * n_err
    probs = np.full((len(y), 3), 0.05)
    probs[np.arange(len(y)), pred] = 0.9
    return np.concatenate(F), np.array(y), probs, np.array(which)


@pytest.mark.parametrize("init", ["confusion", "kmeans"])
def test_domino_recovers_two_planted_error_clusters(init):
    F, y, P, _ = _errors_data(0)
    m = DominoMixture(n_slices=2, n_components=6, n_pca=None, init=init, seed=0).fit(F, y, P)
    assert m.converged_ and m.weights_.shape == (6,) and m.means_.shape == (6, 6)
    assert np.allclose(m.y_probs_.sum(1), 1) and np.allclose(m.y_hat_probs_.sum(1), 1)
    assert (m.error_rate_[m.slice_components_] > 0.8).all()     # the two slices are the errors
    Ft, yt, Pt, which = _errors_data(1)
    S = m.predict_proba(Ft, yt, Pt)
    assert S.shape == (len(Ft), 2) and (S >= 0).all() and (S.sum(1) <= 1 + 1e-9).all()
    hit = np.stack([which == 1, which == 2], axis=1)
    res = best_slice_precision(S, hit, k=10)
    assert res["precision"] == [1.0, 1.0] and res["recovered"] == [True, True]
    assert sorted(res["best_slice"]) == [0, 1]                 # one slice per cluster


def test_domino_without_the_label_terms_misses_the_errors():
    """γ = 0 is a plain diagonal GMM: error slices are not preferred, so a test could fail."""
    F, y, P, _ = _errors_data(0)
    m = DominoMixture(n_slices=2, n_components=2, n_pca=None, gamma=0.0, seed=0).fit(F, y, P)
    assert m.error_rate_.max() < 0.8          # two components cannot isolate the errors


def test_domino_pca_and_bad_input():
    F, y, P, _ = _errors_data(0)
    m = DominoMixture(n_slices=1, n_components=4, n_pca=3).fit(F, y, P)
    assert m.pca_.n_components_ == 3 and m.means_.shape == (4, 3)
    with pytest.raises(ValueError, match="features must have 6 columns"):
        m.predict_proba(F[:, :5], y, P)
    with pytest.raises(ValueError, match="probs"):
        DominoMixture(n_components=4, n_slices=1).fit(F, y, P * 2)
    with pytest.raises(ValueError, match="y must hold integer labels"):
        DominoMixture(n_components=4, n_slices=1).fit(F, y + 5, P)
    with pytest.raises(ValueError, match="n_slices"):
        DominoMixture(n_slices=9, n_components=4).fit(F, y, P)
    with pytest.raises(ValueError, match="init"):
        DominoMixture(init="random").fit(F, y, P)
    with pytest.raises(ValueError, match="at least n_components"):
        DominoMixture(n_components=25).fit(F[:10], y[:10], P[:10])
    with pytest.raises(RuntimeError, match="not fitted"):
        DominoMixture().predict_proba(F, y, P)


def test_error_kmeans_clusters_only_the_errors():
    F, y, P, which = _errors_data(0)
    m = ErrorKMeans(n_slices=2, seed=0).fit(F, y, P)
    assert m.n_errors_ == 80
    Ft, yt, Pt, wt = _errors_data(1)
    S = m.predict_proba(Ft)
    assert S.shape == (len(Ft), 2) and np.allclose(S.sum(1), 1)
    hit = np.stack([wt == 1, wt == 2], axis=1)
    assert best_slice_precision(S, hit)["recovered"] == [True, True]
    assert best_slice_precision(-m.transform(Ft), hit)["precision"] == [1.0, 1.0]
    # fewer errors than slices: one cluster per error
    assert ErrorKMeans(n_slices=5).fit(F[-41:], y[-41:], P[-41:]).kmeans_.n_clusters == 5
    with pytest.raises(ValueError, match="misclassify at least one"):
        ErrorKMeans().fit(F[:100], y[:100], P[:100])
    with pytest.raises(ValueError, match="features must have shape"):
        m.transform(F[:, :2])


def test_classifier_outputs_are_the_last_linear_layers_input(digits, tiny_models):
    clf, _ = tiny_models
    X = digits.X_test[:50]
    feats, probs = classifier_outputs(clf, X, batch_size=16)
    assert feats.shape == (50, 128) and probs.shape == (50, 10)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(probs.argmax(1), predict(clf, X).numpy())
    logits = feats @ clf.fc2.weight.detach().double().numpy().T + clf.fc2.bias.detach().numpy()
    assert np.allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), probs, atol=1e-4)
    assert not clf._forward_hooks and not clf.fc2._forward_hooks      # the hook is removed
    with pytest.raises(ValueError, match="nn.Linear"):
        classifier_outputs(torch.nn.Sequential(torch.nn.Flatten()), X)
    with pytest.raises(ValueError, match="X must have shape"):
        classifier_outputs(clf, X[0])
