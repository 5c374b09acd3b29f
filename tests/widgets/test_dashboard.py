"""The dashboard and its session folder, on the 8x8 digits with the tiny models."""
import contextlib
import html
import json

import numpy as np
import pytest
import torch

from defuse_widgets.seeding import seeded_subset
from defuse_widgets.storage import persistence
from defuse_widgets.storage.annotations import AnnotationStore
from defuse_widgets.widgets.dashboard import DefuseDashboard
from defuse_widgets.widgets.label_review_panel import LabelReviewPanel
from defuse_widgets.widgets.tradeoff_plot import TradeoffPlot
from defuse_widgets.workflow import DefuseConfig

TIMEOUT = 120  # only guards against a hung thread, never a threshold
TINY = dict(dataset="digits", Q=4, a=5.0, b=5.0, centered=True, n_components=3, eps=0.0,
            max_per_instance=3, map_size=150, tsne_iter=50, lams=(1.0,), epochs=1,
            n_finetune=16, n_region_test=16)


@pytest.fixture(autouse=True)
def only_the_session_writes(monkeypatch):
    """Every file write goes through the session's SessionFolder (or its sweep checkpoints)."""
    import traceback

    real = persistence.atomic_write

    def guarded(path):
        files = {f.filename.replace("\\", "/") for f in traceback.extract_stack()}
        assert any(f.endswith(("storage/session_folder.py", "storage/sweep_checkpoints.py"))
                   for f in files), f"{path} written outside the session"
        return real(path)
    monkeypatch.setattr(persistence, "atomic_write", guarded)


@pytest.fixture
def make(tmp_path, digits, tiny_models):
    clf, vae = tiny_models
    made = []

    def make(session=tmp_path / "session", resume=False, **kw):
        config = None if resume else DefuseConfig(**{**TINY, **kw})
        dash = DefuseDashboard(clf, vae, digits, session, config=config, annotator="ada")
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


def _click(plot, trace, point):
    """What plotly.js sends for a click on point ``point`` of trace ``trace``."""
    plot._fig._handler_js2py_pointsCallback({"new": {"event_type": "plotly_click", "points": {
        "trace_indexes": [trace], "point_indexes": [point], "xs": [0.0], "ys": [0.0]}}})


def test_seeded_subset_is_seeded_and_sorted():
    idx = seeded_subset(100, 10, seed=3)
    assert len(set(idx)) == 10 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, seeded_subset(100, 10, seed=3))
    np.testing.assert_array_equal(seeded_subset(5, None), np.arange(5))


def test_stages_write_the_session_folder(make, tmp_path):
    dash = make()
    folder = tmp_path / "session"
    assert dash.stage == "identification" and "New session" in dash.status
    off = dash.view.boxes[4].children[0].value   # label review is off: how to turn it on
    assert "Label review is off" in off and "DefuseConfig(label_review=50)" in off
    assert "--label-review 50" in off and dash.label_review_panels == []
    assert dash.view.distill_button.disabled and dash.view.build_button.disabled
    with pytest.raises(ValueError, match="run identification first"):
        dash.run_distillation()
    done = []
    dash.on_stage_done(lambda stage, result: done.append(stage))

    dash.run_identification(wait=True)
    assert dash.running == "" and dash.progress == 1.0 and dash.error_ is None
    assert "adversarial examples" in dash.status and not dash.view.distill_button.disabled
    saved = dash.session.load_adversarial()
    np.testing.assert_array_equal(saved.codes, dash.adversarial.codes)
    assert saved.params["Q"] == 4 and not list(folder.glob("*.tmp"))
    assert dash.view.boxes[0].children == (dash.explorer,)
    explorer = dash.explorer

    dash.stage = "distillation"
    assert dash.view.tabs.selected_index == 1
    dash.run_distillation(wait=True)
    assert (folder / "regions.npz").exists() and len(dash.regions) == 3
    assert json.loads((folder / "session.json").read_text())["config"]["n_components"] == 3
    assert dash.view.boxes[1].children == (dash.region_table, dash.gallery)
    assert dash.view.boxes[2].children == (dash.region_table, dash.labeling_panel)
    assert done == ["identification", "distillation"]
    # The map takes the regions in place: a notebook cell showing it keeps showing it.
    assert dash.explorer is explorer and explorer._dropdown.disabled is False
    assert "region" in [v for _, v in explorer._color_dropdown.options]

    dash.explorer.wait(TIMEOUT)   # the map is fitted: the explorer now shows the regions too
    dash.explorer.wait(TIMEOUT)
    assert dash.explorer.status == "ready" and (folder / "latent_map.npz").exists()
    dash.explorer.region = 0
    assert len(dash.explorer.highlighted) == dash.regions.member_counts[0]


