"""Fixtures of the labeling-panel tests: regions of the tiny models, and panels on them."""
import pytest

from defuse_widgets.widgets.labeling_panel import LabelingPanel


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    """Three regions distilled from the tiny adversarial examples (a module may define its own)."""
    from defuse_widgets.stages.distillation import distill

    regions = distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)
    assert len(regions) >= 2
    return regions


@pytest.fixture
def make_panel(tmp_path, regions, tiny_models):
    """``make_panel(annotator="ada", **kw)``: a LabelingPanel on a vote store in tmp_path,
    closed after the test.
    """
    clf, vae = tiny_models
    panels = []

    def make(annotator="ada", **kw):
        panel = LabelingPanel(tmp_path / "votes.sqlite", regions, vae, clf,
                              annotator=annotator, n_finetune=16, **kw)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.close()
