import numpy as np
import pytest
import torch

from defuse_widgets.models.inference import decode, encode_mean, predict
from defuse_widgets.stages.distillation import distill
from defuse_widgets.stages.latent_map import LatentMap
from defuse_widgets.widgets._render import to_png
from defuse_widgets.widgets.latent_explorer import LatentExplorer

N_TRAIN = 400   # tiny_adversarial perturbs the first 400 training images
FAST = dict(n_iter=100, early_exaggeration_iter=50)


@pytest.fixture(scope="module")
def train_codes(digits, tiny_models):
    return encode_mean(tiny_models[1], digits.X_train[:N_TRAIN]).numpy()


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    return distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)


@pytest.fixture(scope="module")
def latent_map(train_codes, tiny_adversarial):
    return LatentMap(**FAST).fit(train_codes, tiny_adversarial.codes)


@pytest.fixture
def explorer(train_codes, digits, tiny_models, tiny_adversarial, regions, latent_map):
    clf, vae = tiny_models
    return LatentExplorer(train_codes, digits.y_train[:N_TRAIN], tiny_adversarial, vae=vae,
                          classifier=clf, regions=regions, class_names=digits.class_names,
                          latent_map=latent_map, background=False)


def _points_event(event_type, trace_points):
    """What plotly.js sends for a click or selection: {trace_index: [point_index, ...]}."""
    pairs = [(t, i) for t, inds in trace_points.items() for i in inds]
    return {"new": {"event_type": event_type, "points": {
        "trace_indexes": [t for t, _ in pairs], "point_indexes": [i for _, i in pairs],
        "xs": [0.0] * len(pairs), "ys": [0.0] * len(pairs)}}}


def test_figure_draws_every_code(explorer, tiny_adversarial, latent_map):
    fig = explorer.figure
    assert explorer.status == "ready"
    assert [t.type for t in fig.data] == ["scattergl"] * 12   # 10 classes, adversarial, region
    assert sum(len(t.x) for t in fig.data[:10]) == N_TRAIN
    adv = fig.data[10]
    assert adv.marker.symbol == "diamond" and adv.marker.color == "black"
    np.testing.assert_allclose(adv.x, latent_map.codes_embedding_[:, 0], rtol=1e-6)
    idx = np.asarray(fig.data[3].customdata)
    np.testing.assert_allclose(fig.data[3].y, latent_map.embedding_[idx, 1], rtol=1e-6)


def test_adversarial_points_land_near_their_source(latent_map, tiny_adversarial):
    train_xy, adv_xy = latent_map.embedding_, latent_map.codes_embedding_
    d = np.linalg.norm(adv_xy[:, None] - train_xy[None], axis=2)
    own = d[np.arange(len(adv_xy)), tiny_adversarial.source_index]
    percentile = (d < own[:, None]).mean(1)
    assert np.median(percentile) < 0.2   # chance: 0.5


def test_click_shows_decode_of_exactly_that_code(explorer, tiny_models, tiny_adversarial):
    clf, vae = tiny_models
    explorer.select_point("adversarial", 5)
    image = decode(vae, torch.as_tensor(tiny_adversarial.codes[5:6]))
    label = str(int(predict(clf, image)[0]))
    assert explorer.point == ("adversarial", 5)
    assert explorer.image.value == to_png(image[0], label=label)
    assert f"training image {tiny_adversarial.source_index[5]}" in explorer._point_label.value


def test_plotly_click_reaches_select_point(explorer, train_codes, tiny_models):
    clf, vae = tiny_models
    clicked = []
    explorer.on_click(lambda kind, i: clicked.append((kind, i)))
    trace = explorer.figure.data[2]   # class 2
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_click", {2: [1]}))
    i = int(trace.customdata[1])
    assert clicked == [("train", i)] and explorer.point == ("train", i)
    image = decode(vae, torch.as_tensor(train_codes[i:i + 1]))
    assert explorer.image.value == to_png(image[0], label=str(int(predict(clf, image)[0])))


