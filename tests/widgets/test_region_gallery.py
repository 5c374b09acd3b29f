import io

import numpy as np
import pytest
import torch
from PIL import Image

from defuse_widgets.models.inference import predict
from defuse_widgets.stages.distillation import distill
from defuse_widgets.widgets._render import grid_png
from defuse_widgets.widgets.region_gallery import RegionGallery, sample_seed


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    return distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)


@pytest.fixture
def gallery(regions, tiny_models, digits):
    clf, vae = tiny_models
    # fp32: the red labels are then exactly predict()'s (auto may classify in bf16)
    return RegionGallery(regions, vae, clf, digits.class_names, n_samples=8, precision="fp32")


def _size(png):
    return Image.open(io.BytesIO(png)).size


def test_shows_the_seeded_samples_of_the_region(gallery, regions, tiny_models):
    clf, vae = tiny_models
    gallery.region = 1
    _, images = regions.decode(1, 8, vae, tau=0.5, seed=sample_seed(1, 0.5, 0))
    labels = [str(p) for p in predict(clf, images).tolist()]
    assert gallery.image.value == grid_png(images, labels, ncols=8, size=64)


def test_tau_changes_images_and_returning_restores_them(gallery):
    first = gallery.image.value
    gallery.tau = 0.9
    assert gallery.image.value != first
    gallery.tau = 0.5
    assert gallery.image.value == first


def test_slider_is_linked_to_tau(gallery):
    gallery._slider.value = 0.01
    assert gallery.tau == 0.01
    gallery.tau = 0.2
    assert gallery._slider.value == 0.2


def test_resample_draws_new_images(gallery):
    first = gallery.image.value
    gallery._resample_button.click()
    assert gallery.resample_count == 1
    assert gallery.image.value != first
    gallery.resample_count = 0
    assert gallery.image.value == first


def test_prev_next_wrap(gallery, regions):
    n = len(regions)
    assert gallery.region == 0
    gallery._prev.click()
    assert gallery.region == n - 1 and gallery._dropdown.value == n - 1
    gallery._next.click()
    assert gallery.region == 0
    gallery.next_region()
    assert gallery.region == 1


def test_region_change_changes_stats_and_images(gallery, regions):
    first = gallery.image.value
    gallery._dropdown.value = 2
    assert gallery.region == 2 and gallery.image.value != first
    counts = regions.member_counts
    assert f"members = {counts[2]}" in gallery.stats.value
    assert f"weight π = {regions.weights[2]:.4f}" in gallery.stats.value


def test_stats_list_top_confusions(gallery, regions):
    k = int(np.argmax(regions.member_counts))
    gallery.region = k
    s, p, c = regions.top_confusions(k, 1)[0]
    row = f"<td>{s}</td><td>→</td><td style='color:#c00'>{p}</td><td>{c}</td>"
    assert row in gallery.stats.value


def test_all_mode_shows_one_row_per_region(gallery, regions):
    single = gallery.image.value
    gallery.mode = "all"
    assert len(gallery.images) == len(regions)
    assert gallery.images[0] == single   # region 0, same tau and resample count
    gallery.mode = "single"
    assert gallery.images == [single]


def test_n_samples_sets_grid_size(gallery):
    assert _size(gallery.image.value) == (8 * 66 + 2, 66 + 2)
    gallery.n_samples = 20
    assert _size(gallery.image.value) == (8 * 66 + 2, 3 * 66 + 2)


def test_seed_depends_on_all_three():
    seeds = {sample_seed(0, 0.5, 0), sample_seed(1, 0.5, 0), sample_seed(0, 0.51, 0),
             sample_seed(0, 0.5, 1)}
    assert len(seeds) == 4 and sample_seed(2, 0.1, 3) == sample_seed(2, 0.1, 3)