def test_votes_reach_the_store_and_correction_gets_a_plot(make, tmp_path):
    dash = make(lams=(1.0, 10.0))
    folder = tmp_path / "session"
    dash.run_identification(wait=True).run_distillation(wait=True)
    dash.labeling_panel.handle_key("n")   # "none of the above" is no disagreement
    assert dash.build_correction() is None and "No region is accepted" in dash.status
    assert dash.tradeoff is None and len(dash.decisions) == len(dash.regions)   # every region
    wrong = _disagree(dash, 1)
    with AnnotationStore(folder / "annotations.sqlite") as store:
        votes = store.votes(annotator="ada", region=1)
    assert [v.label for v in votes] == [wrong] * 10
    # Tab 4 follows the votes at once, before Build failure data is pressed.
    assert [(d.region, d.label) for d in dash.decisions if d.is_misclassification_region] \
        == [(1, wrong)]
    assert "1 region accepted by the votes" in dash.view.boxes[3].children[0].value
    assert "region 1" in dash.view.decisions.value
    assert "1 region accepted" in dash._said["correction"]

    X_f, _ = dash.labeling_panel.export()   # through the session: listed in its manifest
    assert dash.session.folder.listed("failure_data.npz") and len(X_f) == 16
    assert "the session" in dash.labeling_panel.status
    plot = dash.build_correction()
    assert isinstance(plot, TradeoffPlot) and dash.tradeoff is plot
    assert dash.stage == "correction" and dash.view.boxes[3].children == (plot, dash.region_table)
    accepted = [d for d in dash.decisions if d.is_misclassification_region]
    assert [(d.region, d.label) for d in accepted] == [(1, wrong)]
    assert "region 1" in dash.view.decisions.value
    assert len(plot.y_f) == 16 and set(plot.y_f.tolist()) == {wrong}
    plot.start()
    assert plot.join(TIMEOUT) and plot.error_ is None
    saved = dash.session.load_correction()["defuse"]   # the sweep's results too
    assert [r["lam"] for r in saved["results"]] == [r["lam"] for r in plot.results] == [1, 10]
    assert saved["best"]["lam"] == plot.best["lam"] and plot.arm == "defuse"

    # the rule's verdict is shown, and the corrected model is saved only when it says so
    # (on the tiny model the rule's λ costs significant validation accuracy: not corrected)
    corrected = saved["corrected"]
    assert corrected is False and plot.corrected is False and "No λ fixes" in saved["verdict"]
    assert plot.verdict == saved["verdict"] and html.escape(saved["verdict"]) in plot._choice.value
    assert not (folder / "corrected_classifier.pt").exists() and dash.corrected_classifier is None
    assert "no corrected classifier" in dash.status
    assert "no corrected classifier" in dash.view.status.value        # tab 4's message, on tab 4
    dash.stage = "identification"
    assert "no corrected classifier" not in dash.view.status.value    # ... and not on tab 1
    assert dash.view.bar.layout.visibility == "hidden" and dash.view.bar.value == 0   # idle: no bar
    dash.stage = "correction"
    report = dash.write_report()                                  # the one file to share
    assert report.exists() and dash.session.folder.listed(report.name)
    assert report.name in dash.view.report_link.value and "Report written" in dash.view.status.value

    # a click on the other λ keeps it, saved with the annotator's current name
    dash.labeling_panel.annotator = "bob"
    other = next(r["lam"] for r in plot.results if r["lam"] != plot.best["lam"])
    _click(plot, 0, list(plot._fig.data[0].customdata).index(other))
    assert plot.error.value == ""
    choice = json.loads((folder / "lam_choice.json").read_text())
    assert (choice["arm"], choice["lam"], choice["by"]) == ("defuse", other, "bob")
    assert choice["rule_lam"] == plot.best["lam"] and plot.chosen["by"] == "bob"
    assert "<b>bob</b>" in plot._choice.value and list(plot._fig.data[5].customdata) == [other]
    lams = list(saved["params"]["lams"])
    state = {lam: torch.load(folder / "checkpoints" / f"defuse_lam_{lams.index(lam)}.pt",
                             weights_only=True) for lam in (other, plot.best["lam"])}
    model = dash.corrected_classifier.state_dict()
    assert all(torch.equal(model[k], v) for k, v in state[other].items())
    assert not all(torch.equal(model[k], v) for k, v in state[plot.best["lam"]].items())

    dash.close()   # a kernel restart: the saved sweep, the rule's λ and the choice come back
    again = make(resume=True)
    shown = again.tradeoff
    assert shown is not None and again.view.boxes[3].children == (shown, again.region_table)
    assert again.stage == "identification" and "chosen by bob" in again.status
    assert shown.results == plot.results and shown.best == plot.best
    assert shown.chosen["lam"] == other and "<b>bob</b>" in shown._choice.value
    assert html.escape(saved["verdict"]) in shown._choice.value
    assert list(shown._fig.data[3].customdata) == [plot.best["lam"]]