def test_selection_shows_tiles_of_selected_decodes(explorer, train_codes, tiny_adversarial,
                                                   tiny_models):
    clf, vae = tiny_models
    explorer.select_points(train=[0, 1, 2], adversarial=[4, 5, 6, 7, 8, 9, 10, 11, 12])
    codes = np.concatenate([tiny_adversarial.codes[4:13], train_codes[:3]])
    images = decode(vae, torch.as_tensor(codes, dtype=torch.float32))
    assert explorer.selection_images == [to_png(im, size=48) for im in images]
    assert "12 selected (9 adversarial, 3 training); showing 12" in explorer._grid_label.value
    assert explorer.grid.layout.display is None and not explorer._send_button.disabled
    explorer.select_points()
    assert explorer.grid.value == "" and explorer.selection_images == []
    assert explorer.grid.layout.display == "none" and explorer._send_button.disabled


def test_selection_tiles_say_kind_true_label_and_prediction(explorer, digits, tiny_models,
                                                            tiny_adversarial, train_codes):
    clf, vae = tiny_models
    explorer.select_points(train=[7], adversarial=[2])
    html = explorer.grid.value
    tiles = html.split("<figure")[1:]
    assert len(tiles) == 2
    adv_true = int(tiny_adversarial.true_label[2])
    adv_pred = int(predict(clf, decode(vae, torch.as_tensor(tiny_adversarial.codes[2:3])))[0])
    train_true = int(digits.y_train[7])
    assert "defuse-tile-adversarial" in tiles[0] and "<b>adversarial</b>" in tiles[0]
    assert f"true {adv_true}<br><span style='color:#c00'>pred {adv_pred}</span>" in tiles[0]
    assert "defuse-tile-train" in tiles[1] and "<b>training</b>" in tiles[1]
    assert f"true {train_true}<br>" in tiles[1]
    assert adv_pred != adv_true   # identify kept it because the classifier is wrong on it


def test_selection_is_capped(explorer):
    explorer.select_points(train=np.arange(100))
    label = explorer._grid_label.value
    assert "100 selected" in label and "showing 64" in label
    assert len(explorer.selection_images) == 64 and explorer.grid.value.count("<figure") == 64


def test_plotly_lasso_gathers_points_of_all_traces(explorer):
    got = []
    explorer.on_selection(lambda train, adv: got.append((train, adv)))
    fig = explorer.figure
    explorer.figure._handler_js2py_pointsCallback(
        _points_event("plotly_selected", {0: [0, 1], 4: [2], 10: [3, 7]}))
    train = np.sort(np.r_[np.asarray(fig.data[0].customdata)[[0, 1]],
                          np.asarray(fig.data[4].customdata)[[2]]])
    np.testing.assert_array_equal(explorer.selection["train"], train)
    np.testing.assert_array_equal(explorer.selection["adversarial"], [3, 7])
    assert len(got) == 1 and "5 selected" in explorer._grid_label.value


def test_region_highlights_exactly_its_members(explorer, regions, latent_map):
    k = int(np.argmax(regions.member_counts))
    explorer.region = k
    members = regions.members(k)
    np.testing.assert_array_equal(explorer.highlighted, members)
    np.testing.assert_allclose(explorer.figure.data[-1].x, latent_map.codes_embedding_[members, 0],
                               rtol=1e-6)
    assert explorer._dropdown.value == k
    explorer._dropdown.value = -1
    assert explorer.region is None and len(explorer.figure.data[-1].x) == 0


def test_click_on_highlight_selects_member(explorer, regions):
    explorer.region = 1
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_click", {11: [0]}))
    assert explorer.point == ("adversarial", int(regions.members(1)[0]))


