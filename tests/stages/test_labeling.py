"""Tests of the ρ rule, majority labels and annotator agreement (paper §4.1, Fig. 7)."""
import math

import numpy as np
import pytest

from defuse_widgets.stages.labeling import (
    MISSING,
    NONE_OF_THE_ABOVE,
    RegionDecision,
    agreement_summary,
    decide,
    decide_region,
)
from defuse_widgets.storage.annotations import AnnotationStore

N, M = NONE_OF_THE_ABOVE, MISSING


def test_disagreement_exactly_rho_is_not_a_region():
    predicted = np.zeros(10, dtype=np.int64)
    votes = np.array([[1] * 5 + [0] * 5])                 # 5 of 10 disagree
    d = decide_region(votes, predicted, rho=0.5)
    assert d.disagreement == 0.5
    assert not d.is_misclassification_region
    votes = np.array([[1] * 6 + [0] * 4])                 # 6 of 10 disagree
    assert decide_region(votes, predicted, rho=0.5).is_misclassification_region


def test_rho_zero_flags_any_disagreement_but_not_none():
    predicted = np.array([3, 3])
    assert decide_region([[3, 4]], predicted, rho=0.0).is_misclassification_region
    assert not decide_region([[3, 3]], predicted, rho=0.0).is_misclassification_region


def test_none_votes_are_discarded_from_disagreement_and_label():
    predicted = np.array([2, 2, 2])
    votes = np.array([[7, N, N],
                      [7, N, 2],
                      [N, N, 2]])
    d = decide_region(votes, predicted, region=5)
    assert d.region == 5
    assert (d.n_votes, d.n_none) == (9, 5)
    assert d.disagreement == 0.5                          # 2 of the 4 real votes
    assert not d.is_misclassification_region
    assert d.label == 2                                   # tie 7 vs 2 -> smallest


def test_all_none_votes_give_no_label_and_no_region():
    d = decide_region(np.full((5, 10), N), np.zeros(10, dtype=np.int64))
    assert d.label is None
    assert math.isnan(d.disagreement)
    assert not d.is_misclassification_region
    assert (d.n_votes, d.n_none) == (50, 50)
    assert d.agreement == 1.0                             # all agree on "none"


def test_no_votes_at_all():
    d = decide_region(np.full((2, 3), M), [0, 1, 2])
    assert d.n_votes == 0 and d.label is None and math.isnan(d.agreement)
    d = decide_region(np.zeros((0, 3), dtype=np.int64), [0, 1, 2])
    assert d.n_votes == 0 and not d.is_misclassification_region


def test_majority_label_ties_go_to_smallest_class():
    votes = np.array([[4, 1, 4, 1], [M, 9, 9, M]])
    assert decide_region(votes, [0, 0, 0, 0]).label == 1  # 1, 4, 9 twice each
    assert decide_region([[6, 5, 6, 5, 8]], [0] * 5).label == 5


def test_majority_label_pools_votes_over_samples():
    votes = np.array([[3, 3, 8], [3, 8, 8], [3, 8, 8]])   # 3: 4 votes, 8: 5 votes
    assert decide_region(votes, [0, 0, 0]).label == 8


def test_agreement_on_hand_built_matrix():
    votes = np.array([[1, 3, M, N],
                      [1, 3, M, N],
                      [1, M, M, N],
                      [2, M, M, 2],
                      [N, M, M, 2]])
    d = decide_region(votes, [1, 3, 0, 2])
    np.testing.assert_allclose(d.sample_agreement[:2], [0.6, 1.0])
    assert math.isnan(d.sample_agreement[2])
    assert d.sample_agreement[3] == pytest.approx(0.6)    # "none" is the majority here
    assert d.agreement == pytest.approx((0.6 + 1.0 + 0.6) / 3)


