"""Label audit: images inside an accepted region whose label differs are suspects."""
import numpy as np
import pytest
import torch

from defuse_widgets.label_audit import SuspectLabels, audit_labels, drop_suspects
from defuse_widgets.labeling import RegionDecision
from defuse_widgets.regions import Regions


def _regions():
    means = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    covs = np.stack([np.eye(2), np.eye(2), np.diag([4.0, 0.25])])
    n = 3
    return Regions(means, covs, np.full(n, 0.3), np.arange(n), np.zeros(4, np.int64),
                   np.zeros(4, np.int64), np.zeros(4, np.int64), n_classes=10)


def _decision(k, accepted, label):
    return RegionDecision(region=k, is_misclassification_region=accepted, label=label,
                          disagreement=0.9 if accepted else 0.1, agreement=1.0, n_votes=10,
                          n_none=0)


DECISIONS = [_decision(0, True, 1), _decision(1, False, 0), _decision(2, True, 7)]


def test_suspects_are_inside_accepted_regions_with_another_label():
    codes = np.array([[0.1, 0.0],    # in region 0 (label 1), labelled 0 -> suspect
                      [0.0, -0.2],   # in region 0, labelled 1 -> agrees
                      [5.0, 5.1],    # in rejected region 1, labelled 3 -> not audited
                      [-3.5, 5.0],   # in region 2 along its wide axis (d² = 0.56), labelled 2
                      [-5.0, 6.5],   # off region 2's narrow axis (d² = 9), labelled 2 -> outside
                      [2.0, 2.0]])   # between regions -> outside
    labels = np.array([0, 1, 3, 2, 2, 4])
    s = audit_labels(_regions(), DECISIONS, codes, labels, quantile=0.5)
    assert isinstance(s, SuspectLabels) and s.threshold == pytest.approx(1.386, abs=1e-3)
    np.testing.assert_array_equal(s.index, [0, 3])
    np.testing.assert_array_equal(s.region, [0, 2])
    np.testing.assert_array_equal(s.given_label, [0, 2])
    np.testing.assert_array_equal(s.region_label, [1, 7])
    np.testing.assert_allclose(s.distance, [0.01, 0.5625])
    assert s.by_region() == {0: 1, 2: 1}
    # a wider quantile takes in more of each Gaussian
    wide = audit_labels(_regions(), DECISIONS, codes, labels, quantile=0.999)
    assert set(wide.index) >= {0, 3, 4, 5}


def test_no_accepted_region_means_no_suspect():
    rejected = [_decision(k, False, 0) for k in range(3)]
    s = audit_labels(_regions(), rejected, np.zeros((4, 2)), np.ones(4, np.int64))
    assert len(s) == 0 and s.by_region() == {}


def test_drop_suspects_removes_exactly_them():
    X = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1)
    y = torch.tensor([0, 1, 3, 2, 2, 4])
    codes = np.array([[0.1, 0.0], [0.0, -0.2], [5.0, 5.1], [-3.5, 5.0], [-5.0, 6.5], [2, 2.0]])
    s = audit_labels(_regions(), DECISIONS, codes, y.numpy())
    X2, y2 = drop_suspects(X, y, s)
    assert X2.flatten().tolist() == [1, 2, 4, 5] and y2.tolist() == [1, 3, 2, 4]


@pytest.mark.parametrize("kw, exc, name", [
    (dict(codes=np.zeros((3, 5))), ValueError, "codes"),
    (dict(labels=np.zeros(2, np.int64)), ValueError, "labels"),
    (dict(quantile=1.0), ValueError, "quantile"),
    (dict(regions="regions"), TypeError, "regions"),
])
def test_bad_input_names_the_parameter(kw, exc, name):
    args = {**dict(regions=_regions(), decisions=DECISIONS, codes=np.zeros((3, 2)),
                   labels=np.zeros(3, np.int64)), **kw}
    with pytest.raises(exc, match=name):
        audit_labels(args.pop("regions"), args.pop("decisions"), args.pop("codes"),
                     args.pop("labels"), **args)
