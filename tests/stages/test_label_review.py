"""Label review: picks the nearest differently-labelled training images, applies answers."""
import numpy as np
import pytest
import torch

from defuse_widgets.stages.label_review import (
    LabelReviewSet,
    apply_label_review,
    label_error_regions,
    label_review_set,
)
from defuse_widgets.stages.labeling import RegionDecision
from defuse_widgets.stages.regions import Regions


def _regions(means):
    means = np.asarray(means, dtype=float)
    n, d = means.shape
    return Regions(means, np.stack([np.eye(d)] * n), np.full(n, 1.0 / n), np.arange(n),
                   np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 3)


def _decision(k, accepted, label):
    return RegionDecision(k, accepted, label, 0.9, 0.9, 10, 0)


@pytest.fixture()
def world():
    # training codes on a line; region 0 sits at x=0 with label 2, region 1 (rejected) at x=10
    codes = np.zeros((8, 2))
    codes[:, 0] = [0.0, 0.5, 1.0, 3.0, 9.5, 0.2, 6.0, 10.0]
    y = np.array([1, 1, 2, 1, 1, 0, 0, 1])
    regions = _regions([[0.0, 0.0], [10.0, 0.0]])
    decisions = [_decision(0, True, 2), _decision(1, False, 1)]
    return regions, decisions, codes, y


def test_picks_nearest_images_with_another_label(world):
    regions, decisions, codes, y = world
    rs = label_review_set(regions, decisions, codes, y, n_per_region=3)
    # image 2 carries the region's label and image 4/7 are near the rejected region only
    assert rs.index.tolist() == [0, 5, 1]
    assert rs.region.tolist() == [0, 0, 0] and rs.region_label.tolist() == [2, 2, 2]
    assert rs.given_label.tolist() == [1, 0, 1]
    assert np.allclose(rs.distance, [0.0, 0.2, 0.5])
    assert len(label_review_set(regions, decisions, torch.from_numpy(codes), torch.from_numpy(y),
                                n_per_region=100)) == 7   # every image labelled other than 2


def test_image_near_two_regions_is_listed_once_for_the_nearer(world):
    regions, _, codes, y = world
    both = [_decision(0, True, 2), _decision(1, True, 0)]
    rs = label_review_set(regions, both, codes, y, n_per_region=8)
    assert len(set(rs.index.tolist())) == len(rs)
    row = rs.index.tolist().index(4)          # x=9.5: nearer region 1
    assert rs.region[row] == 1 and rs.region_label[row] == 0


def test_no_accepted_region_gives_an_empty_set(world):
    regions, _, codes, y = world
    rs = label_review_set(regions, [_decision(0, False, 2), _decision(1, False, 1)], codes, y)
    assert len(rs) == 0
    y2, keep, changed = apply_label_review(y, rs, np.zeros(0, np.int64))
    assert torch.equal(y2, torch.from_numpy(y)) and keep.all() and len(changed) == 0


def test_apply_relabels_contested_and_drops_none(world):
    regions, decisions, codes, y = world
    rs = label_review_set(regions, decisions, codes, y, n_per_region=3)   # [0, 5, 1]
    answers = np.array([2, 0, -1])    # relabel 0, confirm 5, "none" for 1
    y2, keep, changed = apply_label_review(y, rs, answers)
    assert y2.tolist() == [2, 1, 2, 1, 1, 0, 0, 1]
    assert keep.tolist() == [True, False] + [True] * 6
    assert sorted(changed.tolist()) == [0, 1]
    assert y.tolist() == [1, 1, 2, 1, 1, 0, 0, 1]          # input untouched
    y3, keep3, _ = apply_label_review(torch.from_numpy(y), rs, answers, mode="drop")
    assert torch.equal(y3, torch.from_numpy(y)) and keep3.tolist() == [False, False] + [True] * 6


@pytest.mark.parametrize("call, exc, words", [
    (lambda r, d, c, y: label_review_set("r", d, c, y), TypeError, "regions must be a Regions"),
    (lambda r, d, c, y: label_review_set(r, d[:1], c, y), ValueError, "one entry per region"),
    (lambda r, d, c, y: label_review_set(r, d, c[:, :1], y), ValueError, "codes must have shape"),
    (lambda r, d, c, y: label_review_set(r, d, c, y[:3]), ValueError, "y must have shape"),
    (lambda r, d, c, y: label_review_set(r, d, c, y, n_per_region=0), ValueError, "n_per_region"),
])
def test_review_set_errors_name_the_parameter(world, call, exc, words):
    with pytest.raises(exc, match=words):
        call(*world)


def test_apply_errors_name_the_parameter(world):
    regions, decisions, codes, y = world
    rs = label_review_set(regions, decisions, codes, y, n_per_region=3)
    with pytest.raises(TypeError, match="review must be a LabelReviewSet"):
        apply_label_review(y, "rs", [1, 1, 1])
    with pytest.raises(ValueError, match="labels must be integers of shape \\(3,\\)"):
        apply_label_review(y, rs, [1, 1])
    with pytest.raises(ValueError, match="labels must be integers"):
        apply_label_review(y, rs, [1.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="mode must be one of"):
        apply_label_review(y, rs, [1, 1, 1], mode="fix")
    with pytest.raises(ValueError, match="y must have shape"):
        apply_label_review(y[:1], rs, [1, 1, 1])
    assert isinstance(rs, LabelReviewSet)


def test_label_error_regions_flag_regions_whose_sources_carry_another_label():
    # region 0: annotators say 2, classifier agreed (not a misclassification region), and
    # 3 of 4 members come from images labelled 8 -> label-error region.
    # region 1: same, but only 1 of 4 sources disagree -> not flagged.
    # region 2: a misclassification region -> never a label-error region.
    # region 3: annotators said "none" only (label None) -> not flagged.
    regions = Regions(np.zeros((4, 2)), np.stack([np.eye(2)] * 4), np.full(4, .25), np.arange(4),
                      np.repeat([0, 1, 2, 3], 4), np.array([8, 8, 8, 2, 2, 2, 2, 8, 1, 1, 1, 1,
                                                            5, 5, 5, 5]),
                      np.zeros(16, np.int64), 10)
    decisions = [_decision(0, False, 2), _decision(1, False, 2), _decision(2, True, 7),
                 _decision(3, False, None)]
    assert label_error_regions(regions, decisions).tolist() == [True, False, False, False]
    assert label_error_regions(regions, decisions, rho=0.1).tolist() == [True, True, False, False]
    # label-error regions join the review set when asked
    codes, y = np.array([[0.0, 0.0], [0.1, 0.0]]), np.array([8, 2])
    assert label_review_set(regions, decisions, codes, y).index.tolist() == [0, 1]   # region 2
    rs = label_review_set(regions, decisions, codes, y,
                          label_errors=label_error_regions(regions, decisions))
    assert rs.region.tolist() == [0, 2] and rs.region_label.tolist() == [2, 7]
    with pytest.raises(ValueError, match="rho must be"):
        label_error_regions(regions, decisions, rho=1.0)
    with pytest.raises(ValueError, match="label_errors must be a bool array of shape \\(4,\\)"):
        label_review_set(regions, decisions, codes, y, label_errors=[1, 0])
