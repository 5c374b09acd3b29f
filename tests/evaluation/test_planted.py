"""Planted bugs: planting records indices, never leaks held-out images, scores correctly."""
import numpy as np
import pytest
import torch

from benchmarks.harness.planted import BugSpec, PlantedData, plant_bugs, sub_styles
from benchmarks.harness.planted_eval import (
    EnsembleOracle,
    KnnOracle,
    identification_precision,
)
from benchmarks.harness.planted_scores import bug_purity, bug_recall
from defuse_widgets.workflow import DefuseConfig

BUGS = (BugSpec(3, "rare"), BugSpec(8, "mislabelled", target_label=1))


def _features(d):
    X = torch.cat([d.X_train, d.X_val, d.X_test])
    return X.flatten(1).numpy()


@pytest.fixture(scope="module")
def planted(digits):
    return plant_bugs(digits, BUGS, features=_features(digits), n_styles=3, seed=0)


def _rows(X):
    return {x.numpy().tobytes() for x in X}


def test_plant_records_indices_and_labels(planted, digits):
    assert isinstance(planted, PlantedData) and len(planted.bugs) == 2
    rare, mis = planted.bugs
    for b in planted.bugs:
        parts = np.concatenate([b.held_out, b.planted, b.dropped])
        assert np.array_equal(np.sort(parts), np.sort(b.members))   # a partition of the style
        assert (planted.y_pool[b.members] == b.source_class).all()
        # every test-pool member is held out
        test_members = b.members[planted.pool_split[b.members] == 2]
        assert np.isin(test_members, b.held_out).all()
        # train_index points at the planted training images
        assert np.array_equal(planted.train_pool_index[b.train_index],
                              b.planted[planted.pool_split[b.planted] == 0])
    y = planted.splits.y_train.numpy()
    assert (y[mis.train_index] == 1).all() and mis.planted_label == 1 and len(mis.dropped) == 0
    assert (y[rare.train_index] == 3).all() and rare.planted_label == 3
    n_rest = len(rare.planted) + len(rare.dropped)
    assert len(rare.planted) <= max(2, 0.1 * n_rest) and len(rare.dropped) > 0
    # labels outside the mislabelled style are the clean ones
    others = np.setdiff1d(np.arange(len(y)), mis.train_index)
    assert np.array_equal(y[others], planted.clean_train_labels()[others])


def test_held_out_never_in_training_or_validation(planted):
    s = planted.splits
    seen = _rows(s.X_train) | _rows(s.X_val) | _rows(s.X_test)
    for i, b in enumerate(planted.bugs):
        X, y = planted.held_out(i)
        assert len(y) == len(b.held_out) > 0 and (y.numpy() == b.source_class).all()
        assert not (_rows(X) & seen)
        assert not np.isin(b.held_out, planted.train_pool_index).any()
        assert not np.isin(b.dropped, planted.train_pool_index).any()
    Xc, _ = planted.clean_train()
    assert not (_rows(Xc) & set().union(*(_rows(planted.held_out(i)[0]) for i in range(2))))
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) + len(planted.held_out_index) \
        + sum(len(b.dropped) for b in planted.bugs) == len(planted.y_pool)


def test_planting_is_seeded(digits, planted):
    again = plant_bugs(digits, BUGS, features=_features(digits), n_styles=3, seed=0)
    other = plant_bugs(digits, BUGS, features=_features(digits), n_styles=3, seed=1)
    assert all(np.array_equal(a.held_out, b.held_out) for a, b in zip(planted.bugs, again.bugs))
    assert any(not np.array_equal(a.held_out, b.held_out)
               for a, b in zip(planted.bugs, other.bugs))


def test_sub_styles_cluster():
    F = np.concatenate([np.zeros((10, 2)), np.full((10, 2), 5.0)])
    s = sub_styles(F, 2)
    assert len(set(s[:10])) == 1 and len(set(s[10:])) == 1 and s[0] != s[10]