def test_validation_names_the_parameter():
    with pytest.raises(ValueError, match="votes"):
        decide_region([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="votes"):
        decide_region([[0.5, 1.0]], [1, 2])
    with pytest.raises(ValueError, match=r"votes .*got -3"):
        decide_region([[0, -3]], [1, 2])
    with pytest.raises(ValueError, match=r"predicted .*\(3\); got length 2"):
        decide_region([[0, 1, 2]], [1, 2])
    with pytest.raises(ValueError, match="predicted"):
        decide_region([[0, 1]], [[1, 2]])
    with pytest.raises(ValueError, match="rho"):
        decide_region([[0, 1]], [1, 2], rho=1.0)
    with pytest.raises(ValueError, match="rho"):
        decide_region([[0, 1]], [1, 2], rho=-0.1)


def test_decide_reads_every_region_from_the_store(tmp_path):
    with AnnotationStore(tmp_path / "v.sqlite", n_classes=10) as store:
        store.set_review_set(3, [1, 1])
        store.set_review_set(0, [4, 4])
        for who in ("a", "b", "c"):
            store.cast_vote(who, 3, 0, 7)
            store.cast_vote(who, 3, 1, 7)
            store.cast_vote(who, 0, 0, 4)
        store.cast_vote("a", 0, 1, 9)
        decisions = decide(store)
        with pytest.raises(TypeError, match="store"):
            decide(object())
    assert [d.region for d in decisions] == [0, 3]
    r0, r3 = decisions
    assert (r3.is_misclassification_region, r3.label, r3.disagreement) == (True, 7, 1.0)
    assert (r0.is_misclassification_region, r0.label, r0.disagreement) == (False, 4, 0.25)
    assert r0.n_votes == 4


def _decision(is_region, sample_agreement):
    a = np.asarray(sample_agreement, dtype=float)
    return RegionDecision(region=0, is_misclassification_region=is_region, label=1,
                          disagreement=0.9 if is_region else 0.1,
                          agreement=float(np.nanmean(a)), n_votes=5, n_none=0,
                          sample_agreement=tuple(a))


def test_agreement_summary_by_sample_and_by_region():
    decisions = [_decision(True, [0.6, 0.8]), _decision(True, [1.0, np.nan]),
                 _decision(False, [1.0, 1.0, 0.4])]
    s = agreement_summary(decisions)
    assert set(s) == {"misclassification_region", "other", "all"}
    mr = s["misclassification_region"]
    assert mr["n"] == 3 and mr["mean"] == pytest.approx(0.8)
    assert mr["sem"] == pytest.approx(np.std([0.6, 0.8, 1.0], ddof=1) / np.sqrt(3))
    assert s["other"]["n"] == 3 and s["other"]["mean"] == pytest.approx(0.8)
    assert s["all"]["n"] == 6
    r = agreement_summary(decisions, unit="region")
    assert r["misclassification_region"]["n"] == 2
    assert r["misclassification_region"]["mean"] == pytest.approx((0.7 + 1.0) / 2)
    assert r["other"]["n"] == 1 and math.isnan(r["other"]["sem"])


def test_agreement_summary_of_nothing_is_nan():
    s = agreement_summary([])
    assert s["all"]["n"] == 0 and math.isnan(s["all"]["mean"])
    with pytest.raises(ValueError, match="unit"):
        agreement_summary([], unit="image")


def test_labels_outside_the_classes_are_refused_with_the_range():
    with pytest.raises(ValueError, match=r"votes must hold class indices in \[0, 9\] \(10 "
                                         r"classes\), -1 for 'none of the above' or -2 for "
                                         r"missing; got 99"):
        decide_region([[99, 1]], [0, 1], n_classes=10)
    with pytest.raises(ValueError, match=r"predicted must hold class indices in \[0, 2\] "
                                         r"\(3 classes\); got 3"):
        decide_region([[0, N, M]], [0, 1, 3], n_classes=3)
    d = decide_region([[9, N, M]], [0, 1, 2], n_classes=10)   # 9, "none" and missing are fine
    assert d.label == 9 and d.n_none == 1
