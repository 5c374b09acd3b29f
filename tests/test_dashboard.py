"""The dashboard and its session folder, on the 8x8 digits with the tiny models."""
import contextlib
import json

import numpy as np
import pytest

from defuse_widgets._session import Session, identify_in_steps, map_subset
from defuse_widgets.annotations import AnnotationStore
from defuse_widgets.widgets.dashboard import DefuseDashboard
from defuse_widgets.widgets.tradeoff_plot import TradeoffPlot

TIMEOUT = 120  # only guards against a hung thread, never a threshold
TINY = dict(Q=4, a=5.0, b=5.0, centered=True, n_components=3, eps=0.0, max_per_instance=3,
            map_size=150, tsne_iter=50, lams=[1.0], epochs=1, n_finetune=16, n_region_test=16,
            annotator="ada")


@pytest.fixture
def make(tmp_path, digits, tiny_models):
    clf, vae = tiny_models
    made = []

    def make(session=tmp_path / "session", omit=(), **kw):
        settings = {k: v for k, v in {**TINY, **kw}.items() if k not in omit}
        dash = DefuseDashboard(clf, vae, digits, session, **settings)
        made.append(dash)
        return dash

    yield make
    for dash in made:
        dash.close()
        if dash.explorer is not None:
            with contextlib.suppress(Exception):
                dash.explorer.wait(TIMEOUT)


def _disagree(dash, region):
    """Vote, through the panel's key handler, a class the classifier never predicts."""
    panel = dash.labeling_panel
    panel.goto(region, 0)
    wrong = min(set(range(10)) - set(panel.store.review_predictions(region).tolist()))
    for _ in range(panel.review_size):
        assert panel.handle_key(str(wrong))
    return wrong


def test_identify_in_steps_equals_identify(digits, tiny_models, tiny_adversarial):
    clf, vae = tiny_models
    seen = []
    adv = identify_in_steps(clf, vae, digits.X_train[:400], digits.y_train[:400], Q=8, a=5,
                            b=5, centered=True, max_per_instance=5, n_steps=3, batch_size=512,
                            callback=lambda done, total: seen.append((done, total)))
    assert seen == [(192, 400), (384, 400), (400, 400)]   # whole chunks of 512 // Q images
    for field in ("codes", "source_index", "true_label", "predicted_label", "noise_norm"):
        np.testing.assert_array_equal(getattr(adv, field), getattr(tiny_adversarial, field))
    assert adv.params == tiny_adversarial.params and adv.n_decoded == tiny_adversarial.n_decoded
    stopped = identify_in_steps(clf, vae, digits.X_train[:400], digits.y_train[:400], Q=8, a=5,
                                b=5, n_steps=3, callback=lambda done, total: True)
    assert stopped is None


def test_map_subset_is_seeded_and_sorted():
    idx = map_subset(100, 10, seed=3)
    assert len(set(idx)) == 10 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, map_subset(100, 10, seed=3))
    np.testing.assert_array_equal(map_subset(5, None), np.arange(5))


def test_stages_write_the_session_folder(make, tmp_path):
    dash = make()
    folder = tmp_path / "session"
    assert dash.stage == "identification" and "New session" in dash.status
    assert dash._run_distill.disabled and dash._build_button.disabled
    with pytest.raises(ValueError, match="run identification first"):
        dash.run_distillation()
    done = []
    dash.on_stage_done(lambda stage, result: done.append(stage))

    dash.run_identification(wait=True)
    assert dash.running == "" and dash.progress == 1.0 and dash.error_ is None
    assert "adversarial examples" in dash.status and not dash._run_distill.disabled
    saved = Session(folder).load_adversarial()
    np.testing.assert_array_equal(saved.codes, dash.adversarial.codes)
    assert saved.params["Q"] == 4 and not list(folder.glob("*.tmp"))
    assert dash._boxes[0].children == (dash.explorer,)

    dash.stage = "distillation"
    assert dash._tabs.selected_index == 1
    dash.run_distillation(wait=True)
    assert (folder / "regions.npz").exists() and len(dash.regions) == 3
    assert json.loads((folder / "settings.json").read_text())["distillation"]["n_components"] == 3
    assert dash._boxes[1].children == (dash.gallery,)
    assert dash._boxes[2].children == (dash.labeling_panel,)
    assert done == ["identification", "distillation"]

    dash.explorer.wait(TIMEOUT)   # the map is fitted: the explorer now shows the regions too
    dash.explorer.wait(TIMEOUT)
    assert dash.explorer.status == "ready" and (folder / "latent_map.npz").exists()
    dash.explorer.region = 0
    assert len(dash.explorer.highlighted) == dash.regions.member_counts[0]