def test_purity_and_recall_on_hand_made_assignment():
    assignment = np.array([0, 0, 0, 0, 1, 1, 1, 2, -1, 2])
    source = np.array([5, 5, 6, 9, 7, 7, 1, 1, 5, 2])
    P = bug_purity(assignment, source, [np.array([5, 6]), np.array([7])], 4)
    np.testing.assert_allclose(P, [[0.75, 0], [0, 2 / 3], [0, 0], [0, 0]])
    rec = bug_recall(P, [True, False, True, True])
    assert rec["found"] == [True, False] and rec["recall"] == 0.5
    assert rec["regions"] == [[0], []] and rec["best_purity"] == [0.75, 0.0]
    assert bug_recall(P)["found"] == [True, True]
    assert bug_recall(P, min_purity=0.8)["found"] == [False, False]


@pytest.mark.parametrize("kw, exc, name", [
    (dict(bugs=[BugSpec(3, "broken")]), ValueError, "kind"),
    (dict(bugs=[BugSpec(12)]), ValueError, "source_class"),
    (dict(bugs=[BugSpec(3), BugSpec(3)]), ValueError, "distinct"),
    (dict(bugs=BugSpec(3)), TypeError, "bugs"),
    (dict(bugs=[BugSpec(3, "mislabelled", target_label=3)]), ValueError, "target_label"),
    (dict(keep_fraction=1.5), ValueError, "keep_fraction"),
    (dict(held_out_fraction="0.3"), TypeError, "held_out_fraction"),
    (dict(features=np.zeros((5, 2))), ValueError, "features"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_input_names_the_parameter(digits, kw, exc, name):
    args = dict(bugs=BUGS, features=_features(digits), n_styles=3)
    with pytest.raises(exc, match=name):
        plant_bugs(digits, **{**args, **kw})


def test_bad_scoring_input():
    with pytest.raises(ValueError, match="assignment"):
        bug_purity(np.zeros(3), np.zeros(4), [np.array([1])], 1)
    with pytest.raises(ValueError, match="accepted"):
        bug_recall(np.zeros((2, 1)), [True])
    with pytest.raises(ValueError, match="min_purity"):
        bug_recall(np.zeros((2, 1)), min_purity=0)
    with pytest.raises(TypeError, match="data"):
        plant_bugs("digits", features=np.zeros((1, 1)))


def test_knn_and_ensemble_oracles(digits, tiny_models):
    clf, vae = tiny_models
    knn = KnnOracle(vae, digits.X_train, digits.y_train, 10, k=1)
    pred = knn(digits.X_train[:50]).argmax(1)
    assert (pred == digits.y_train[:50]).float().mean() > 0.9   # own code is the nearest
    ens = EnsembleOracle([clf, clf])
    np.testing.assert_allclose(ens(digits.X_val[:8]).exp().sum(1).detach().numpy(), 1, rtol=1e-5)
    assert torch.equal(ens(digits.X_val[:8]).argmax(1), clf(digits.X_val[:8]).argmax(1))
    with pytest.raises(TypeError, match="oracles"):
        EnsembleOracle([])


def test_identification_precision_counts_source_class(tiny_models):
    from defuse_widgets.stages.identification import AdversarialExamples

    _, vae = tiny_models

    class Fixed:
        def label(self, X):
            return np.array([1, 2, 1, 0])[: len(X)]

    adv = AdversarialExamples(np.zeros((4, 4), np.float32), np.array([0, 1, 2, 3]),
                              np.zeros(4, np.int64), np.zeros(4, np.int64),
                              np.zeros(4, np.float32), 40, {})
    clean = np.array([1, 1, 1, 1])
    # the sample is a permutation; with n=4 all examples are labelled: 2 of 4 match
    assert identification_precision(adv, Fixed(), vae, clean, n=4) == pytest.approx(0.5)


def test_style_purity_counts_members_in_the_style(planted):
    b = planted.bugs[0]
    F = np.stack([b.centroids[b.style], b.centroids[(b.style + 1) % len(b.centroids)],
                  b.centroids[b.style], b.centroids[b.style]])
    src = np.array([b.source_class, b.source_class, b.source_class + 1, b.source_class])
    from benchmarks.harness.planted_eval import style_purity

    P = style_purity(np.array([0, 0, 0, 1]), F, src, [b], 2)
    np.testing.assert_allclose(P[:, 0], [1 / 3, 1.0])
    with pytest.raises(ValueError, match="features"):
        style_purity(np.zeros(4), F[:2], src, [b], 2)


def test_trace_purity_follows_the_nearest_real_image(planted):
    from benchmarks.harness.planted_eval import trace_purity

    n_pool = len(planted.y_pool)
    ref = np.zeros((n_pool, 2), np.float32)
    ref[:, 0] = np.arange(n_pool)                     # pool image i sits at (i, 0)
    rare, mis = planted.bugs
    a, b, other = rare.members[0], mis.members[0], np.setdiff1d(
        np.arange(n_pool), np.concatenate([rare.members, mis.members]))[0]
    # region 0: two examples next to the rare bug's image, one next to another image;
    # region 1: one example next to the mislabelled bug's image; region 2: empty
    codes = np.array([[a + 0.1, 0.2], [a - 0.1, 0.0], [other, 0.3], [b, -0.2]], np.float32)
    P = trace_purity(np.array([0, 0, 0, 1]), codes, ref, planted.bugs, 3)
    np.testing.assert_allclose(P, [[2 / 3, 0], [0, 1], [0, 0]])
    with pytest.raises(ValueError, match="reference_codes"):
        trace_purity(np.array([0, 0, 0, 1]), codes, ref[:, :1], planted.bugs, 3)


def test_rendered_accuracy_scores_reconstructions(digits, tiny_models):
    from benchmarks.harness.planted_eval import rendered_accuracy
    from defuse_widgets.models.inference import accuracy, decode, encode_mean

    clf, vae = tiny_models
    X, y = digits.X_test[:200], digits.y_test[:200]
    R = decode(vae, encode_mean(vae, X))
    assert rendered_accuracy(clf, vae, X, y) == pytest.approx(accuracy(clf, R, y))
    # reconstructions lose detail: a different number than on the images themselves
    assert rendered_accuracy(clf, vae, X, y) != pytest.approx(accuracy(clf, X, y))


def test_evaluate_planted_end_to_end_with_label_review(planted, digits):
    """A full run on tiny models trained on the planted split; the perfect annotator labels
    every reviewed training image by its clean label, so every relabel must hit a planted one.
    """
    from benchmarks.harness.planted_eval import evaluate_planted
    from defuse_widgets.models import BetaVAE, MnistCNN
    from defuse_widgets.models.training import train_classifier, train_vae
    from defuse_widgets.stages.annotators import SimulatedAnnotator

    s = planted.splits
    clf = train_classifier(MnistCNN(1, 8, 10), s.X_train, s.y_train, epochs=3, seed=0,
                           progress=False)
    vae = train_vae(BetaVAE.from_family("mnist", image_size=8, n_latent=4, width=16), s.X_train,
                    beta=0.5, epochs=8, batch_size=64, anneal_steps=50, seed=0, progress=False)
    knn = KnnOracle(vae, planted.X_pool, planted.y_pool, 10, k=1).eval()
    perfect = SimulatedAnnotator(knn, seed=0, name="perfect")
    config = DefuseConfig.quick(Q=6, a=5.0, b=5.0, n_components=6, max_samples=1500,
                                n_finetune=16, n_region_test=16, lams=(0.1,), epochs=1,
                                label_review=120, seed=0)
    res = evaluate_planted(planted, clf, vae, perfect, config, log=lambda *a: None)
    reg = res["regions"]
    assert reg["n_candidates"] == len(reg["purity"]) >= 1
    assert all(not (r["accepted"] and r["label_error"]) for r in reg["purity"])
    assert "recall_with_label_errors" in res
    # accepted or label-error regions are a superset of accepted ones
    assert sum(res["recall_with_label_errors"]["found"]) >= sum(res["recall"]["found"])
    corr = res["correction"]
    lr = corr["label_review"]
    assert lr["n_reviewed"] >= 20 and lr["validation"]["n_contested"] >= 1
    assert lr["n_contested"] > 0 and lr["n_true"] == lr["n_contested"]   # k=1: only planted ones
    assert set(corr["summary"]) == {"before", "defuse", "baseline", "review"}
    # "before" is scored on the planted validation labels; the review arm's own
    # starting point (on the reviewed validation labels) is kept apart
    from defuse_widgets.models.inference import accuracy
    assert corr["before"]["validation"] == pytest.approx(accuracy(clf, s.X_val, s.y_val))
    for arm in ("defuse", "review"):
        assert 0.0 <= corr[arm]["bug0"] <= 1.0 and 0.0 <= corr[arm]["test"] <= 1.0
