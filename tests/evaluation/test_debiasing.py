"""Debiasing baselines on a tiny task with a spurious background colour."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from defuse_widgets.evaluation.debiasing import (
    gce_loss,
    group_reweighted,
    group_weights,
    jtt,
    lff,
    train_weighted,
    weighted_cross_entropy,
)
from defuse_widgets.models.inference import accuracy, correct
from defuse_widgets.models.training import train_classifier
from defuse_widgets.seeding import seed_everything


def spurious_task(n: int, p_aligned: float, seed: int):
    """2-channel 8x8 images: the label is a line's direction (0: horizontal, 1: vertical)
    at a random place; the background colour (which channel is lit) equals the label
    with probability ``p_aligned``.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    colour = np.where(rng.random(n) < p_aligned, y, 1 - y)
    X = rng.uniform(0, 0.1, (n, 2, 8, 8))
    X[np.arange(n), colour] += 0.5
    for i, (r, c) in enumerate(rng.integers(0, 5, (n, 2))):
        if y[i] == 0:
            X[i, :, r + 1, c:c + 4] = 1.0
        else:
            X[i, :, r:r + 4, c + 1] = 1.0
    return torch.tensor(X, dtype=torch.float32), torch.from_numpy(y), colour


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 2))


@pytest.fixture(scope="module")
def toy():
    """Training images 95% bias-aligned; held-out images that all conflict with the bias."""
    X, y, colour = spurious_task(3000, 0.95, seed=10)
    X_conflict, y_conflict, _ = spurious_task(500, 0.0, seed=11)
    X_val, y_val, _ = spurious_task(200, 0.9, seed=12)
    return SimpleNamespace(X=X, y=y, colour=colour, aligned=colour == y.numpy(),
                           X_conflict=X_conflict, y_conflict=y_conflict, X_val=X_val, y_val=y_val)


EPOCHS = 6   # the same budget for ERM and every debiasing method


@pytest.fixture(scope="module")
def erm(toy):
    seed_everything(0)
    return train_weighted(tiny_cnn(), toy.X, toy.y, epochs=EPOCHS, seed=0)


@pytest.fixture(scope="module")
def lff_run(toy):
    return lff(tiny_cnn, toy.X, toy.y, epochs=EPOCHS, seed=0)


@pytest.fixture
def small(toy):
    return toy.X[:300], toy.y[:300]


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def differ(a: nn.Module, b: nn.Module) -> bool:
    return any(not torch.allclose(v, w) for v, w in zip(a.state_dict().values(),
                                                         b.state_dict().values()))


def fresh(seed=0) -> nn.Module:
    seed_everything(seed)
    return tiny_cnn()


def test_group_weights_are_inverse_conditional_frequencies():
    y, groups = [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]
    # p(y|g): 3/4, 3/4, 3/4, 1/4 in group 0; 1/2, 1/2 in group 1.
    expected = np.array([4 / 3, 4 / 3, 4 / 3, 4, 2, 2])
    w = group_weights(np.array(y), torch.tensor(groups))
    np.testing.assert_allclose(w, expected / expected.mean())
    assert w.mean() == pytest.approx(1.0)


def test_group_weights_balance_the_classes_within_each_group(toy):
    w = group_weights(toy.y, toy.colour)
    y = toy.y.numpy()
    for g in (0, 1):
        per_class = [w[(toy.colour == g) & (y == c)].sum() for c in (0, 1)]
        assert per_class[0] == pytest.approx(per_class[1])
    assert w[~toy.aligned].min() > 5 * w[toy.aligned].max()


def test_train_weighted_without_weights_is_train_classifier(small):
    X, y = small
    ours = train_weighted(fresh(), X, y, epochs=2, seed=3)
    theirs = train_classifier(fresh(), X, y, epochs=2, seed=3, progress=False)
    assert_same_weights(ours, theirs)
    assert not ours.training and next(ours.parameters()).device.type == "cpu"