def test_label_review_tab_answers_reach_the_store_with_the_session_keys(make, digits):
    dash = make(label_review=3)
    dash.run_identification(wait=True).run_distillation(wait=True)
    assert "Label review starts once" in dash.view.boxes[4].children[0].value
    _disagree(dash, 1)
    plot = dash.build_correction()
    train, val = dash.label_review_panels
    shown = dash.view.boxes[4].children
    assert [p for p in shown if isinstance(p, LabelReviewPanel)] == [train, val]
    sets = dash.session.label_review_sets()
    n_train = len(digits.y_train)
    np.testing.assert_array_equal(train.store_keys, sets["train"].index)
    np.testing.assert_array_equal(val.store_keys, sets["validation"].index + n_train)
    assert train.annotator == val.annotator == "ada"

    to_region = int(train.review.region_label[0])
    train.answer(0, to_region)
    val._grid.children[0].children[2].children[1].click()   # "→ region's label" of row 0
    assert val.error.value == ""
    i, j = int(sets["train"].index[0]), int(sets["validation"].index[0])
    assert dash.session.open_store().answers("ada") == {
        i: to_region, n_train + j: int(val.review.region_label[0])}
    reviewed = dash.session.reviewed_labels()   # the session reads them under its keys
    assert reviewed["train"][0][i] == to_region
    assert reviewed["validation"][0][j] == int(val.review.region_label[0])

    plot.start()   # a label changed: the sweep gets the "review" arm, drawn as its own line
    assert plot.join(TIMEOUT) and plot.error_ is None, plot._log.outputs
    assert plot.arm == "review" and len(plot.review_results) == 1
    assert plot._fig.data[4].visible and "label-review arm" in plot._choice.value
    assert plot.baseline_results == [] and plot.baseline_corrector_ is None   # no oracle
    _click(plot, 4, 0)   # a label-review point: that arm's λ is kept
    assert plot.error.value == "" and dash.session.load_lam_choice()["arm"] == "review"


def test_a_new_dashboard_resumes_the_session(make, tmp_path):
    first = make(Q=5)
    first.run_identification(wait=True).run_distillation(wait=True)
    wrong = _disagree(first, 0)
    first.close()

    again = make(resume=True)
    assert again.Q == 5 and again.config == first.config   # the session's own settings
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
    assert dash.view.bar.bar_style == "danger" and not dash.view.distill_button.disabled
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
    dash.view.distill_button.click()   # no adversarial examples yet
    assert "run identification first" in dash.status and "dc0000" in dash.status


