import html
import math
import threading

import pytest

from defuse_widgets.callbacks import Callback
from defuse_widgets.widgets.tradeoff_plot import TradeoffPlot

TIMEOUT = 120  # generous: only guards against a hung thread, never a threshold


def _plot(digits, tiny_models, task, **kw):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    params = dict(eval_sets=evals, lams=[0.0, 10.0], epochs=1, batch_size=512, device="cpu")
    return TradeoffPlot(clf, digits.X_train, digits.y_train, X_f, y_f, **{**params, **kw})


def test_sweep_draws_one_point_per_lambda(digits, tiny_models, task):
    X_f, y_f, _ = task
    plot = _plot(digits, tiny_models, task, X_adv=X_f[:10], y_adv=y_f[:10])
    assert not plot.running and plot._stop_button.disabled
    for axis in (plot._fig.layout.xaxis, plot._fig.layout.yaxis):   # empty: accuracy axes
        assert tuple(axis.range) == (0, 1) and axis.autorange is False
    plot.start()
    assert plot.running  # start() returns while the sweep runs
    assert plot.join(TIMEOUT)
    assert not plot.running and plot.error_ is None, plot._log.outputs
    defuse, baseline, before, best, review, chosen = plot._fig.data
    assert plot._fig.layout.xaxis.autorange is True and plot._fig.layout.xaxis.range is None
    assert [r["lam"] for r in plot.results] == [0.0, 10.0]
    assert list(defuse.customdata) == [0.0, 10.0]
    assert list(defuse.x) == [r["test"] for r in plot.results]
    assert list(defuse.y) == [r["region_test"] for r in plot.results]
    assert len(baseline.x) == len(plot.baseline_results) == 2
    assert list(before.y) == [plot.corrector_.before_["region_test"]]
    assert plot.best == plot.corrector_.best_
    assert list(best.customdata) == [plot.corrector_.best_["lam"]]
    assert best.marker.symbol == "star"
    assert plot._bar.value == plot._bar.max == 4  # 2 λ × 1 epoch × 2 sweeps
    assert plot.status.startswith("Done.") and "λ=" in plot.status
    assert "λ=%{customdata" in defuse.hovertemplate
    assert not review.visible and not chosen.visible   # no label review, nothing chosen


def test_precomputed_baseline_is_drawn(digits, tiny_models, task):
    results = [{"lam": 1.0, "test": 0.9, "region_test": 0.3}]
    plot = _plot(digits, tiny_models, task, baseline_results=results)
    assert list(plot._fig.data[1].x) == [0.9] and list(plot._fig.data[1].y) == [0.3]


class _StopAfterFirstLam(Callback):
    def __init__(self):
        self.plot, self.batches_after_stop = None, 0

    def on_batch_end(self, corrector, **kw):
        if self.plot._stop_event.is_set():
            self.batches_after_stop += 1

    def on_lam_end(self, corrector, **kw):
        self.plot.stop()


def test_stop_ends_the_sweep(digits, tiny_models, task):
    X_f, y_f, _ = task
    stopper = _StopAfterFirstLam()
    plot = _plot(digits, tiny_models, task, lams=[1e-3, 1e-2, 1e-1, 1.0, 10.0], epochs=2,
                 batch_size=128, X_adv=X_f, y_adv=y_f, callbacks=[stopper])
    stopper.plot = plot
    plot.start()
    assert plot.join(TIMEOUT)
    assert plot.corrector_.cancelled_ and not plot.running
    assert len(plot.results) == 1 and len(plot._fig.data[0].x) == 1
    assert stopper.batches_after_stop <= 1  # within one batch
    assert plot.baseline_corrector_ is None and plot.baseline_results == []
    assert plot.status.startswith("Stopped after 1 λ")


class _Pause(Callback):
    """Holds the worker inside the second λ's first batch until the test releases it."""

    def __init__(self):
        self.inside, self.release, self.lams = threading.Event(), threading.Event(), []

    def on_batch_end(self, corrector, *, lam, batch, **kw):
        self.lams.append(lam)
        if lam == 1e-2 and batch == 1:
            self.inside.set()
            self.release.wait(TIMEOUT)