def test_weights_reach_the_loss(small):
    X, y = small
    w = torch.rand(len(X), generator=torch.Generator().manual_seed(1)) + 0.1
    plain = train_weighted(fresh(), X, y, epochs=1)
    weighted = train_weighted(fresh(), X, y, w, epochs=1)
    scaled = train_weighted(fresh(), X, y, 7 * w.numpy(), epochs=1)
    assert differ(plain, weighted)
    for v, u in zip(weighted.state_dict().values(), scaled.state_dict().values()):
        torch.testing.assert_close(v, u, atol=1e-4, rtol=1e-4)   # a weighted mean


def test_weighted_cross_entropy_is_the_weighted_mean():
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    w = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.5])
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert weighted_cross_entropy(logits, y, w) == pytest.approx(float((w * ce).sum() / 4))


def test_an_image_of_weight_zero_is_ignored(small):
    X, y = small
    w = torch.ones(len(X))
    w[::3] = 0
    X2, y2 = X.clone(), y.clone()
    X2[::3], y2[::3] = X2[::3].flip(-1).flip(-2), 1 - y2[::3]   # other images, other labels
    assert_same_weights(train_weighted(fresh(), X, y, w, epochs=2),
                        train_weighted(fresh(), X2, y2, w, epochs=2))


def test_jtt_upweights_the_identification_models_errors(toy):
    model, info = jtt(tiny_cnn, toy.X, toy.y, toy.X_val, toy.y_val, id_epochs=1,
                      upweights=(5, 20), epochs=2, seed=4)
    id_model = train_weighted(fresh(4), toy.X, toy.y, epochs=1, seed=4)
    errors = np.flatnonzero(~correct(id_model, toy.X, toy.y))
    np.testing.assert_array_equal(info["error_set"], errors)
    assert info["n_errors"] == len(errors) > 0
    assert (~toy.aligned[errors]).mean() > 0.8         # the errors are bias-conflicting
    assert set(info["scores"]) == {5, 20}
    assert info["scores"][info["lam_up"]] == max(info["scores"].values())
    assert accuracy(model, toy.X_val, toy.y_val) == pytest.approx(info["scores"][info["lam_up"]])
    weights = torch.ones(len(toy.X))
    weights[errors] = info["lam_up"]
    assert_same_weights(model, train_weighted(fresh(4), toy.X, toy.y, weights, epochs=2,
                                              seed=4))


def test_jtt_selects_with_the_given_score(small):
    X, y = small
    scores = iter([0.2, 0.9, 0.5])
    seen = []

    def select(model):
        seen.append(model.training)
        return next(scores)

    _, info = jtt(tiny_cnn, X, y, upweights=(2, 3, 4), epochs=1, select=select)
    assert info["lam_up"] == 3 and seen == [False] * 3


def test_gce_weighs_well_fitted_samples_more():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]], requires_grad=True)
    y = torch.tensor([0, 0])      # the first is fitted, the second is not
    p = torch.softmax(logits, 1)[:, 0]
    torch.testing.assert_close(gce_loss(logits, y, q=0.5), (1 - p ** 0.5) / 0.5)
    gce_loss(logits, y, q=0.5).sum().backward()
    g_gce = logits.grad.norm(dim=1)
    logits.grad = None
    torch.nn.functional.cross_entropy(logits, y, reduction="sum").backward()
    ratio = g_gce / logits.grad.norm(dim=1)           # p_y ** q
    torch.testing.assert_close(ratio, p.detach() ** 0.5)


def test_lff_weights_are_relative_difficulties(toy, lff_run):
    _, info = lff_run
    w = info["weights"]
    assert w.shape == (len(toy.X),) and ((w >= 0) & (w <= 1)).all()
    assert info["mean_weight"] == pytest.approx(w.mean())
    assert w[~toy.aligned].mean() > 5 * w[toy.aligned].mean()


