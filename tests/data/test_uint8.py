"""uint8 DataSplits through the pipeline: the same results as the float twin ``X.float() / 255``.

The twins hold the same pixels: ``u8`` as uint8, ``f32`` as ``u8.float() / 255``.
Every stage that takes images divides uint8 batches by 255 where a model
takes them (``to_unit``), so each result below must be bitwise equal.
"""
import copy

import numpy as np
import pytest
import torch

from defuse_widgets._validation import check_images
from defuse_widgets.data import DataSplits
from defuse_widgets.models.inference import (
    _UNIT,
    accuracy,
    encode_mean,
    predict,
    predict_logits,
    to_unit,
)
from defuse_widgets.models.training import reconstruction_fidelity, train_classifier, train_vae
from defuse_widgets.stages.correction import Corrector
from defuse_widgets.stages.identification import identify
from defuse_widgets.stages.novelty import nearest_misclassified

SPLITS = ("X_train", "X_val", "X_test")


@pytest.fixture(scope="module")
def twins(digits):
    """The 8x8 digits as uint8 DataSplits and as their float32 twin."""
    u8 = {k: (getattr(digits, k) * 255).round().to(torch.uint8) for k in SPLITS}
    f32 = {k: v.float() / 255 for k, v in u8.items()}
    labels = (digits.y_train, digits.y_val, digits.y_test)

    def build(X):
        return DataSplits("digits", X["X_train"], labels[0], X["X_val"], labels[1],
                          X["X_test"], labels[2], digits.class_names)
    return build(u8), build(f32)


def test_to_unit_is_the_float_division():
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_unit(every), every.float() / 255)
    assert torch.equal(_UNIT.view(1, 1, 16, 16), every.float() / 255)   # other devices' table
    x = torch.rand(2, 1, 3, 3)
    assert to_unit(x) is x


def test_uint8_costs_a_quarter_and_is_not_copied(twins):
    u8, f32 = twins
    for k in SPLITS:
        a, b = getattr(u8, k), getattr(f32, k)
        assert a.element_size() * a.nelement() * 4 == b.element_size() * b.nelement()
    assert check_images("X", u8.X_train) is u8.X_train   # no whole-array float copy


def test_predictions_and_codes_are_identical(twins, tiny_models):
    (u8, f32), (clf, vae) = twins, tiny_models
    assert torch.equal(predict_logits(clf, u8.X_val), predict_logits(clf, f32.X_val))
    assert torch.equal(predict(clf, u8.X_test), predict(clf, f32.X_test))
    assert torch.equal(predict(clf, u8.X_test, precision="bf16"),
                       predict(clf, f32.X_test, precision="bf16"))
    assert accuracy(clf, u8.X_test, u8.y_test) == accuracy(clf, f32.X_test, f32.y_test) > 0.5
    assert torch.equal(encode_mean(vae, u8.X_val), encode_mean(vae, f32.X_val))
    assert (reconstruction_fidelity(clf, vae, u8.X_val, u8.y_val, device="cpu")
            == reconstruction_fidelity(clf, vae, f32.X_val, f32.y_val, device="cpu"))


def test_identification_keeps_the_same_codes(twins, tiny_models):
    (u8, f32), (clf, vae) = twins, tiny_models
    kw = dict(Q=8, a=5, b=5, max_per_instance=5, progress=False, device="cpu")
    a = identify(clf, vae, u8.X_train[:300], u8.y_train[:300], **kw)
    b = identify(clf, vae, f32.X_train[:300], f32.y_train[:300], **kw)
    assert len(a) > 0
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.source_index, b.source_index)
    np.testing.assert_array_equal(a.predicted_label, b.predicted_label)


def test_training_is_identical(twins, tiny_models):
    (u8, f32), (clf, vae) = twins, tiny_models
    for train, model, kw in ((train_classifier, clf, dict(epochs=1, augment=True)),
                             (train_vae, vae, dict(epochs=1, beta=0.5))):
        a, b = copy.deepcopy(model), copy.deepcopy(model)
        train(a, u8.X_train[:400], *([u8.y_train[:400]] if train is train_classifier else []),
              progress=False, device="cpu", **kw)
        train(b, f32.X_train[:400], *([f32.y_train[:400]] if train is train_classifier else []),
              progress=False, device="cpu", **kw)
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    with pytest.raises(ValueError, match=r"\[0, 1\]"):   # float pixels are still checked
        train_vae(copy.deepcopy(vae), f32.X_train[:8] * 255, epochs=1, progress=False)