def test_stop_from_the_caller_while_running(digits, tiny_models, task):
    pause = _Pause()
    plot = _plot(digits, tiny_models, task, lams=[1e-3, 1e-2, 1e-1], batch_size=128,
                 callbacks=[pause])
    plot.start()
    assert pause.inside.wait(TIMEOUT)  # the caller runs while the sweep is mid-λ
    assert plot.running and len(plot.results) == 1 and plot._stop_button.disabled is False
    plot._stop_button.click()
    pause.release.set()
    assert plot.join(TIMEOUT)
    assert plot.corrector_.cancelled_ and not plot.running
    assert pause.lams.count(1e-2) == 1 and 1e-1 not in pause.lams  # stopped within one batch
    assert len(plot.results) == 1


def test_error_is_shown_and_start_works_again(digits, tiny_models, task):
    _, _, evals = task
    plot = _plot(digits, tiny_models, task,
                 eval_sets={k: v for k, v in evals.items() if k != "validation"})
    plot.start()
    assert plot.join(TIMEOUT)
    assert isinstance(plot.error_, ValueError) and not plot.running
    assert "Correction failed" in plot.status and "validation" in plot.status
    assert any(o["name"] == "stderr" and "ValueError" in o["text"] for o in plot._log.outputs)
    assert not plot._start_button.disabled

    plot.eval_sets = evals
    plot._start_button.click()
    assert plot.join(TIMEOUT)
    assert plot.error_ is None and len(plot.results) == 2
    assert all(not math.isnan(v) for v in plot._fig.data[0].x)
    assert plot._log.outputs  # the earlier error is kept


def test_missing_plotted_set_is_reported(digits, tiny_models, task):
    _, _, evals = task
    plot = _plot(digits, tiny_models, task, y_key="nope")
    plot.start()
    assert plot.join(TIMEOUT)
    assert "nope" in plot.status and plot.corrector_ is None


def test_stop_button_leaves_a_session_that_the_next_start_resumes(digits, tiny_models, task,
                                                                 tmp_path):
    class ClickStopAfterFirstLam(Callback):
        def on_lam_end(self, corrector, **kw):
            plot._stop_button.click()        # what the user's click does

    lams = [1e-2, 1.0, 10.0]
    plot = _plot(digits, tiny_models, task, lams=lams, checkpoint_dir=tmp_path / "ckpt",
                 callbacks=[ClickStopAfterFirstLam()])
    plot._start_button.click()
    assert plot.join(TIMEOUT) and plot.status.startswith("Stopped after 1 λ")
    assert plot.error.value == ""
    saved = sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt"))
    assert saved == ["defuse_lam_0.pt"]      # only finished λs, no half-written files
    assert not list((tmp_path / "ckpt").glob("*.tmp"))

    again = _plot(digits, tiny_models, task, lams=lams, checkpoint_dir=tmp_path / "ckpt")
    again._start_button.click()
    assert again.join(TIMEOUT) and again.error_ is None, again._log.outputs
    assert again.corrector_.resumed_ == [0]   # the stopped sweep's λ is reused, not redone
    fresh = _plot(digits, tiny_models, task, lams=lams)
    fresh.start()
    assert fresh.join(TIMEOUT)
    for a, b in zip(again.results, fresh.results):
        assert a["lam"] == b["lam"] and a["test"] == pytest.approx(b["test"], abs=1e-6)


def test_start_again_keeps_the_drawn_points_until_each_lambda_reports(digits, tiny_models, task):
    """Issue 15: Start after Stop cleared the plot before refilling it."""
    seen = []

    class Watch(Callback):
        def on_lam_begin(self, corrector, *, lam, **kw):
            seen.append(sorted(r["lam"] for r in plot.results))

    lams = [1e-2, 1.0]
    plot = _plot(digits, tiny_models, task, lams=lams, callbacks=[Watch()])
    plot.start()
    assert plot.join(TIMEOUT) and seen[0] == []
    seen.clear()
    plot.start()
    assert plot.join(TIMEOUT) and plot.error_ is None
    assert seen[0] == lams                                   # nothing cleared on Start
    assert sorted(r["lam"] for r in plot.results) == lams    # replaced, not duplicated
    assert plot.best and plot.best["lam"] in lams


