"""cleanlab's label issues on out-of-fold probabilities, scored on known flipped labels."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from benchmarks.harness.planted import BugSpec, plant_bugs
from defuse_widgets.evaluation.label_issues import (
    cleanlab_label_issues,
    label_issue_scores,
    out_of_fold_probs,
)


def _pixels(d):
    return torch.cat([d.X_train, d.X_val, d.X_test]).flatten(1).numpy()


@pytest.fixture(scope="module")
def flipped():
    """Sklearn digits with 5% of labels flipped to another class, seeded."""
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    flip = rng.choice(len(y), size=len(y) // 20, replace=False)
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, 10, len(flip))) % 10
    return X / 16.0, noisy, np.sort(flip)


def test_cleanlab_flags_flipped_labels(flipped):
    X, noisy, flip = flipped
    oof = out_of_fold_probs(X, noisy, estimator=LogisticRegression(max_iter=500), n_folds=3)
    assert oof.shape == (len(noisy), 10) and np.allclose(oof.sum(1), 1)
    flagged = cleanlab_label_issues(noisy, oof)
    scores = label_issue_scores(flagged, [flip], n_train=len(noisy))
    assert scores["recall"] > 0.7 and scores["precision"] > 0.7     # flagging at random: 0.05
    assert scores["n_flagged"] == len(flagged)
    assert scores["per_bug"][0]["n_mislabelled"] == len(flip)
    # ranked: the least self-confident first
    conf = oof[flagged, noisy[flagged]]
    assert np.all(np.diff(conf) >= -1e-12)


def test_label_issue_scores_hand_case():
    s = label_issue_scores([1, 2, 3, 10, 10], [np.array([1, 2, 5, 6]), np.array([10, 11])])
    assert (s["n_flagged"], s["n_true"]) == (4, 3)
    assert s["precision"] == 0.75 and s["recall"] == 0.5
    assert [b["n_flagged"] for b in s["per_bug"]] == [2, 1]
    assert label_issue_scores([], [np.array([1])])["precision"] == 0.0
    with pytest.raises(ValueError, match="flagged"):
        label_issue_scores([5], [np.array([1])], n_train=3)
    with pytest.raises(TypeError, match="flagged"):
        label_issue_scores([0.5], [np.array([1])])


def test_label_issue_scores_counts_only_mislabelled_bugs(digits):
    planted = plant_bugs(digits, (BugSpec(3, "rare"), BugSpec(8, "mislabelled", target_label=1)),
                         features=_pixels(digits), n_styles=3, seed=0)
    mis = planted.bugs[1]
    s = label_issue_scores(mis.train_index[:5], planted.bugs)
    assert len(s["per_bug"]) == 1 and s["per_bug"][0]["name"] == mis.name
    assert s["n_true"] == 5 and s["precision"] == 1.0


def test_out_of_fold_cnn_and_bad_input(digits):
    X, y = digits.X_train, digits.y_train
    oof = out_of_fold_probs(X, y, n_folds=2, epochs=3, seed=0)
    assert oof.shape == (len(y), 10) and np.allclose(oof.sum(1), 1)
    assert (oof.argmax(1) == y.numpy()).mean() > 0.5           # chance: 0.1
    with pytest.raises(ValueError, match="X must be features"):
        out_of_fold_probs(X, y, estimator=LogisticRegression())
    with pytest.raises(ValueError, match="n_folds"):
        out_of_fold_probs(X, y, n_folds=1)
    with pytest.raises(ValueError, match="y must have length"):
        out_of_fold_probs(X, y[:10])
    with pytest.raises(ValueError, match="pred_probs"):
        cleanlab_label_issues(y.numpy(), oof[:10])
    with pytest.raises(ValueError, match="filter_by"):
        cleanlab_label_issues(y.numpy(), oof, filter_by="magic")
