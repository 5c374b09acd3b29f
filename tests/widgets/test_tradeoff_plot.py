import math
import threading

import pytest
import torch

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
    plot.start()
    assert plot.running  # start() returns while the sweep runs
    assert plot.join(TIMEOUT)
    assert not plot.running and plot.error_ is None, plot._log.outputs
    defuse, baseline, before, best = plot._fig.data
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