def _points_event(trace_points):
    """What plotly.js sends for a click: {trace_index: [point_index, ...]}."""
    pairs = [(t, i) for t, inds in trace_points.items() for i in inds]
    return {"new": {"event_type": "plotly_click", "points": {
        "trace_indexes": [t for t, _ in pairs], "point_indexes": [i for _, i in pairs],
        "xs": [0.0] * len(pairs), "ys": [0.0] * len(pairs)}}}


def _pts(value):
    return f"{100 * value:+.1f}".replace("-", "−")


@pytest.fixture(scope="module")
def swept(digits, tiny_models, task):
    """One finished two-λ sweep, shared by the tests that only read or choose."""
    plot = _plot(digits, tiny_models, task)
    plot.start()
    assert plot.join(TIMEOUT) and plot.error_ is None, plot._log.outputs
    return plot


def test_rule_choice_verdict_and_intervals_are_shown(swept):
    plot, corrector = swept, swept.corrector_
    assert plot.arm == "defuse" and plot.best == corrector.best_
    assert plot.verdict == corrector.verdict_ != "" and plot.corrected is corrector.corrected_
    rule = plot._fig.data[3]
    assert list(rule.customdata) == [corrector.best_["lam"]]
    line = plot._choice.value
    assert f"λ = {corrector.best_['lam']:g}" in line and "Rule's choice" in line
    assert html.escape(corrector.verdict_) in line and "Click a Defuse" in line
    defuse = plot._fig.data[0]
    assert "%{text}" in defuse.hovertemplate
    # axes name the sets for people, not by their Python keys (issue 15)
    assert plot._fig.layout.yaxis.title.text == "region-test accuracy"
    assert "region-test" in plot.status and "region_test" not in plot.status
    assert "region_test" not in defuse.hovertemplate
    for rec, text in zip(plot.results, defuse.text):   # results are already sorted by λ
        assert (f"validation {_pts(rec['validation_change'])} pts "
                f"[{_pts(rec['validation_change_low'])}, "
                f"{_pts(rec['validation_change_high'])}]") in text
        assert f"region validation {_pts(rec['region_validation_change'])} pts [" in text
    best_text = defuse.text[list(defuse.customdata).index(corrector.best_["lam"])]
    assert rule.text == (best_text,) and "<br>validation " in best_text


def test_a_click_chooses_that_lambda(swept):
    plot, calls, seen = swept, [], []

    def chooser(lam, *, arm):   # what the dashboard passes: the session's choose_lam
        calls.append((lam, arm))
        return dict(arm=arm, lam=lam, by="ada")

    plot.chooser = chooser
    plot.on_choose(seen.append)
    other = next(r for r in plot.results if r["lam"] != plot.best["lam"])
    point = list(plot._fig.data[0].customdata).index(other["lam"])
    plot._fig._handler_js2py_pointsCallback(_points_event({0: [point]}))
    assert plot.error.value == "" and calls == [(other["lam"], "defuse")]
    assert plot.chosen == {"arm": "defuse", "lam": other["lam"], "by": "ada", "record": other}
    assert seen == [plot.chosen]
    ring = plot._fig.data[5]
    assert ring.visible and list(ring.customdata) == [other["lam"]]
    assert list(ring.x) == [other["test"]] and list(ring.y) == [other["region_test"]]
    assert "Chosen by hand" in plot._choice.value and "<b>ada</b>" in plot._choice.value
    assert "saved as the session's corrected model" in plot._choice.value
    # the rest of the UI says the same: the kept λ, and the rule's beside it
    assert f"Kept λ={other['lam']:g}" in plot.status and "rule selected" in plot.status
    assert f"Selected λ={plot.best['lam']:g}" not in plot.status
    cost = "loses validation accuracy significantly" in plot._choice.value
    assert cost == (other.get("validation_change_high", 0) < 0)

    plot._fig._handler_js2py_pointsCallback(_points_event({3: [0]}))   # the rule's star
    assert calls[-1] == (plot.best["lam"], "defuse") and plot.chosen["lam"] == plot.best["lam"]
    with pytest.raises(ValueError, match="lam must be a finished λ of arm 'defuse'"):
        plot.choose(123.0)
    with pytest.raises(ValueError, match="arm must be one of"):
        plot.choose(other["lam"], arm="baseline")
    plot.chooser = lambda lam, *, arm: (_ for _ in ()).throw(ValueError("annotator must be set"))
    plot._fig._handler_js2py_pointsCallback(_points_event({0: [point]}))   # shown, not raised
    assert "choose λ failed" in plot.error.value and "annotator must be set" in plot.error.value
    plot.chooser = None