def test_background_fit_and_cache(tmp_path, digits, tiny_models, tiny_adversarial, train_codes):
    clf, vae = tiny_models
    fitted = []
    kw = dict(vae=vae, classifier=clf, n_iter=100)
    first = LatentExplorer(train_codes, digits.y_train[:N_TRAIN], tiny_adversarial,
                           on_map_fitted=fitted.append, **kw).wait()
    assert first.status == "ready" and fitted == [first.latent_map] and first.figure is not None
    second = LatentExplorer(train_codes, digits.y_train[:N_TRAIN], tiny_adversarial,
                            background=False, cached_map=fitted[0],
                            on_map_fitted=fitted.append, **kw)
    assert len(fitted) == 1 and second.latent_map is fitted[0]   # reused, not refitted
    np.testing.assert_array_equal(second.latent_map.embedding_, first.latent_map.embedding_)
    np.testing.assert_array_equal(second.figure.data[10].y, first.figure.data[10].y)


def test_from_models_encodes_training_images(digits, tiny_models, tiny_adversarial, train_codes):
    clf, vae = tiny_models
    explorer = LatentExplorer.from_models(clf, vae, digits.X_train[:60], digits.y_train[:60],
                                          tiny_adversarial.subset(np.arange(10)), joint=True,
                                          n_iter=100, background=False)
    np.testing.assert_allclose(explorer.latent_map.reference_codes_[:60], train_codes[:60],
                               rtol=1e-6)
    assert explorer.latent_map.reference_codes_.shape == (70, 4)
    assert len(explorer.figure.data[-2].x) == 10


def test_bad_input(explorer, train_codes, digits, tiny_models, tiny_adversarial, regions):
    clf, vae = tiny_models
    y = digits.y_train[:N_TRAIN]
    with pytest.raises(ValueError, match="adversarial.codes must have 3 latent dimensions"):
        LatentExplorer(train_codes[:, :3], y, tiny_adversarial, vae=vae, classifier=clf)
    bad = train_codes.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="train_codes must not contain NaN"):
        LatentExplorer(bad, y, tiny_adversarial, vae=vae, classifier=clf)
    with pytest.raises(ValueError, match="train_labels must have length 400"):
        LatentExplorer(train_codes, y[:10], tiny_adversarial, vae=vae, classifier=clf)
    with pytest.raises(ValueError, match="regions must be distilled from adversarial"):
        LatentExplorer(train_codes, y, tiny_adversarial.subset(np.arange(5)), vae=vae,
                       classifier=clf, regions=regions)
    with pytest.raises(ValueError, match="kind must be one of"):
        explorer.select_point("test", 0)
    with pytest.raises(ValueError, match="index must be <="):
        explorer.select_point("adversarial", len(tiny_adversarial))
    with pytest.raises(ValueError, match="train must hold indices"):
        explorer.select_points(train=[N_TRAIN])
    with pytest.raises(ValueError, match="region must be <="):
        explorer.region = len(regions)


def test_stop_keeps_the_map_reached_so_far(tmp_path, digits, tiny_models, tiny_adversarial,
                                           train_codes):
    clf, vae = tiny_models
    fitted = []
    explorer = LatentExplorer(train_codes, digits.y_train[:N_TRAIN], tiny_adversarial, vae=vae,
                              classifier=clf, on_map_fitted=fitted.append, n_iter=5000)
    explorer.stop()   # the first progress callback (iteration 25) ends the optimisation
    explorer.wait()
    assert explorer.status == "stopped" and explorer.latent_map.interrupted_
    assert sum(len(t.x) for t in explorer.figure.data[:10]) == N_TRAIN
    assert not fitted   # a stopped map is not saved


def test_click_error_is_shown_in_the_widget_and_clicks_work_afterwards(explorer, tiny_models):
    clf, vae = tiny_models

    class Broken(torch.nn.Module):
        def decode(self, z):
            raise RuntimeError("decoder unavailable")

    explorer._points.vae = Broken()
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_click", {2: [1]}))
    assert "click failed" in explorer.error.value and "decoder unavailable" in explorer.error.value
    explorer._points.vae = vae
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_click", {2: [0]}))
    assert explorer.error.value == "" and explorer.image.value