def test_bad_input(gallery, regions, tiny_models):
    clf, vae = tiny_models
    with pytest.raises(ValueError, match="tau must be >= 0.001"):
        gallery.tau = 0.0
    with pytest.raises(ValueError, match="region must be <="):
        gallery.region = len(regions)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        gallery.n_samples = 0
    with pytest.raises(ValueError, match="class_names must name all 10 classes"):
        RegionGallery(regions, vae, clf, ["a", "b"])
    with pytest.raises(TypeError, match="regions must be a Regions"):
        RegionGallery({}, vae, clf)
    with pytest.raises(TypeError, match="vae must be a torch.nn.Module"):
        RegionGallery(regions, None, clf)


class _BrokenDecoder(torch.nn.Module):
    def forward(self, z):
        raise RuntimeError("CUDA out of memory (simulated)")

    decode = forward


def test_render_error_is_shown_and_the_gallery_recovers(gallery):
    vae = gallery._vae
    gallery._vae = _BrokenDecoder()
    before = gallery.images[0]
    gallery._slider.value = 0.9                   # what a slider move does
    assert "out of memory" in gallery.error.value and "τ=0.9" in gallery.error.value
    assert gallery.images[0] == before            # the last good grid stays on screen
    gallery._vae = vae
    gallery._resample_button.click()
    assert gallery.error.value == "" and gallery.images[0] != before


def _n_widgets():
    from ipywidgets.widgets import widget
    return len(widget._instances)


def test_all_mode_draws_each_region_as_single_mode_does(gallery, regions):
    gallery.mode = "all"
    gallery.tau = 0.3
    rows = gallery.images
    gallery.mode = "single"
    for k in range(len(regions)):
        gallery.region = k
        assert gallery.image.value == rows[k]   # the one batched pass draws the same grids


def test_tau_change_in_all_mode_reuses_its_widgets(gallery, regions):
    gallery.mode = "all"
    rows = gallery.shown
    before = _n_widgets()
    first = gallery.images
    for tau in np.geomspace(0.05, 1.5, 10):
        gallery.tau = float(tau)
    assert _n_widgets() == before               # no widget made, none leaked
    assert gallery.shown == rows       # the same rows, new images in them
    assert gallery.images != first and len(gallery.images) == len(regions)
    mounted = gallery._view.children
    gallery.mode = "single"
    assert gallery.shown == (gallery.stats, gallery.image)
    gallery.mode = "all"
    assert gallery.shown == rows and _n_widgets() == before
    assert gallery._view.children == mounted   # a mode switch hides, the page rebuilds nothing


def test_busy_indicator_is_shown_during_work_and_hidden_after(gallery):
    seen = []
    vae = gallery._vae
    real = vae.decode

    def watching(z):   # what the page sees while the gallery decodes
        seen.append((gallery.busy, gallery.busy_indicator.layout.display,
                     gallery._slider.disabled, gallery._resample_button.disabled))
        return real(z)

    vae.decode = watching
    try:
        gallery.mode = "all"
        gallery.tau = 0.7
    finally:
        del vae.decode
    assert seen and all(s == (True, None, True, True) for s in seen)
    assert "defuse-busy" in gallery.busy_indicator._dom_classes
    assert "Resampling" in gallery.busy_indicator.value
    assert (gallery.busy, gallery.busy_indicator.layout.display, gallery._slider.disabled,
            gallery._resample_button.disabled) == (False, "none", False, False)


def test_busy_indicator_is_hidden_after_a_failure(gallery):
    vae = gallery._vae
    gallery._vae = _BrokenDecoder()
    gallery.tau = 0.8
    gallery._vae = vae
    assert "out of memory" in gallery.error.value
    assert gallery.busy_indicator.layout.display == "none" and not gallery._slider.disabled


