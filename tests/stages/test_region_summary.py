"""One row per region: mixture columns, the ρ decision as votes arrive, real-image grounding."""
import json

import numpy as np
import pytest

from defuse_widgets.stages.distillation import distill
from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.stages.region_summary import DECISIONS, region_rows
from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE, AnnotationStore

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def regions():
    """Two regions: 400 codes of 4s (300 predicted 9, 100 predicted 1), 200 of 2s predicted 7."""
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    z = np.concatenate([rng.multivariate_normal([0, 0], cov, 400),
                        rng.multivariate_normal([8, 8], np.eye(2) * 0.1, 200)])
    src = np.r_[np.full(400, 4), np.full(200, 2)]
    pred = np.r_[np.full(300, 9), np.full(100, 1), np.full(200, 7)]
    regions = distill(z, source_label=src, predicted_label=pred, n_classes=10, n_components=6,
                      eps=0.05)
    assert len(regions) == 2 and regions.member_counts.tolist() == [400, 200]
    return regions


@pytest.fixture
def store(tmp_path):
    """A store where region 0's four review samples are predicted 9 and region 1's two, 7."""
    with AnnotationStore(tmp_path / "votes.sqlite", n_classes=10) as store:
        store.set_review_set(0, [9, 9, 9, 9])
        store.set_review_set(1, [7, 7])
        yield store


@pytest.fixture
def grounding():
    """Region 0: 12 validation images (3 right) and 9 test (3 right); region 1: none."""
    a_val, ok_val = np.r_[np.zeros(12), -np.ones(88)], np.r_[np.arange(12) < 3, np.ones(88)]
    a_test, ok_test = np.r_[np.zeros(9), -np.ones(91)], np.r_[np.arange(9) < 3, np.ones(91)]
    return RegionGrounding(2, {"validation": a_val.astype(np.int64),
                               "test": a_test.astype(np.int64)},
                           {"validation": ok_val.astype(bool), "test": ok_test.astype(bool)})


def test_mixture_columns_hold_weight_members_and_top_confusions(regions):
    rows = region_rows(regions)
    assert [r["region"] for r in rows] == [0, 1]
    assert rows[0]["weight"] == pytest.approx(float(regions.weights[0]))
    assert [r["members"] for r in rows] == [400, 200]
    assert rows[0]["confusions"] == [[4, 9, 300], [4, 1, 100]]
    assert rows[0]["top_confusions"] == "4 → 9 (75 %), 4 → 1 (25 %)"
    assert rows[1]["top_confusions"] == "2 → 7 (100 %)"
    named = region_rows(regions, class_names=NAMES)
    assert named[0]["top_confusions"] == "four → nine (75 %), four → one (25 %)"


def test_without_store_or_grounding_nothing_is_labelled_or_grounded(regions):
    for row in region_rows(regions):
        assert (row["votes"], row["annotators"], row["disagreement"]) == (0, 0, None)
        assert (row["decision"], row["label"]) == ("not labelled", None)
        assert (row["verdict"], row["accuracy"], row["real_images"]) == (None, None, None)


def test_votes_turn_a_region_from_not_labelled_to_accepted(regions, store):
    assert [r["decision"] for r in region_rows(regions, store=store)] == ["not labelled"] * 2
    store.cast_votes([("ada", 0, 0, 4), ("ada", 0, 1, 4), ("ada", 0, 2, 4), ("ada", 0, 3, 9),
                      ("bob", 0, 0, NONE_OF_THE_ABOVE)])
    row = region_rows(regions, store=store, class_names=NAMES)[0]
    assert (row["votes"], row["annotators"]) == (5, 2)
    assert row["disagreement"] == pytest.approx(0.75)       # 3 of the 4 class votes
    assert (row["decision"], row["label"]) == ("accepted", "four")
    strict = region_rows(regions, store=store, rho=0.8)[0]  # 0.75 is not above 0.8
    assert (strict["decision"], strict["label"]) == ("rejected", None)


def test_agreeing_or_only_none_votes_reject_the_region(regions, store):
    store.cast_votes([("ada", 1, 0, 7), ("ada", 1, 1, 7)])
    row = region_rows(regions, store=store)[1]
    assert (row["decision"], row["disagreement"], row["votes"]) == ("rejected", 0.0, 2)
    store.cast_votes([("ada", 0, 0, NONE_OF_THE_ABOVE)])
    row = region_rows(regions, store=store)[0]
    assert (row["decision"], row["disagreement"], row["votes"]) == ("rejected", None, 1)
    assert set(r["decision"] for r in region_rows(regions, store=store)) <= set(DECISIONS)


def test_grounding_columns_give_the_verdict_and_real_image_accuracy(regions, grounding):
    rows = region_rows(regions, grounding=grounding)
    assert rows[0]["verdict"] == grounding.verdict(0) == "confirmed"
    assert rows[0]["accuracy"] == pytest.approx(6 / 21) and rows[0]["real_images"] == 21
    assert (rows[1]["verdict"], rows[1]["accuracy"], rows[1]["real_images"]) == (
        "no_support", None, 0)


def test_rows_are_json_without_nan(regions, store, grounding):
    store.cast_votes([("ada", 0, 0, NONE_OF_THE_ABOVE)])    # disagreement nan in the decision
    rows = region_rows(regions, store=store, grounding=grounding)
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows


def test_bad_inputs_name_the_parameter(regions, tmp_path):
    with pytest.raises(TypeError, match="regions must be a Regions; got"):
        region_rows({"means": []})
    other = RegionGrounding(3, {"validation": np.zeros(2, np.int64)},
                            {"validation": np.ones(2, bool)})
    with pytest.raises(ValueError, match="grounding must be of the 2 regions; got one of 3"):
        region_rows(regions, grounding=other)
    with pytest.raises(ValueError, match="class_names must name all 10 classes; got"):
        region_rows(regions, class_names=NAMES[:3])
    with pytest.raises(ValueError, match=r"rho must be < 1.0; got 1.0"):
        region_rows(regions, rho=1.0)
    with AnnotationStore(tmp_path / "other.sqlite", n_classes=3) as small:
        with pytest.raises(ValueError, match="store must hold votes on the regions' 10 classes; "
                                             "got a store of 3"):
            region_rows(regions, store=small)
    with pytest.raises(TypeError, match="store must be an AnnotationStore or None"):
        region_rows(regions, store=str(tmp_path / "votes.sqlite"))
