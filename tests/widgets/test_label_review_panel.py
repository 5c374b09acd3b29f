"""Label-review store and panel: answers persist at once, majority and defaults are right."""
import numpy as np
import pytest
import torch

from defuse_widgets.stages.label_review import LabelReviewSet
from defuse_widgets.storage.label_review_store import LabelReviewStore
from defuse_widgets.widgets import LabelReviewPanel


@pytest.fixture()
def review():
    return LabelReviewSet(np.array([4, 1, 7, 2, 9], np.int64), np.array([0, 0, 0, 1, 1]),
                          np.array([6, 6, 6, 3, 3]), np.array([0, 0, 5, 8, 8]),
                          np.array([0.1, 0.2, 0.3, 0.1, 0.4]))


def test_answers_survive_an_unclosed_store_and_take_the_majority(tmp_path, review):
    path = tmp_path / "votes.sqlite"
    s1 = LabelReviewStore(path, n_classes=10)
    s1.answer("ada", 4, 6)
    s1.answer("bob", 4, 6)
    s1.answer("cy", 4, 0)
    s1.answer("ada", 7, -1)
    s1.answer("ada", 2, 3)
    s1.answer("ada", 2, 8)           # replaces ada's earlier answer
    # no close(): a crash right here must lose nothing
    s2 = LabelReviewStore(path)
    assert s2.answers("ada") == {4: 6, 7: -1, 2: 8}
    assert s2.review_labels(review).tolist() == [6, 0, -1, 8, 8]   # unanswered keep given
    s2.clear("ada", 7)
    assert s2.review_labels(review).tolist() == [6, 0, 5, 8, 8]
    with pytest.raises(ValueError, match="label must be a class index in \\[0, 9\\]"):
        s2.answer("ada", 4, 12)
    with pytest.raises(ValueError, match="train_index"):
        s2.answer("ada", -1, 3)
    with pytest.raises(TypeError, match="review must be a LabelReviewSet"):
        s2.review_labels([1, 2])
    s1.close()
    s2.close()


def test_panel_records_answers_pages_and_applies_them(tmp_path, review):
    X = torch.rand(10, 1, 8, 8)
    y = torch.tensor([0, 0, 8, 0, 0, 0, 0, 5, 0, 8])
    panel = LabelReviewPanel(tmp_path / "v.sqlite", review, X, 10, page_size=2)
    assert panel.n_pages == 3 and len(panel._grid.children) == 2
    with pytest.raises(ValueError, match="annotator must be set"):
        panel.answer(0, 6)
    panel.annotator = "ada"
    panel.answer(0, 6)          # image 4 -> region label 6
    panel.answer(1, 0)          # image 1 keeps its 0
    assert "answered 2/5" in panel._status.value
    tile = panel._grid.children[0]
    assert tile.children[2].children[1].button_style == "info"   # "-> 6" is shown chosen
    panel.page = 2
    assert len(panel._grid.children) == 1 and panel._next.disabled and not panel._prev.disabled
    panel.answer(4, -1)         # image 9: none of the above -> dropped
    y2, keep, changed = panel.apply(y)
    assert y2[4] == 6 and y2[1] == 0 and not keep[9] and keep.sum() == 9
    assert sorted(changed.tolist()) == [4, 9]
    panel.close()
    again = LabelReviewPanel(tmp_path / "v.sqlite", review, X, 10, annotator="ada")
    assert again.labels().tolist() == [6, 0, 5, 8, -1] and "answered 3/5" in again._status.value
    again.close()


def test_panel_rejects_bad_input(tmp_path, review):
    with pytest.raises(TypeError, match="review must be a LabelReviewSet"):
        LabelReviewPanel(tmp_path / "v.sqlite", "r", torch.rand(10, 1, 8, 8), 10)
    with pytest.raises(ValueError, match="X must be a Tensor of shape"):
        LabelReviewPanel(tmp_path / "v.sqlite", review, torch.rand(5, 1, 8, 8), 10)
    with pytest.raises(ValueError, match="page_size must be a positive int"):
        LabelReviewPanel(tmp_path / "v.sqlite", review, torch.rand(10, 1, 8, 8), 10, page_size=0)


def test_other_class_dropdown_records_an_answer(tmp_path, review):
    panel = LabelReviewPanel(tmp_path / "v.sqlite", review, torch.rand(10, 1, 8, 8), 10,
                             annotator="ada", page_size=2)
    panel.page = 1
    panel._grid.children[0].children[3].value = 3      # row 2 = image 7, given 5, region 6
    assert panel.store.answers("ada") == {7: 3}
    assert panel._grid.children[0].children[3].value == 3   # re-rendered with the answer
    panel.close()


def test_keys_put_validation_answers_after_the_training_images(tmp_path, review):
    X_val = torch.rand(10, 1, 8, 8)       # the review set indexes the validation split
    keys = review.index + 100             # as Session.review_keys does with n_train=100
    panel = LabelReviewPanel(tmp_path / "v.sqlite", review, X_val, 10, annotator="ada",
                             keys=keys)
    panel.answer(0, 6)
    panel._grid.children[1].children[2].children[0].click()   # row 1: keep its label 0
    assert panel.store.answers("ada") == {104: 6, 101: 0}
    assert "answered 2/5" in panel._status.value
    assert panel._grid.children[0].children[2].children[1].button_style == "info"
    assert panel.labels().tolist() == [6, 0, 5, 8, 8]
    plain = LabelReviewPanel(panel.store, review, X_val, 10, annotator="ada")
    assert plain.labels().tolist() == review.given_label.tolist()   # train keys: unanswered
    with pytest.raises(ValueError, match="keys must be non-negative ints of shape \\(5,\\)"):
        LabelReviewPanel(panel.store, review, X_val, 10, keys=keys[:3])
    panel.close()