def test_votes_reach_the_store_and_correction_gets_a_plot(make, tmp_path):
    dash = make()
    dash.run_identification(wait=True).run_distillation(wait=True)
    dash.labeling_panel.handle_key("n")   # "none of the above" is no disagreement
    assert dash.build_correction() is None and "No region is accepted" in dash.status
    assert dash.tradeoff is None and len(dash.decisions) == 1
    wrong = _disagree(dash, 1)
    with AnnotationStore(tmp_path / "session" / "annotations.sqlite") as store:
        votes = store.votes(annotator="ada", region=1)
    assert [v.label for v in votes] == [wrong] * 10

    plot = dash.build_correction()
    assert isinstance(plot, TradeoffPlot) and dash.tradeoff is plot
    assert dash.stage == "correction" and dash._boxes[3].children == (plot,)
    accepted = [d for d in dash.decisions if d.is_misclassification_region]
    assert [(d.region, d.label) for d in accepted] == [(1, wrong)]
    assert "region 1" in dash._decisions.value
    assert len(plot.y_f) == 16 and set(plot.y_f.tolist()) == {wrong}
    plot.start()
    assert plot.join(TIMEOUT) and plot.error_ is None
    assert dash.corrected_classifier is not None
    assert (tmp_path / "session" / "corrected_classifier.pt").exists()
    saved = Session(tmp_path / "session").load_correction()   # the sweep's results too
    assert [r["lam"] for r in saved["results"]] == [r["lam"] for r in plot.results]
    assert saved["best"]["lam"] == plot.best["lam"]


def test_a_new_dashboard_resumes_the_session(make, tmp_path):
    first = make(Q=5)
    first.run_identification(wait=True).run_distillation(wait=True)
    wrong = _disagree(first, 0)
    first.close()

    again = make(omit=("Q",))
    assert again.Q == 5   # restored from settings.json
    assert "Resumed" in again.status and "10 votes" in again.status
    np.testing.assert_array_equal(again.adversarial.codes, first.adversarial.codes)
    np.testing.assert_array_equal(again.regions.means, first.regions.means)
    assert again.labeling_panel.position == (1, 0)   # the annotator's next sample
    assert [v.label for v in again.session.store.votes()] == [wrong] * 10
    plot = again.build_correction()
    assert plot is not None and set(plot.y_f.tolist()) == {wrong}

    again.run_identification(wait=True)   # new examples: old regions and votes archived
    assert again.regions is None and again.labeling_panel is None
    archived = again.session.archived
    assert (archived / "annotations.sqlite").exists() and (archived / "regions.npz").exists()
    assert not (tmp_path / "session" / "regions.npz").exists()


def test_background_errors_are_shown(make):
    dash = make(n_components=100000)
    dash.run_identification(wait=True)
    with pytest.raises(ValueError, match="n_components"):
        dash.run_distillation(wait=True)
    assert dash.running == "" and "Distillation failed" in dash.status
    assert any("ValueError" in o["text"] for o in dash._log.outputs)
    assert dash._bar.bar_style == "danger" and not dash._run_distill.disabled
    assert dash.regions is None


def test_stop_ends_identification_without_saving(make, tmp_path):
    dash = make()
    stops = []

    def stop_once(change):
        if not stops:
            stops.append(change["new"])
            dash.stop()

    dash.observe(stop_once, "progress")
    dash.run_identification(wait=True)
    assert "stopped" in dash.status and dash.adversarial is None
    assert not (tmp_path / "session" / "adversarial.npz").exists()


def test_button_errors_show_in_status(make):
    dash = make()
    dash._run_distill.click()   # no adversarial examples yet
    assert "run identification first" in dash.status and "dc0000" in dash.status