def test_plotly_hover_shows_thumbnail_of_that_point(explorer, train_codes, tiny_models):
    clf, vae = tiny_models
    assert explorer.thumbnail.layout.display == "none"
    trace = explorer.figure.data[4]   # class 4
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_hover", {4: [2]}))
    i = int(trace.customdata[2])
    assert explorer.hovered == ("train", i)
    image = decode(vae, torch.as_tensor(train_codes[i:i + 1]))
    assert explorer.thumbnail.value == to_png(image[0], label=str(int(predict(clf, image)[0])))
    assert explorer.thumbnail.layout.display is None
    assert "defuse-hover-thumbnail" in explorer.thumbnail._dom_classes
    assert f"training image {i}" in explorer._hover_label.value
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_hover", {10: [6]}))
    assert explorer.hovered == ("adversarial", 6) and "adversarial example 6" in \
        explorer._hover_label.value
    assert explorer.point is None and explorer.selection == {}   # a hover selects nothing


def test_hover_on_highlight_and_repeat_hovers_use_the_cache(explorer, regions, monkeypatch):
    explorer.region = 1
    explorer.figure._handler_js2py_pointsCallback(_points_event("plotly_hover", {11: [0]}))
    assert explorer.hovered == ("adversarial", int(regions.members(1)[0]))
    first = explorer.thumbnail.value
    explorer.hover_point("train", 0)
    assert explorer.thumbnail.value != first
    monkeypatch.setattr(explorer._vae, "decode", None)   # a second decode would fail
    explorer.hover_point("adversarial", int(regions.members(1)[0]))
    assert explorer.thumbnail.value == first and explorer.error.value == ""
    explorer.hover_point("train", 0)


def _colors(trace):
    c = trace.marker.color
    return c if isinstance(c, str) else list(c)


def test_colour_by_regroups_the_traces_so_the_legend_is_the_key(explorer, tiny_adversarial,
                                                                 regions, tiny_models):
    from plotly.colors import qualitative
    clf, vae = tiny_models
    fig, palette = explorer.figure, qualitative.Plotly
    assert _colors(fig.data[3]) == palette[3] and _colors(fig.data[10]) == "black"
    explorer._color_dropdown.value = "predicted"
    fig = explorer.figure
    assert explorer.color_by == "predicted" and "predicted class" in fig.layout.legend.title.text
    predicted = predict(clf, decode(vae, torch.as_tensor(
        explorer._train_codes, dtype=torch.float32))).numpy()   # no images given: decodes
    for trace in fig.data[:-1]:   # every trace is one predicted class, in its colour
        c = int(trace.legendgroup.split()[-1])
        assert _colors(trace) == palette[c] and trace.name == str(c)
        data = np.asarray(trace.customdata)
        got = (tiny_adversarial.predicted_label[data[:, 0]] if data.ndim == 2
               else predicted[data])
        assert (np.asarray(got) == c).all()
    # one legend entry per class: adversarial diamonds join their class's entry
    shown = [t.name for t in fig.data[:-1] if t.showlegend is not False]
    assert sorted(shown, key=int) == [str(c) for c in np.unique(np.r_[
        predicted, tiny_adversarial.predicted_label])]

    explorer.color_by = "region"
    fig, a = explorer.figure, regions.assignment
    names = [t.name for t in fig.data[:-1]]
    assert names[0] == "training images" and _colors(fig.data[0]) == "#c8c8c8"
    for k in np.unique(a[a >= 0]):
        trace = fig.data[names.index(f"region {k}")]
        assert _colors(trace) == qualitative.Alphabet[k]
        np.testing.assert_array_equal(np.sort(np.asarray(trace.customdata)[:, 0]),
                                      np.sort(regions.members(k)))
    if (a < 0).any():
        assert _colors(fig.data[names.index("no region")]) == "#c8c8c8"
    # a click on the regrouped map still reaches the point it shows
    t = names.index(f"region {int(a[a >= 0][0])}")
    fig._handler_js2py_pointsCallback(_points_event("plotly_click", {t: [0]}))
    assert explorer.point == ("adversarial", int(np.asarray(fig.data[t].customdata)[0, 0]))
    explorer.color_by = "true"
    fig = explorer.figure
    assert len(fig.data) == 12
    assert _colors(fig.data[3]) == palette[3] and _colors(fig.data[10]) == "black"