def test_show_selection_shows_decodes_of_exactly_those_codes(gallery, tiny_adversarial,
                                                             tiny_models):
    from defuse_widgets.models.inference import decode
    from defuse_widgets.widgets._render import to_png

    clf, vae = tiny_models
    idx = [3, 5, 8]
    codes = tiny_adversarial.codes[idx]
    true = tiny_adversarial.true_label[idx]
    gallery.show_selection(codes, kinds=["adversarial", "adversarial", "train"],
                           true_labels=true)
    assert gallery.mode == "selection" and gallery._mode_toggle.value == "selection"
    images = decode(vae, torch.as_tensor(codes, dtype=torch.float32))
    assert gallery.images == [to_png(im, size=64) for im in images]
    view = gallery.selection_view.value
    assert gallery.shown == (gallery.selection_view,)
    assert "3 examples (2 adversarial, 1 training)" in view
    assert view.count("defuse-tile defuse-tile-adversarial") == 2
    assert view.count("defuse-tile defuse-tile-train") == 1
    predicted = predict(clf, images).tolist()
    assert f"<b>training</b><br>true {true[2]}<br><span style='color:#c00'>pred {predicted[2]}" \
        in view
    gallery.tau = 0.9                                  # τ does not move a fixed selection
    assert gallery.images == [to_png(im, size=64) for im in images]
    gallery.mode = "single"
    assert len(gallery.images) == 1


def test_selection_mode_without_a_selection_says_how_to_make_one(gallery):
    gallery.mode = "selection"
    assert "Show selection in gallery" in gallery.selection_view.value
    assert gallery.images == []
    with pytest.raises(ValueError, match="kinds and true_labels must have one entry per code"):
        gallery.show_selection(np.zeros((2, 4)), kinds=["train"])
    with pytest.raises(ValueError, match="codes must have 4 latent dimensions"):
        gallery.show_selection(np.zeros((2, 3)))


def test_a_large_selection_is_shown_spread_over_both_kinds(gallery, tiny_adversarial):
    """The first 64 of a big selection were all adversarial (they come first): spread instead."""
    codes = np.concatenate([tiny_adversarial.codes[:50]] * 2)
    kinds = ["adversarial"] * 50 + ["train"] * 50
    gallery.show_selection(codes, kinds=kinds, true_labels=np.zeros(100, dtype=np.int64))
    view = gallery.selection_view.value
    assert "100 examples (50 adversarial, 50 training); showing 64" in view
    assert len(gallery.images) == 64
    assert view.count("defuse-tile-adversarial") == view.count("defuse-tile-train") == 32


def test_saliency_toggle_overlays_smoothgrad_and_turns_off_cleanly(gallery):
    """Issue 17: saliency on what the gallery shows; the grid is the overlay of smoothgrad."""
    plain = gallery.image.value
    gallery._saliency_box.value = True            # the checkbox a user ticks
    assert gallery.saliency and gallery.image.value != plain
    gallery.saliency = False
    assert gallery.image.value == plain            # same seed: the same samples as before


def test_saliency_overlay_heats_salient_pixels_and_keeps_the_rest_grey():
    from defuse_widgets.widgets._render import saliency_overlay

    images = np.full((1, 1, 4, 4), 0.5, dtype=np.float32)
    maps = np.zeros((1, 4, 4), dtype=np.float32)
    maps[0, 1, 2] = 1.0
    out = saliency_overlay(images, maps)
    assert out.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(out[0, :, 0, 0], [0.4, 0.4, 0.4], atol=1e-6)   # grey, dimmed
    assert out[0, 0, 1, 2] == 1.0 and out[0, 2, 1, 2] == 0.0                 # hot: red/yellow
    with pytest.raises(ValueError, match="maps must have shape"):
        saliency_overlay(images, maps[:, :3])


def test_all_mode_is_compact_cards_and_only_one_mode_picks_a_region(gallery, regions):
    assert not gallery._dropdown.disabled and not gallery._next.disabled
    gallery.mode = "all"
    assert gallery._dropdown.disabled and gallery._prev.disabled and gallery._next.disabled
    (view,) = gallery.shown   # cards side by side, wrapping: no wide stats column
    assert "flex-flow:row wrap" in view.value
    cards = view.value.split("class='defuse-card'")[1:]
    assert len(cards) == len(regions) and all("<img" in c for c in cards)
    s, p, c = regions.top_confusions(1, 1)[0]
    caption = cards[1]
    assert "<b>Region 1</b>" in caption and f"{int(regions.member_counts[1])} members" in caption
    assert f"{s} → <span style='color:#c00'>{p}</span> ({c})" in caption
    gallery.mode = "selection"
    assert gallery._dropdown.disabled
    gallery.mode = "single"
    assert not gallery._dropdown.disabled
