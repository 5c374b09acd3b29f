"""Grounding in the widgets: the gallery's stats and the labeling panel's info show real images."""
import numpy as np
import pytest

from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.widgets._grounding_view import grounding_html, session_grounding
from defuse_widgets.widgets.labeling_panel import LabelingPanel
from defuse_widgets.widgets.region_gallery import RegionGallery


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    from defuse_widgets.stages.distillation import distill

    return distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)


@pytest.fixture
def grounding(regions):
    """Region 0: 12 validation images (3 right), 9 test (3 right); the others: none."""
    n = len(regions)
    a_val, ok_val = np.r_[np.zeros(12), -np.ones(88)], np.r_[np.arange(12) < 3, np.ones(88)]
    a_test, ok_test = np.r_[np.zeros(9), -np.ones(91)], np.r_[np.arange(9) < 3, np.ones(91)]
    return RegionGrounding(n, {"validation": a_val.astype(np.int64), "test": a_test.astype(
        np.int64)}, {"validation": ok_val.astype(bool), "test": ok_test.astype(bool)})


def test_html_names_counts_accuracy_and_verdict(grounding):
    text = grounding_html(grounding, 0)
    assert "Real images here: 12 validation (accuracy 25%), 9 test (33%)" in text
    assert "bug confirmed on real data" in text
    assert "No real validation or test image" in grounding_html(grounding, 1)
    assert grounding_html(None, 0) == ""


def test_gallery_shows_grounding_and_follows_the_trait(regions, tiny_models, grounding):
    clf, vae = tiny_models
    plain = RegionGallery(regions, vae, clf, n_samples=4)
    assert "Real images" not in plain.stats.value
    gallery = RegionGallery(regions, vae, clf, n_samples=4, grounding=grounding)
    assert "12 validation (accuracy 25%)" in gallery.stats.value
    gallery.region = 1
    assert "cannot tell the two apart" in gallery.stats.value
    gallery.grounding = None
    assert "Real images" not in gallery.stats.value and "real" not in gallery.stats.value


def test_panel_shows_grounding_next_to_the_region(tmp_path, regions, tiny_models, grounding):
    clf, vae = tiny_models
    panel = LabelingPanel(tmp_path / "votes.sqlite", regions, vae, clf, annotator="ada",
                          grounding=grounding)
    try:
        assert "bug confirmed on real data" in panel._info.value and "Region 0" in panel._info.value
        panel.skip()
        assert "No real validation or test image" in panel._info.value
    finally:
        panel.close()


def test_grounding_of_other_regions_is_refused(regions, tiny_models):
    clf, vae = tiny_models
    other = RegionGrounding(len(regions) + 1, {"validation": np.zeros(3, np.int64)},
                            {"validation": np.ones(3, bool)})
    with pytest.raises(ValueError, match=f"grounding must be of the {len(regions)} regions"):
        RegionGallery(regions, vae, clf, grounding=other)
    with pytest.raises(TypeError, match="grounding must be a RegionGrounding or None; got dict"):
        RegionGallery(regions, vae, clf, grounding={})


def test_session_grounding_is_none_when_it_cannot_be_computed(regions):
    class Broken:
        def load_grounding(self, regions):
            return None

        def ground_regions(self, regions):
            raise ValueError("vae must have encode")

    assert session_grounding(Broken(), regions) is None