def test_lff_is_reproducible(small):
    X, y = small
    a, info_a = lff(tiny_cnn, X, y, epochs=1, seed=2)
    b, info_b = lff(tiny_cnn, X, y, epochs=1, seed=2)
    assert_same_weights(a, b)
    np.testing.assert_array_equal(info_a["weights"], info_b["weights"])


def test_debiasing_raises_accuracy_on_bias_conflicting_images(toy, erm, lff_run):
    base = accuracy(erm, toy.X_conflict, toy.y_conflict)
    assert base < 0.4                                  # ERM follows the background
    reweighted, info = group_reweighted(tiny_cnn, toy.X, toy.y, toy.colour, epochs=EPOCHS)
    np.testing.assert_allclose(info["weights"], group_weights(toy.y, toy.colour))
    debiased, lff_info = lff_run
    twice, _ = jtt(tiny_cnn, toy.X, toy.y, toy.X_val, toy.y_val, epochs=EPOCHS)
    for model in (reweighted, debiased, twice):
        assert accuracy(model, toy.X_conflict, toy.y_conflict) > base + 0.4
    assert accuracy(lff_info["biased_model"], toy.X_conflict, toy.y_conflict) < 0.3


@pytest.mark.parametrize("call, error, message", [
    (lambda X, y: group_weights(y, np.zeros(len(y) - 1, int)), ValueError,
     "groups must have one entry per image"),
    (lambda X, y: group_weights(y, np.zeros(len(y))), TypeError, "groups must be an array of "
     "integer"),
    (lambda X, y: train_weighted(tiny_cnn(), X, y, -torch.ones(len(X)), epochs=1), ValueError,
     "weights must be finite and >= 0"),
    (lambda X, y: train_weighted(tiny_cnn(), X, y, torch.ones(3), epochs=1), ValueError,
     r"weights must have shape \(300,\)"),
    (lambda X, y: train_weighted(tiny_cnn(), X, y, torch.zeros(len(X)), epochs=1), ValueError,
     "weights must not all be 0"),
    (lambda X, y: train_weighted(tiny_cnn(), X, y, epochs=0), ValueError, "epochs must be >= 1"),
    (lambda X, y: train_weighted(tiny_cnn(), X, y, epochs=1, optimizer="sgd"), ValueError,
     "optimizer must be one of"),
    (lambda X, y: train_weighted(tiny_cnn(), X * 255, y, epochs=1), ValueError,
     r"X must hold float pixels in \[0, 1\]"),
    (lambda X, y: train_weighted(tiny_cnn(), X, y[:-1], epochs=1), ValueError,
     "y must have length 300"),
    (lambda X, y: jtt(tiny_cnn(), X, y, X, y), TypeError, "make_model must be a zero-argument"),
    (lambda X, y: jtt(lambda: "cnn", X, y, X, y), TypeError,
     r"make_model\(\) must be a torch.nn.Module"),
    (lambda X, y: jtt(tiny_cnn, X, y), ValueError, "X_val and y_val are needed"),
    (lambda X, y: jtt(tiny_cnn, X, y, X[:, :1], y), ValueError, r"X_val must have shape"),
    (lambda X, y: jtt(tiny_cnn, X, y, X, y, upweights=()), ValueError,
     "upweights must hold at least one"),
    (lambda X, y: jtt(tiny_cnn, X, y, X, y, upweights=(5, -1)), ValueError,
     r"upweights\[1\] must be > 0"),
    (lambda X, y: jtt(tiny_cnn, X, y, X, y, seed=-1), ValueError, "seed must be"),
    (lambda X, y: lff(tiny_cnn, X, y, q=0), ValueError, "q must be > 0"),
    (lambda X, y: lff(tiny_cnn, X, y, ema=1), ValueError, "ema must be < 1"),
    (lambda X, y: group_reweighted(tiny_cnn, X, y, [0, 1]), ValueError,
     "groups must have one entry per image"),
])
def test_bad_inputs_name_the_parameter(small, call, error, message):
    with pytest.raises(error, match=message):
        call(*small)