def test_rerunning_identification_asks_before_archiving_votes(make, tmp_path):
    """Issue 15: the big green button archived every region and vote without asking."""
    dash = make()
    dash.run_identification(wait=True).run_distillation(wait=True)
    dash.labeling_panel.handle_key("0")
    first = (tmp_path / "session" / "adversarial.npz").read_bytes()
    dash.view.identify_button.click()                       # first click: a warning, nothing runs
    assert dash.running == "" and "Click the button again to confirm" in dash.status
    assert "1 vote by 1 annotator" in dash.status and "3 regions" in dash.status
    assert (tmp_path / "session" / "adversarial.npz").read_bytes() == first
    assert not (tmp_path / "session" / "archive").exists()
    dash.view.identify_button.click()                       # second click: it runs
    dash.wait(TIMEOUT)
    assert (tmp_path / "session" / "archive").exists()   # the votes moved there, kept


def test_build_failure_data_shows_a_busy_state_while_it_runs(make, monkeypatch):
    """Issue 15: the button gave no sign of its 1.5 s of work."""
    dash = make()
    seen = []
    button = dash.view.build_button
    before = button.disabled   # disabled while there are no regions: restored as it was

    def build():
        seen.append((button.description, button.disabled, "defuse-busy" in button._dom_classes))
        raise ValueError("regions must exist")
    monkeypatch.setattr(dash, "build_correction", build)
    button.click()
    assert seen == [("Building failure data…", True, True)]
    assert (button.description, button.disabled) == ("Build failure data", before)
    assert "defuse-busy" not in button._dom_classes and "regions must exist" in dash.status


def test_building_again_with_the_same_decisions_keeps_the_plot(make):
    """A rerun notebook cell (dash.build_correction()) must not replace the restored plot;
    other inputs load into the shown plot, so the browser updates its figure in place.
    """
    dash = make()
    dash.run_identification(wait=True).run_distillation(wait=True)
    _disagree(dash, 1)
    plot = dash.build_correction()
    figure, y_f = plot._fig, plot.y_f
    assert plot is not None and dash.build_correction() is plot    # same votes: same plot
    assert plot.y_f is y_f                                          # ... and the same D_f
    dash.baseline = not dash.baseline                               # other settings: loaded
    assert dash.build_correction() is plot and plot.y_f is not y_f  # ... into the same plot
    n_f = len(plot.y_f)
    _disagree(dash, 0)
    assert dash.build_correction() is plot and len(plot.y_f) > n_f  # new votes: new D_f
    assert plot._fig is figure and dash.tradeoff is plot and plot.results == []


def test_each_progress_line_keeps_its_own_stage_messages(make):
    dash = make()
    first = dash.progress_line   # a notebook cell shows it, then runs identification
    assert first is not dash.progress_line and first._text.value == ""
    dash.run_identification(wait=True)
    said = first._text.value
    assert "adversarial examples" in said and first._stop.disabled
    second = dash.progress_line
    dash.run_distillation(wait=True)
    assert "region" in second._text.value and first._text.value == said
    dash.write_report()   # a later stage's message stays out of both cells
    assert first._text.value == said and "Report written" not in second._text.value


def test_the_region_table_is_above_tabs_2_to_4_and_opens_a_region(make):
    dash = make()
    dash.run_identification(wait=True).run_distillation(wait=True)
    table = dash.region_table
    assert [table in box.children for box in dash.view.boxes[1:4]] == [True, True, True]
    assert len(table.rows) == len(dash.regions)
    assert {r["decision"] for r in table.rows} == {"not labelled"}
    dash.gallery.mode = "all"
    table.select(2)   # what a click on region 2's row does
    assert dash.gallery.mode == "single" and dash.gallery.region == 2
    assert dash.labeling_panel.position == (2, 0) and "Region 2 is shown" in dash.status
    wrong = _disagree(dash, 1)   # votes reach the table at once
    row = table.rows[1]
    assert row["decision"] == "accepted" and row["votes"] == 10
    assert row["label"] == dash.data.class_names[wrong]


def test_a_dashboard_whose_constructor_raised_is_collected_quietly(monkeypatch):
    """DefuseDashboard() without its arguments raised a TypeError, then printed an
    AttributeError from __del__ (close() stopped a job that never existed).
    """
    import gc
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with pytest.raises(TypeError, match="required positional"):
        DefuseDashboard()
    gc.collect()
    assert seen == []