def test_highlight_survives_a_colour_change(explorer, regions, latent_map):
    k = int(np.argmax(regions.member_counts))
    explorer.region = k
    explorer.color_by = "region"
    np.testing.assert_allclose(explorer.figure.data[-1].x,
                               latent_map.codes_embedding_[regions.members(k), 0], rtol=1e-6)


def test_colour_by_predicted_from_models_uses_the_images(digits, tiny_models, tiny_adversarial,
                                                        latent_map):
    from plotly.colors import qualitative
    clf, vae = tiny_models
    explorer = LatentExplorer.from_models(clf, vae, digits.X_train[:N_TRAIN],
                                          digits.y_train[:N_TRAIN], tiny_adversarial,
                                          latent_map=latent_map, background=False)
    assert [o[1] for o in explorer._color_dropdown.options] == ["true", "predicted"]  # no regions
    explorer.color_by = "predicted"
    predicted = predict(clf, digits.X_train[:N_TRAIN]).numpy()   # the images, not decodes
    train = [t for t in explorer.figure.data[:-1] if np.asarray(t.customdata).ndim == 1]
    assert sum(len(t.x) for t in train) == N_TRAIN
    for trace in train:   # training points per predicted class
        c = int(trace.legendgroup.split()[-1])
        assert (predicted[np.asarray(trace.customdata)] == c).all()
        assert trace.marker.color == qualitative.Plotly[c]


def test_show_selection_in_gallery_sends_the_selected_codes(explorer, regions, tiny_models,
                                                            tiny_adversarial, train_codes,
                                                            digits):
    from defuse_widgets.widgets.region_gallery import RegionGallery

    clf, vae = tiny_models
    gallery = RegionGallery(regions, vae, clf, digits.class_names, n_samples=4,
                            precision="fp32")
    assert explorer._send_button.layout.display == "none"   # nobody to send to yet
    explorer.on_send_selection(lambda sel: gallery.show_selection(**sel))
    assert explorer._send_button.layout.display is None
    assert explorer._send_button.description == "Show selection in gallery"
    explorer.figure._handler_js2py_pointsCallback(
        _points_event("plotly_selected", {1: [0], 10: [3, 7]}))
    i = int(explorer.figure.data[1].customdata[0])
    explorer._send_button.click()
    assert explorer.error.value == "" and gallery.mode == "selection"
    codes = np.concatenate([tiny_adversarial.codes[[3, 7]], train_codes[[i]]])
    images = decode(vae, torch.as_tensor(codes, dtype=torch.float32))
    assert gallery.images == [to_png(im, size=64) for im in images]
    view = gallery.selection_view.value
    assert "3 examples (2 adversarial, 1 training)" in view
    assert f"true {digits.y_train[i]} ·" in view.split("<figure")[3]
    explorer.select_points()
    explorer._send_button.click()   # nothing selected: said in the widget
    assert "nothing is selected" in explorer.error.value


def test_progress_bar_is_hidden_once_the_map_is_done(explorer):
    bar, label, stop = explorer._fit.row.children
    assert bar.layout.display == "none" and stop.layout.display == "none"
    assert label.layout.display != "none" and "map of 400 training" in label.value
