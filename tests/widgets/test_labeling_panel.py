import numpy as np
import pytest

from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE, AnnotationStore
from defuse_widgets.widgets.labeling_panel import LabelingPanel


def _unpredicted(store, region):
    """A class the classifier predicts for none of the region's review samples."""
    return min(set(range(10)) - set(store.review_predictions(region).tolist()))


def test_key_vote_reaches_store_and_advances(make_panel):
    panel = make_panel()
    seen = []
    panel.on_vote(seen.append)
    assert panel.position == (0, 0)
    assert panel.handle_key("8")
    votes = panel.store.votes(annotator="ada")
    assert [(v.region, v.sample, v.label) for v in votes] == [(0, 0, 8)]
    assert seen == votes and panel.position == (0, 1)
    panel.handle_key("n")
    assert panel.store.votes(annotator="ada")[1].label == NONE_OF_THE_ABOVE
    badges = [b.value for b in panel._tiles.badges]
    assert "defuse-vote-badge" in badges[0] and ">8</span>" in badges[0]
    assert ">none</span>" in badges[1] and "defuse-vote-badge" not in badges[2]
    # the vote is a badge under the thumbnail, not a button styled like the class buttons
    assert [b.description for b in panel._tiles.buttons[:3]] == ["#1", "#2", "#3"]
    assert all(b.button_style != "success" for b in panel._tiles.buttons)
    assert panel._class_buttons[8].button_style == ""   # sample 3 shown: no vote on it
    assert not panel.handle_key("q")


def test_review_set_is_recorded_deterministically(make_panel, regions, tiny_models):
    from defuse_widgets.stages.failure_data import review_set

    clf, vae = tiny_models
    panel = make_panel()
    _, predicted = review_set(regions, 0, vae, clf, size=10)
    np.testing.assert_array_equal(panel.store.review_predictions(0), predicted)
    assert panel.store.regions() == [0]  # others are recorded when first shown
    panel.skip()
    assert panel.position == (1, 0) and panel.store.regions() == [0, 1]


def test_button_click_and_undo(make_panel):
    panel = make_panel()
    panel._class_buttons[3].click()
    panel._none.click()
    assert [v.label for v in panel.store.votes(annotator="ada")] == [3, NONE_OF_THE_ABOVE]
    assert panel.status.startswith("Saved: region 0, sample 2")
    panel.handle_key("Backspace")
    assert [v.label for v in panel.store.votes(annotator="ada")] == [3]
    assert panel.position == (0, 1)  # back on the undone sample
    assert panel.status.startswith("Undone: region 0, sample 2")   # one numbering (issue 15)
    panel._undo.click()
    assert panel.store.votes(annotator="ada") == [] and panel.position == (0, 0)


def test_arrows_move_across_regions(make_panel):
    panel = make_panel()
    panel.handle_key("ArrowLeft")
    assert panel.position == (0, 0)  # clamped at the start
    panel.position = (0, 9)
    panel.handle_key("ArrowRight")
    assert panel.position == (1, 0)
    panel.handle_key("ArrowLeft")
    assert panel.position == (0, 9)


def test_key_capture_box(make_panel):
    panel = make_panel()
    keys = panel._keys
    assert {"0", "9", "n", "Backspace", "ArrowLeft", "ArrowRight"} <= set(keys.capture)
    # what the browser sends: one custom message per captured key
    keys._on_message(keys, {"key": "5"}, [])
    assert [v.label for v in panel.store.votes(annotator="ada")] == [5]
    assert panel.position == (0, 1)
    keys._on_message(keys, {"key": "ArrowRight"}, [])
    assert panel.position == (0, 2)
    keys._on_message(keys, {"key": "Backspace"}, [])
    assert panel.store.votes(annotator="ada") == []
    keys.press("x")                      # not a shortcut: ignored, nothing stored
    keys._on_message(keys, {"bogus": 1}, [])
    assert panel.store.votes(annotator="ada") == [] and panel.position == (0, 0)


