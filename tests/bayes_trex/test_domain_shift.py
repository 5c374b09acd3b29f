"""Domain-shift check: the shifted data, the shares it reports, and its input checks."""
import numpy as np
import pytest
import torch

from defuse_widgets.bayes_trex.domain_shift import DomainShiftCheck, upsampled_digits


class Says:
    """Stub annotator that labels every image as one class."""

    def __init__(self, c):
        self.c = c

    def label(self, images):
        return np.full(len(images), self.c)


def test_upsampled_digits_are_the_8x8_digits_at_the_requested_size():
    from sklearn.datasets import load_digits
    d = upsampled_digits(size=16)
    X = torch.cat([d.X_train, d.X_val, d.X_test])
    assert X.shape == (1797, 1, 16, 16) and float(X.min()) >= 0 and float(X.max()) <= 1
    # averaging 2x2 blocks gives back (nearly) the original 8x8 images
    small = torch.nn.functional.avg_pool2d(X, 2).flatten(1).numpy()
    orig = load_digits().images.reshape(1797, -1) / 16.0
    first = d.X_train[:1]
    k = np.abs(orig - torch.nn.functional.avg_pool2d(first, 2).flatten(1).numpy()).sum(1).argmin()
    assert int(d.y_train[0]) == int(load_digits().target[k])
    assert np.abs(np.sort(small.sum(1)) - np.sort(orig.sum(1))).max() < 1.0


@pytest.fixture(scope="module")
def check(tiny_models, digits):
    clf, vae = tiny_models
    return DomainShiftCheck(classes=[0, 1, 2], n_chains=2, n_warmup=10, n_samples=6,
                            min_confidence=0.5, n_bins=5, device="cpu").fit(
        clf, vae, Says(0), source_decoder=vae, source_annotator=Says(-1),
        X_shifted=digits.X_test, y_shifted=digits.y_test)


def test_shares_count_what_the_annotator_says(check):
    shifted, source = check.results_["shifted"], check.results_["source"]
    per = shifted["per_class"]
    assert per[0]["n_confirmed"] == 0                      # annotator agrees on class 0
    for c in (1, 2):                                         # ...and disagrees on the others
        assert per[c]["n_confirmed"] == per[c]["n_annotated"]
    assert shifted["n_annotated"] > 0
    assert shifted["overconfident_share"] == pytest.approx(
        (per[1]["n_annotated"] + per[2]["n_annotated"]) / shifted["n_annotated"])
    assert shifted["other_class_share"] == shifted["overconfident_share"]
    # "none of the above" (-1) is a confirmed failure but not another class
    assert source["overconfident_share"] == 1.0 and source["other_class_share"] == 0.0
    assert sum(shifted["histogram"]) == shifted["n_draws"] == 3 * 2 * 6
    assert check.bin_edges_.shape == (6,)
    assert check.shifted_.codes_.shape == (6, 6, 4) and check.source_ is not None


def test_real_shifted_images_are_scored_against_their_labels(check, tiny_models, digits):
    clf, _ = tiny_models
    real = check.results_["real_shifted"]
    with torch.no_grad():
        pred = clf(digits.X_test).argmax(1).numpy()
    assert real["accuracy"] == pytest.approx((pred == digits.y_test.numpy()).mean())
    assert real["n_images"] == len(digits.X_test) == sum(real["histogram"])


def test_bad_input_names_the_parameter(tiny_models, digits):
    clf, vae = tiny_models
    with pytest.raises(ValueError, match="source_decoder and source_annotator"):
        DomainShiftCheck().fit(clf, vae, Says(0), source_decoder=vae)
    with pytest.raises(TypeError, match="shifted_annotator"):
        DomainShiftCheck().fit(clf, vae, object())
    with pytest.raises(ValueError, match="classes must be <= 9"):
        DomainShiftCheck(classes=[12], n_chains=1).fit(clf, vae, Says(0))
    with pytest.raises(ValueError, match="X_shifted and y_shifted"):
        DomainShiftCheck(classes=[0], n_chains=2, n_warmup=2, n_samples=4).fit(
            clf, vae, Says(0), X_shifted=digits.X_test)