def test_a_saved_sweep_and_choice_are_shown_again(swept, digits, tiny_models, task):
    corrector = swept.corrector_
    saved = {"defuse": {"results": corrector.results_, "before": corrector.before_,
                        "best": corrector.best_, "corrected": False,
                        "verdict": "No λ fixes the regions."}}
    record = corrector.results_[0]
    choice = dict(arm="defuse", lam=record["lam"], by="bob", record=record)
    plot = _plot(digits, tiny_models, task)
    plot.show_saved(saved, choice)
    assert plot.results == corrector.results_ and plot.best == corrector.best_
    assert plot.chosen == choice and list(plot._fig.data[5].customdata) == [record["lam"]]
    assert list(plot._fig.data[0].customdata) == [r["lam"] for r in corrector.results_]
    assert "No λ fixes the regions." in plot._choice.value and "<b>bob</b>" in plot._choice.value
    assert "not saved (this plot has no session)" in plot._choice.value
    assert plot.status.startswith("Saved sweep: 2 λ.") and "Kept λ=" in plot.status
    assert "the rule selected λ=" in plot.status   # the saved hand choice leads


def test_a_chosen_lambda_that_costs_validation_accuracy_is_flagged():
    from defuse_widgets.widgets.tradeoff_plot.view import choice_html

    record = dict(lam=1.0, validation_change=-0.03, validation_change_low=-0.047,
                  validation_change_high=-0.013)
    text = choice_html(best=dict(lam=0.1), arm="defuse", verdict="", corrected=True,
                       chosen=dict(lam=1.0, arm="defuse", by="ada", record=record),
                       saves=True, can_choose=False)
    assert "loses validation accuracy significantly: -3.0 points" in text
    assert "-4.7 to -1.3" in text and "replaces the rule's choice" in text
    record["validation_change_high"] = 0.004   # the interval holds 0: no warning
    text = choice_html(best=dict(lam=0.1), arm="defuse", verdict="", corrected=True,
                       chosen=dict(lam=1.0, arm="defuse", by="ada", record=record),
                       saves=True, can_choose=False)
    assert "significantly" not in text


def test_each_lambda_point_is_labelled_with_its_lambda(swept):
    for trace in swept._fig.data[:2]:   # Defuse and baseline
        assert "text" in trace.mode and trace.texttemplate == "λ=%{customdata}"
    assert list(swept._fig.data[0].customdata) == [r["lam"] for r in swept.results]


def test_a_page_that_opens_later_gets_the_points_drawn_so_far(swept):
    # Voila asks for the state after the notebook ran: plotly's synced _widget_data
    # still held the empty figure of the moment it was created
    state = swept._fig.get_state()
    defuse = state["_widget_data"][0]
    assert defuse["name"] == "Defuse" and len(defuse["customdata"]) == len(swept.results)
    assert state["_widget_layout"]["xaxis"]["title"]["text"] == "test accuracy"