def test_progress_and_resume(make_panel, tmp_path):
    panel = make_panel()
    assert panel._progress.value == 0 and panel._progress.max == len(panel.regions)
    for _ in range(10):
        panel.handle_key("1")
    assert panel._progress.value == 1
    assert panel._progress_label.value.startswith("1/")
    assert panel.position == (0, 9)   # the finished region stays shown
    panel.handle_key("]")
    assert panel.position == (1, 0)
    panel.handle_key("2")
    panel.handle_key("2")
    assert panel.position == (1, 2)
    panel.close()

    again = make_panel()  # a new session on the same file
    assert again.position == (1, 2) and again._progress.value == 1
    assert "resuming at region 1, sample 3" in again.status
    assert "<b>Region 1</b>" in again._info.value   # the header and the message agree
    other = make_panel(annotator="bob")
    assert other.position == (0, 0)
    other.annotator = "ada"
    assert other.position == (1, 2)


def test_no_vote_without_annotator(make_panel):
    panel = make_panel(annotator="")
    assert panel.vote(1) is None
    assert panel.store.votes() == [] and "name" in panel.status
    assert panel._class_buttons[0].disabled


def test_agreement_appears_after_two_annotators(make_panel):
    ada = make_panel()
    wrong = _unpredicted(ada.store, 0)
    for _ in range(10):
        ada.vote(wrong)
    ada.position = (0, 0)
    assert "1 annotator (ada)" in ada._agreement.value
    assert "once a second one votes" in ada._agreement.value
    bob = make_panel(annotator="bob")
    for _ in range(10):
        bob.vote(wrong)
    bob.position = (0, 0)
    assert "agreement 100%" in bob._agreement.value
    assert "misclassification region" in bob._agreement.value
    assert "not a" not in bob._agreement.value


def test_export_writes_npz(make_panel, tmp_path):
    panel = make_panel()
    with pytest.raises(ValueError, match="accept at least one"):
        panel.export()
    panel._export.click()  # the button reports instead of raising
    assert "Export failed" in panel.status
    wrong = _unpredicted(panel.store, 0)
    for _ in range(10):
        panel.vote(wrong)
    X_f, y_f = panel.export()
    assert len(X_f) == len(y_f) == 16 and set(y_f.tolist()) == {wrong}
    with np.load(tmp_path / "failure_data.npz") as data:
        assert data["X_f"].shape == (16, 1, 8, 8)
        assert data["y_f"].tolist() == [wrong] * 16
        assert data["region"].tolist() == [0] * 16
    assert not (tmp_path / "failure_data.npz.tmp").exists()


def test_store_object_is_left_open(tmp_path, regions, tiny_models):
    clf, vae = tiny_models
    store = AnnotationStore(tmp_path / "s.sqlite", n_classes=10)
    panel = LabelingPanel(store, regions, vae, clf, annotator="ada")
    panel.vote(4)
    panel.close()
    assert store.votes()[0].label == 4
    store.close()


def test_store_failure_on_click_is_shown_and_the_panel_stays_usable(make_panel, monkeypatch):
    import sqlite3

    panel = make_panel()
    real = panel.store.cast_vote
    calls = {"n": 0}

    def flaky(*args, **kw):   # the disk is busy once, as with a locked network share
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kw)

    monkeypatch.setattr(panel.store, "cast_vote", flaky)
    panel._class_buttons[3].click()
    assert "database is locked" in panel.error.value and "3 failed" in panel.error.value
    assert isinstance(panel.error.error_, sqlite3.OperationalError)
    assert panel.store.votes(annotator="ada") == [] and panel.position == (0, 0)
    panel._class_buttons[3].click()                       # the same click, once more
    assert [v.label for v in panel.store.votes(annotator="ada")] == [3]
    assert panel.error.value == "" and panel.position == (0, 1)
    panel._keys._on_message(panel._keys, {"key": "Backspace"}, [])
    assert panel.store.votes(annotator="ada") == []


