import numpy as np
import pytest

from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.identification import AdversarialExamples


def _blobs(n_per=150, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0]], float)
    z = np.concatenate([c + rng.normal(size=(n_per, 3)) * 0.5 for c in centres])
    src = np.repeat([1, 2, 3], n_per)
    pred = np.repeat([7, 5, 8], n_per)
    return z, src, pred, centres


def test_finds_the_planted_clusters():
    z, src, pred, centres = _blobs()
    d = Distiller(n_components=10, eps=0.05, seed=0).fit(
        z, source_label=src, predicted_label=pred, n_classes=10)
    regions = d.regions_
    assert len(regions) == 3
    for c in centres:
        assert np.min(np.linalg.norm(regions.means - c, axis=1)) < 0.3
    np.testing.assert_array_equal(np.sort(regions.member_counts), [150, 150, 150])
    # Each region's confusion histogram names its single source -> predicted pair.
    pairs = {tuple(regions.top_confusions(k, 1)[0][:2]) for k in range(3)}
    assert pairs == {(1, 7), (2, 5), (3, 8)}
    assert (np.diff(regions.weights) <= 0).all()  # sorted by weight


def test_eps_drops_exactly_the_light_components():
    z, *_ = _blobs()
    rng = np.random.default_rng(1)
    z = np.concatenate([z, rng.normal(size=(8, 3)) * 0.2 + [20, 20, 20]])
    d = Distiller(n_components=10, eps=0.0).fit(z)
    w = d.mixture_.weights_
    for eps in (0.001, 0.01, 0.05):
        r = Distiller(n_components=10, eps=eps).fit(z).regions_
        np.testing.assert_allclose(np.sort(r.weights), np.sort(w[w > eps]))
        assert set(np.unique(r.assignment)) <= set(range(-1, len(r)))


def test_accepts_adversarial_examples_and_downsamples(tiny_adversarial):
    d = Distiller(n_components=5, max_samples=50, seed=0).fit(tiny_adversarial, n_classes=10)
    assert len(d.fit_index_) == min(50, len(tiny_adversarial))
    assert len(d.regions_.assignment) == len(tiny_adversarial)
    assert d.regions_.n_latent == tiny_adversarial.codes.shape[1]


def test_empty_adversarial_set():
    empty = AdversarialExamples(np.zeros((0, 4), np.float32), *[np.zeros(0, np.int64)] * 3,
                                np.zeros(0, np.float32), 100, {})
    with pytest.raises(ValueError, match="X must hold at least one adversarial example"):
        Distiller().fit(empty, n_classes=10)


def test_fewer_codes_than_components():
    z, *_ = _blobs(n_per=5)
    with pytest.raises(ValueError, match="at least n_components=100 codes"):
        Distiller(n_components=100).fit(z)


def test_nan_codes():
    z, *_ = _blobs()
    z[3, 1] = np.nan
    with pytest.raises(ValueError, match="X must not contain NaN or inf"):
        Distiller(n_components=5).fit(z)


@pytest.mark.parametrize("kw, match", [({"eps": -0.1}, "eps"),
                                       ({"n_components": 0}, "n_components"),
                                       ({"max_samples": 0}, "max_samples")])
def test_bad_parameters(kw, match):
    z, *_ = _blobs()
    with pytest.raises(ValueError, match=match):
        Distiller(**kw).fit(z)


def test_label_length_mismatch():
    z, src, pred, _ = _blobs()
    with pytest.raises(ValueError, match="source_label must have length"):
        Distiller(n_components=5).fit(z, source_label=src[:-1], predicted_label=pred, n_classes=10)


def test_n_classes_is_never_inferred_from_the_labels_present(tiny_adversarial):
    with pytest.raises(TypeError, match="n_classes must be given"):
        Distiller(n_components=3).fit(tiny_adversarial)
    # The highest class need not occur: the regions still count 12 classes.
    regions = Distiller(n_components=3, eps=0.0).fit(tiny_adversarial, n_classes=12).regions_
    assert regions.n_classes == 12


def test_estimators_print_their_settings():
    """Issue 15: print(distiller) showed <... object at 0x...>; estimators follow scikit-learn."""
    from defuse_widgets.bayes_trex.level_sets import LevelSetSampler
    from defuse_widgets.stages.distillation import Distiller

    d = Distiller(n_components=30, eps=0.02)
    assert repr(d) == "Distiller(eps=0.02, n_components=30)"
    assert d.get_params()["n_components"] == 30 and d.set_params(eps=0.05).eps == 0.05
    assert repr(LevelSetSampler(targets=[], n_chains=4)).startswith("LevelSetSampler(")
