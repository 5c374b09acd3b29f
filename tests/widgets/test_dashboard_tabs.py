"""The dashboard's wiring between tabs: a latent-map selection reaches the gallery."""
import contextlib

import numpy as np
import pytest
import torch

from defuse_widgets.models.inference import decode
from defuse_widgets.widgets._render import to_png
from defuse_widgets.widgets.dashboard import DefuseDashboard
from defuse_widgets.widgets.dashboard.tabs import send_selection
from defuse_widgets.workflow import DefuseConfig

TIMEOUT = 120  # only guards against a hung thread, never a threshold
TINY = dict(dataset="digits", Q=4, a=5.0, b=5.0, centered=True, n_components=3, eps=0.0,
            max_per_instance=3, map_size=150, tsne_iter=50, lams=(1.0,), epochs=1,
            n_finetune=16, n_region_test=16)


@pytest.fixture
def dash(tmp_path, digits, tiny_models):
    clf, vae = tiny_models
    dash = DefuseDashboard(clf, vae, digits, tmp_path / "session", config=DefuseConfig(**TINY),
                           annotator="ada")
    yield dash
    dash.close()
    if dash.explorer is not None:
        with contextlib.suppress(Exception):
            dash.explorer.wait(TIMEOUT)


def test_map_selection_reaches_the_gallery(dash, tiny_models, digits):
    _, vae = tiny_models
    dash.run_identification(wait=True)
    explorer = dash.explorer
    explorer.wait(TIMEOUT)
    explorer.select_points(train=[0, 5], adversarial=[1])
    explorer._send_button.click()   # no regions, so no gallery yet: said in the map
    assert "run distillation first" in explorer.error.value

    dash.run_distillation(wait=True)
    explorer = dash.explorer.wait(TIMEOUT)   # rebuilt with the regions
    assert explorer._send_button.layout.display is None   # wired: the button shows
    explorer.select_points(train=[0, 5], adversarial=[1])
    explorer._send_button.click()
    assert explorer.error.value == ""
    assert dash.stage == "distillation" and dash.gallery.mode == "selection"
    sel = explorer.selected_examples()
    codes = np.concatenate([dash.adversarial.codes[[1]], sel["codes"][1:]])
    np.testing.assert_allclose(sel["codes"], codes, rtol=1e-6)
    images = decode(vae, torch.as_tensor(sel["codes"]))
    assert dash.gallery.images == [to_png(im, size=64) for im in images]
    assert sel["kinds"] == ["adversarial", "train", "train"]
    np.testing.assert_array_equal(sel["true_labels"][1:], [explorer._train_labels[i]
                                                           for i in (0, 5)])


def test_send_selection_needs_a_gallery():
    class NoRegions:
        gallery = None
    with pytest.raises(ValueError, match="run distillation first"):
        send_selection(NoRegions(), {})