def test_a_lone_annotator_sees_the_decision_and_the_rule(make_panel):
    """Issue 15: one annotator used to read only "appears once two have voted"."""
    panel = make_panel()
    assert "No votes on this region yet" in panel._agreement.value
    for _ in range(panel.review_size):
        panel.handle_key("n")
    panel.goto(0)
    assert "only “None of the above” votes" in panel._agreement.value
    predicted = panel.store.review_predictions(0)
    for p in predicted:       # vote for a class other than the classifier's on every sample
        panel.handle_key(str((int(p) + 1) % 10))
    panel.goto(0)
    text = panel._agreement.value
    assert "1 annotator (ada)" in text and "disagreement with the classifier 100%" in text
    assert "decision so far: <b style='color:#dc0000'>misclassification region" in text
    assert "count neither way" in text and "<i>more than</i> ρ = 0.5" in text


def _png_size(png: bytes) -> tuple:
    import io

    from PIL import Image
    return Image.open(io.BytesIO(png)).size


def test_zoom_and_contrast_rerender_the_review_image(make_panel):
    import io

    from PIL import Image
    panel = make_panel()
    assert _png_size(panel._image.value) == (192, 192)
    before = np.asarray(Image.open(io.BytesIO(panel._image.value)).convert("L"), dtype=float)
    panel._image.zoom = 384
    assert _png_size(panel._image.value) == (384, 384)
    panel._image.zoom, panel._image.contrast = 192, 3.0
    after = np.asarray(Image.open(io.BytesIO(panel._image.value)).convert("L"), dtype=float)
    assert after.std() > before.std()          # stretched about the mean
    panel.move(1)                              # the controls stay as set for the next sample
    assert panel._image.contrast == 3.0 and _png_size(panel._image.value) == (192, 192)
    assert panel.store.votes() == []           # rendering never votes


def test_stretch_contrast_keeps_the_mean_and_clips():
    from defuse_widgets.widgets.labeling_panel.review_image import stretch_contrast

    x = np.array([[[0.4, 0.5, 0.6, 0.5]]], dtype=np.float32)
    np.testing.assert_allclose(stretch_contrast(x, 2.0), [[[0.3, 0.5, 0.7, 0.5]]], atol=1e-6)
    assert stretch_contrast(x, 100.0).max() == 1.0 and stretch_contrast(x, 100.0).min() == 0.0


def test_the_classifiers_confidence_is_shown(make_panel, regions, tiny_models):
    from defuse_widgets.models.inference import predict_proba
    from defuse_widgets.stages.failure_data import review_set

    clf, vae = tiny_models
    panel = make_panel()
    images, _ = review_set(regions, 0, vae, clf, size=10)
    panel.goto(0, 3)
    conf = float(predict_proba(clf, images)[3].max())
    assert f"with confidence {conf:.0%}" in panel._info.value


def test_next_unlabelled_skips_voted_samples_and_wraps(make_panel):
    panel = make_panel()
    for _ in range(3):
        panel.vote(1)                                  # samples 0, 1, 2 of region 0
    panel.goto(0, 5)
    panel.vote(2)                                      # sample 5
    panel.goto(0, 4)
    assert panel.handle_key("u") and panel.position == (0, 6)   # 5 has a vote
    panel.goto(len(panel.regions) - 1, panel.review_size - 1)
    panel.next_unlabelled()
    assert panel.position == (0, 3)                    # wraps past the voted 0..2
    other = make_panel(annotator="bo")                 # someone else's votes do not count
    other.goto(0, 0)
    other.next_unlabelled()
    assert other.position == (0, 1)


def test_saliency_toggle_on_the_review_image(make_panel):
    panel = make_panel()
    plain = panel._image.value
    panel._image._saliency.value = True
    assert panel._image.value != plain
    panel.move(1)                                  # stays on for the next sample
    assert panel._image.saliency
    panel._image.saliency = False
    panel.move(-1)
    assert panel._image.value == plain and panel.store.votes() == []


def test_a_decoder_of_another_latent_size_is_refused_naming_both(tmp_path, regions, bare_vae,
                                                                 tiny_models):
    clf, _ = tiny_models
    other = regions.n_latent + 2
    with pytest.raises(ValueError, match=rf"decoder must decode codes of {regions.n_latent} "
                                         r"latent dimensions \(the regions' latent size\); it "
                                         rf"takes codes of {other} latent dimensions"):
        LabelingPanel(tmp_path / "votes.sqlite", regions, bare_vae(n_latent=other), clf)
    assert not (tmp_path / "votes.sqlite").exists()