def test_correction_runs_on_uint8_and_matches(twins, tiny_models):
    clf, _ = tiny_models
    results = []
    for d in twins:
        threes = d.X_test[d.y_test == 3]
        X_f = to_unit(threes[:20])            # D_f: float, as decodes are
        y_f = torch.full((20,), 8)
        evals = {"validation": (d.X_val, d.y_val),            # uint8 in the uint8 twin
                 "region_validation": (X_f, y_f),
                 "region_test": (threes[20:], torch.full((len(threes) - 20,), 8))}
        c = Corrector(lams=[0.0, 10.0], epochs=1, batch_size=256, seed=0).fit(
            clf, d.X_train, d.y_train, X_f, y_f, eval_sets=evals)
        results.append(c.results_)
    assert results[0] == results[1]
    assert results[0][1]["region_test"] > results[0][0]["region_test"]


def test_novelty_matches(twins, tiny_models):
    (u8, f32), (clf, _) = twins, tiny_models
    queries = f32.X_val[:5]
    a = nearest_misclassified(queries, clf, u8.X_train, u8.y_train, chunk_size=100)
    b = nearest_misclassified(queries, clf, f32.X_train, f32.y_train, chunk_size=100)
    np.testing.assert_array_equal(a.neighbour_index, b.neighbour_index)
    np.testing.assert_array_equal(a.distance, b.distance)
    assert a.median_train_nn_distance == b.median_train_nn_distance
    c = nearest_misclassified(queries, clf, f32.X_train, f32.y_train)   # one chunk
    np.testing.assert_array_equal(a.neighbour_index, c.neighbour_index)
    assert c.median_train_nn_distance == pytest.approx(a.median_train_nn_distance, rel=1e-5)


def test_float_pixels_outside_unit_range_are_refused_with_the_remedy(twins, tiny_models):
    from defuse_widgets.stages.identification import identify_in_steps

    u8, f32 = twins
    clf, vae = tiny_models
    X, y = u8.X_train[:8], u8.y_train[:8]
    by_255 = (r"must hold float pixels in \[0, 1\], as the models take them; got values in "
              r"\[0, 255\]\. If they are 0-255 pixels, divide them by 255")
    with pytest.raises(ValueError, match="X " + by_255):
        identify(clf, vae, X.float(), y, Q=2, progress=False)
    seen = []
    with pytest.raises(ValueError, match="X " + by_255):      # before the first slice
        identify_in_steps(clf, vae, X.float(), y, Q=2, a=2, b=2, n_steps=4,
                          callback=lambda *a: seen.append(a))
    assert not seen
    evals = {"validation": (u8.X_val.float(), u8.y_val)}
    with pytest.raises(ValueError, match=r"eval_sets\['validation'\] images " + by_255):
        Corrector(lams=[1.0], selection="validation").fit(clf, X, y, X[:2], y[:2],
                                                           eval_sets=evals)
    with pytest.raises(ValueError, match=r"X_val " + by_255):
        DataSplits("digits", f32.X_train, f32.y_train, u8.X_val.float(), f32.y_val,
                   f32.X_test, f32.y_test, f32.class_names)
    normalised = (f32.X_train[:8] - 0.5) / 0.25
    with pytest.raises(ValueError, match=r"got values in \[-2, 2\]\. Rescale them to \[0, 1\]"):
        check_images("X", normalised)
    with pytest.raises(TypeError, match=r"X_train must hold uint8 pixels \(0-255\) or floats"):
        DataSplits("digits", u8.X_train.long(), u8.y_train, u8.X_val, u8.y_val, u8.X_test,
                   u8.y_test, u8.class_names)


def test_uint8_and_floats_within_rounding_of_unit_range_are_accepted(twins):
    u8, f32 = twins
    assert check_images("X", u8.X_train).dtype == torch.uint8
    nudged = f32.X_train[:4].clone()
    nudged[0, 0, 0, 0], nudged[0, 0, 0, 1] = 1.0005, -0.0005
    assert torch.equal(check_images("X", nudged), nudged)
