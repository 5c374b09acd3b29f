"""The shared metric, Defuse's region scores and the peer comparison runner."""
import json

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch import nn

from benchmarks.harness.peers import (
    best_slice_precision,
    compare_peers,
    defuse_region_scores,
    evaluation_pool,
    precision_at_k,
)
from benchmarks.harness.planted import BugSpec, plant_bugs
from defuse_widgets.stages.regions import Regions


@pytest.fixture(scope="module")
def planted(digits):
    X = torch.cat([digits.X_train, digits.X_val, digits.X_test]).flatten(1).numpy()
    bugs = (BugSpec(3, "rare"), BugSpec(8, "mislabelled", target_label=1))
    return plant_bugs(digits, bugs, features=X, n_styles=3, seed=0)


def _regions(means, weights=None):
    means = np.asarray(means, float)
    n, d = means.shape
    return Regions(means, np.stack([np.eye(d)] * n),
                   np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float),
                   np.arange(n), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), 10)


class PixelCodes(nn.Module):
    """A stand-in VAE whose latent mean is the first two pixels, 0.25 + z / 20, read back."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Linear(1, 1)

    def encode(self, x):
        z = (x.flatten(1)[:, :2] - 0.25) * 20
        return z, torch.zeros_like(z)


def test_precision_at_k_hand_made_case():
    rng = np.random.default_rng(0)
    hit = np.zeros((200, 2), bool)
    hit[:20, 0] = True                          # bug 0: the first 20 images
    hit[20:30, 1] = True                        # bug 1: the next 10
    ranks_bug0 = np.where(hit[:, 0], 10.0, 0.0) + rng.random(200)
    random = rng.random(200)
    S = np.stack([ranks_bug0, random], axis=1)
    P = precision_at_k(S, hit, k=10)
    assert P.shape == (2, 2)
    assert P[0, 0] == 1.0 and P[0, 1] == 0.0    # the bug-0 slice ranks bug 0 first
    assert P[1, 0] <= 0.3                       # a random slice: about 0.1
    res = best_slice_precision(S, hit, k=10, min_precision=0.5)
    assert res["precision"][0] == 1.0 and res["best_slice"][0] == 0
    assert res["recovered"] == [True, False] and res["recovered_fraction"] == 0.5
    # the threshold is a parameter
    assert best_slice_precision(S, hit, min_precision=1.0)["recovered"] == [True, False]
    # tied scores are broken in a seeded random order, not by pool position
    flat = np.zeros((200, 1))
    assert precision_at_k(flat, hit, k=10)[0, 0] < 0.5
    assert np.array_equal(precision_at_k(flat, hit, seed=3), precision_at_k(flat, hit, seed=3))
    # no slice: nothing recovered
    none = best_slice_precision(np.zeros((200, 0)), hit)
    assert none["precision"] == [0.0, 0.0] and none["best_slice"] == [-1, -1]


def test_metric_bad_input_names_the_parameter():
    hit = np.zeros((5, 1), bool)
    with pytest.raises(ValueError, match="scores"):
        precision_at_k(np.zeros(5), hit)
    with pytest.raises(ValueError, match="scores"):
        precision_at_k(np.full((5, 1), np.nan), hit)
    with pytest.raises(ValueError, match="hit"):
        precision_at_k(np.zeros((5, 1)), np.zeros((4, 1), bool))
    with pytest.raises(ValueError, match="hit"):
        precision_at_k(np.zeros((5, 1)), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(np.zeros((5, 1)), hit, k=0)
    with pytest.raises(ValueError, match="min_precision"):
        best_slice_precision(np.zeros((5, 1)), hit, min_precision=0)


def test_evaluation_pool_is_test_plus_held_out(planted):
    X, y, hit = evaluation_pool(planted)
    n_test = len(planted.splits.y_test)
    sizes = [len(b.held_out) for b in planted.bugs]
    assert len(X) == len(y) == len(hit) == n_test + sum(sizes)
    assert hit.sum(0).tolist() == sizes and not hit[:n_test].any()
    assert hit.sum(1).max() == 1
    for b, bug in enumerate(planted.bugs):
        assert (y[hit[:, b]] == bug.source_class).all()
        assert torch.equal(X[hit[:, b]], planted.held_out(b)[0])
    with pytest.raises(TypeError, match="planted"):
        evaluation_pool(planted.splits)


def test_defuse_region_scores_rank_images_by_their_codes():
    z = torch.zeros(40, 1, 4, 4)
    z[20:, 0, 0, :2] = 5.0                      # codes (5, 5) for the last 20
    z += 0.3 * torch.randn(z.shape)
    X = 0.25 + z / 20                           # pixels in [0, 1] that PixelCodes reads back
    regions = _regions([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]], weights=[0.2, 0.5, 0.3])
    vae = PixelCodes()
    L = defuse_region_scores(regions, vae, X)
    z = vae.encode(X)[0].double().numpy()
    assert L.shape == (40, 3)
    assert np.allclose(L[:, 1], multivariate_normal([5, 5], np.eye(2)).logpdf(z))
    hit = np.zeros((40, 1), bool)
    hit[20:] = True
    assert best_slice_precision(L, hit)["best_slice"] == [1]
    R = defuse_region_scores(regions, vae, X, score="responsibility")
    assert np.allclose(R.sum(1), 1) and (R[20:, 1] > 0.9).all()
    A = defuse_region_scores(regions, vae, X, accepted=np.array([True, False, True]))
    assert np.array_equal(A, L[:, [0, 2]])
    with pytest.raises(ValueError, match="accepted"):
        defuse_region_scores(regions, vae, X, accepted=[1, 0, 1])
    with pytest.raises(ValueError, match="score"):
        defuse_region_scores(regions, vae, X, score="distance")
    with pytest.raises(TypeError, match="regions"):
        defuse_region_scores(regions.means, vae, X)
    with pytest.raises(ValueError, match="latent"):
        defuse_region_scores(_regions(np.zeros((2, 3))), vae, X)


def test_compare_peers_is_json_safe_and_scores_every_method(planted, tiny_models):
    clf, vae = tiny_models
    regions = _regions(np.random.default_rng(0).normal(size=(3, 4)))
    accepted = np.array([True, False, True])
    wrong = planted.bugs[1].train_index
    logs = []
    res = compare_peers(planted, clf, vae, regions, accepted, n_slices=3, n_components=6,
                        n_folds=2, epochs=1, label_review=wrong[:4], log=logs.append)
    json.dumps(res, allow_nan=False)
    assert res["bugs"] == [b.name for b in planted.bugs] and res["k"] == 10
    assert set(res["slices"]) == {"domino", "kmeans_errors", "domino_clean_labels",
                                  "kmeans_errors_clean_labels", "defuse", "defuse_accepted"}
    assert res["slices"]["defuse"]["n_slices"] == 3
    assert res["slices"]["defuse_accepted"]["n_slices"] == 2
    assert res["slices"]["domino"]["n_slices"] == 3
    for r in res["slices"].values():
        assert len(r["precision"]) == 2 and all(0 <= p <= 1 for p in r["precision"])
    review = res["label_issues"]["label_review"]
    assert review["n_true"] == 4 and review["precision"] == 1.0
    cl = res["label_issues"]["cleanlab"]
    assert {"precision", "recall", "per_bug", "oof_accuracy", "seconds"} <= set(cl)
    assert len(cl["per_bug"]) == 1                           # only the mislabelled bug
    assert len(res["pool"]["class_share"]) == 2 and len(logs) == 7
    # precomputed probabilities and a label review given as its stats
    oof = np.eye(10)[planted.splits.y_train.numpy()] * 0.9 + 0.01
    again = compare_peers(planted, clf, None, n_slices=3, n_components=6, oof_probs=oof,
                          label_review={"precision": 0.5, "recall": 0.25, "n_true": 1},
                          log=logs.append)
    assert "defuse" not in again["slices"] and again["label_issues"]["cleanlab"]["n_true"] == 0
    assert again["label_issues"]["label_review"]["precision"] == 0.5
    with pytest.raises(ValueError, match="vae"):
        compare_peers(planted, clf, None, regions)
    with pytest.raises(TypeError, match="planted"):
        compare_peers(planted.splits, clf, vae)
