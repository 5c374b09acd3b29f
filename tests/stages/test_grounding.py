"""Regions grounded in real images: assignment, counts, verdicts, JSON, bad input."""
import json

import numpy as np
import pytest

from defuse_widgets.stages.grounding import RegionGrounding, assign_to_regions, ground_regions
from defuse_widgets.stages.regions import Regions


def _regions(means, scales, weights=None):
    k = len(means)
    return Regions(means=np.asarray(means, float),
                   covariances=np.stack([s * np.eye(2) for s in scales]),
                   weights=np.asarray(weights or [1 / k] * k, float),
                   component=np.arange(k), assignment=np.zeros(1, np.int64),
                   source_label=np.zeros(1, np.int64), predicted_label=np.ones(1, np.int64),
                   n_classes=10)


@pytest.fixture
def regions():
    """Region 0 around (0, 0), region 1 around (10, 10), both of unit variance."""
    return _regions([[0, 0], [10, 10]], [1.0, 1.0])


@pytest.fixture
def real():
    """20 codes inside region 0 (classifier wrong on all), 80 far from both (right on all)."""
    rng = np.random.default_rng(0)
    inside = rng.normal(0, 0.5, (20, 2))
    outside = rng.normal(0, 0.5, (80, 2)) + [-10, 5]
    codes = np.concatenate([inside, outside])
    y = rng.integers(0, 10, 100)
    y_pred = y.copy()
    y_pred[:20] = (y[:20] + 1) % 10
    return codes, y, y_pred


def test_codes_inside_one_region_are_counted_with_their_accuracy(regions, real):
    codes, y, y_pred = real
    g = ground_regions(regions, {"validation": real, "test": (codes[:10], y[:10], y[:10])})
    np.testing.assert_array_equal(g.assignment["validation"], np.r_[np.zeros(20), -np.ones(80)])
    assert g.count(0, "validation") == 20 and g.n_correct(0, "validation") == 0
    assert g.accuracy(0, "validation") == 0.0 and g.overall_accuracy("validation") == 0.8
    assert g.count(0) == 30 and g.n_correct(0) == 10       # pooled over both splits
    assert g.verdict(0) == "confirmed" and g.p_value(0) < 0.05
    assert "confirmed on real data" in g.sentence(0)


def test_a_region_without_real_images_has_no_support(regions, real):
    g = ground_regions(regions, {"validation": real, "test": real})
    assert g.count(1) == 0 and g.accuracy(1) is None
    assert g.verdict(1) == "no_support"
    sentence = g.sentence(1)
    assert sentence.startswith("No real validation or test image falls in this region")
    assert "rare case" in sentence and "artefact of the generator" in sentence
    assert "cannot tell the two apart" in sentence


def test_a_region_where_the_classifier_is_right_is_not_confirmed(regions, real):
    codes, y, _ = real
    g = ground_regions(regions, {"validation": (codes, y, y)})
    assert g.count(0) == 20 and g.verdict(0) == "not_confirmed"
    assert "does not confirm" in g.sentence(0)


def test_too_few_real_images_give_no_support(regions, real):
    codes, y, y_pred = real
    g = ground_regions(regions, {"validation": (codes[15:], y[15:], y_pred[15:])},
                       min_support=6)
    assert g.count(0) == 5 and g.verdict(0) == "no_support"
    assert g.sentence(0).startswith("Only 5 real validation images fall in this region")


def test_an_image_in_two_regions_goes_to_the_more_responsible_one():
    overlap = _regions([[0, 0], [1, 0]], [1.0, 1.0], weights=[0.1, 0.9])
    a = assign_to_regions(overlap, np.array([[0.5, 0.0], [-0.5, 0.0], [50.0, 0.0]]))
    np.testing.assert_array_equal(a, [1, 1, -1])   # 1 weighs more; the far code is in none
    even = _regions([[0, 0], [1, 0]], [1.0, 1.0])
    np.testing.assert_array_equal(assign_to_regions(even, np.array([[0.2, 0], [0.8, 0]])),
                                  [0, 1])


def test_the_chi2_cut_follows_alpha(regions):
    codes = np.array([[2.5, 0.0]])   # d² = 6.25: inside χ²_2(0.99) = 9.2, outside χ²_2(0.9) = 4.6
    assert assign_to_regions(regions, codes, alpha=0.99)[0] == 0
    assert assign_to_regions(regions, codes, alpha=0.9)[0] == -1


def test_json_round_trip_has_no_nan(regions, real):
    g = ground_regions(regions, {"validation": real, "test": real}, alpha=0.95, min_support=3)
    text = json.dumps(g.to_dict(), allow_nan=False)   # raises on NaN
    back = RegionGrounding.from_dict(json.loads(text))
    assert back.splits == ("validation", "test") and back.alpha == 0.95
    assert back.min_support == 3 and back.n_regions == 2
    for s in g.splits:
        np.testing.assert_array_equal(back.assignment[s], g.assignment[s])
        np.testing.assert_array_equal(back.correct[s], g.correct[s])
    assert back.summary() == g.summary()
    assert g.summary()[1]["validation"] == {"count": 0, "n_correct": 0, "accuracy": None}


def test_from_dict_refuses_regions_out_of_range(regions, real):
    d = ground_regions(regions, {"validation": real}).to_dict()
    d["splits"]["validation"]["assignment"][0] = 7
    with pytest.raises(ValueError, match=r"regions in \[-1, 1\]"):
        RegionGrounding.from_dict(d)


@pytest.mark.parametrize("splits, error, match", [
    ({}, TypeError, "splits must be a non-empty dict"),
    ({"validation": (np.zeros((3, 2)), [0, 1])}, TypeError, r"splits\['validation'\] must be"),
    ({"validation": (np.zeros((3, 5)), [0, 1, 2], [0, 1, 2])}, ValueError,
     r"codes must have 2 latent dimensions; got array of shape \(3, 5\)"),
    ({"validation": (np.zeros((3, 2)), [0, 1], [0, 1, 2])}, ValueError,
     r"y must have length 3"),
    ({"validation": (np.full((3, 2), np.nan), [0, 1, 2], [0, 1, 2])}, ValueError,
     "must not contain NaN"),
    ({"validation": (np.zeros((3, 2)), [0, 1, 2], [0, 1, 12])}, ValueError,
     r"y_pred must hold class indices in \[0, 9\]"),
])
def test_bad_splits_are_named(regions, splits, error, match):
    with pytest.raises(error, match=match):
        ground_regions(regions, splits)


@pytest.mark.parametrize("kw, match", [(dict(alpha=1.0), "alpha must be < 1"),
                                       (dict(alpha=0), "alpha must be > 0"),
                                       (dict(min_support=0), "min_support must be >= 1"),
                                       (dict(level=1.5), "level must be < 1")])
def test_bad_parameters_are_named(regions, real, kw, match):
    with pytest.raises(ValueError, match=match):
        ground_regions(regions, {"validation": real}, **kw)


def test_regions_must_be_regions(real):
    with pytest.raises(TypeError, match="regions must be a Regions; got dict"):
        ground_regions({}, {"validation": real})


def test_unknown_split_is_named(regions, real):
    g = ground_regions(regions, {"validation": real})
    with pytest.raises(ValueError, match=r"split must be one of \['validation'\]"):
        g.count(0, "test")
