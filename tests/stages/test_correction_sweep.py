"""The sweep's schedules (full, successive halving) and its bf16 precision."""
import copy
import gc
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from defuse_widgets.callbacks import Callback, StageProgress
from defuse_widgets.stages.correction import Corrector
from defuse_widgets.stages.correction.sweep import ETA, planned_lam_epochs, prune

LAMS = [0.0, 0.01, 0.1, 1.0, 10.0]


class _Epochs(Callback, list):
    def on_epoch_end(self, corrector, *, record, **kw):
        self.append((record["lam"], record["epoch"]))


def _fit(tiny_models, digits, task, **kw):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    seen = _Epochs()
    params = dict(lams=LAMS, epochs=3, batch_size=256, device="cpu", callbacks=[seen])
    corrector = Corrector(**{**params, **kw})
    return corrector.fit(clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals), seen


@pytest.fixture(scope="module")
def full(tiny_models, digits, task):
    return _fit(tiny_models, digits, task)


def test_planned_lam_epochs():
    assert planned_lam_epochs(17, 3, "full") == 51
    assert planned_lam_epochs(17, 3, "halving") == 17 + 6 + 2
    assert planned_lam_epochs(5, 3, "halving") == 5 + 2 + 1
    assert planned_lam_epochs(4, 1, "halving") == 4


def test_prune_keeps_the_best_third_and_breaks_ties_towards_small_lambda():
    scores = {0: 0.5, 1: 0.9, 2: 0.9, 3: 0.1}
    keep = prune([0, 1, 2, 3], scores, [0.0, 0.1, 1.0, 10.0])
    assert keep == [1, 2][:-(-4 // ETA)]      # ⌈4/3⌉ = 2: the two best
    assert prune([1, 2], scores, [0.0, 0.1, 1.0, 10.0]) == [1]   # a tie: the smaller λ


def test_halving_trains_only_the_survivors_with_the_full_sweeps_records(
        tiny_models, digits, task, full):
    """Each λ's records equal the full sweep's (own random streams), and the λs
    that train on are exactly those the pruning rule picks from those records.
    """
    full_c, _ = full
    half, seen = _fit(tiny_models, digits, task, schedule="halving")
    assert len(seen) == planned_lam_epochs(len(LAMS), 3, "halving") == 8
    by_key = {(r["lam"], r["epoch"]): r for r in full_c.history_}
    for rec in half.history_:
        ref = by_key[(rec["lam"], rec["epoch"])]
        for key in ("loss", "validation", "region_validation", "score"):
            assert rec[key] == pytest.approx(ref[key], abs=1e-6), (rec["lam"], key)
    # replay the rule on the full sweep's records
    cands = list(range(len(LAMS)))
    for epoch in (1, 2):
        scores = {i: max(r["score"] for r in full_c.history_ if r["lam"] == LAMS[i]
                         and r["epoch"] <= epoch) for i in cands}
        cands = prune(cands, scores, LAMS)
        trained = sorted(LAMS.index(lam) for lam, e in seen if e == epoch + 1)
        assert trained == cands
    assert [r["lam"] for r in half.results_] == LAMS       # every λ has a result, in order
    assert half.best_ in half.results_
    assert half.steps_done_ == half.steps_total_ == 8 * 5   # 8 λ-epochs × 5 batches


class _Live(Callback):
    """How many λs were begun and not yet finished, at most."""

    def __init__(self):
        self.live = self.most = 0

    def on_lam_begin(self, corrector, **kw):
        self.live += 1
        self.most = max(self.most, self.live)

    def on_lam_end(self, corrector, **kw):
        self.live -= 1


def test_halving_holds_only_the_runs_still_in_the_race(tiny_models, digits, task, full):
    """A run that ⌈n/ETA⌉ finished runs of its rung already beat is finished at once, so
    memory holds at most ⌈n/ETA⌉ + 1 runs (not all n), and the result is unchanged.
    """
    live = _Live()
    half, seen = _fit(tiny_models, digits, task, schedule="halving", callbacks=[live])
    assert live.most <= -(-len(LAMS) // ETA) + 1 < len(LAMS)
    assert live.live == 0
    ref, _ = _fit(tiny_models, digits, task, schedule="halving",
                  executor=ThreadPoolExecutor(1))   # the executor path holds every run
    assert [r["lam"] for r in half.results_] == [r["lam"] for r in ref.results_]
    for a, b in zip(half.results_, ref.results_):
        assert a["test"] == pytest.approx(b["test"]) and a["epoch"] == b["epoch"]
    assert half.best_["lam"] == ref.best_["lam"]


def test_halving_resumes_to_the_uninterrupted_result(tiny_models, digits, task, tmp_path):
    whole, _ = _fit(tiny_models, digits, task, schedule="halving")

    class StopAfter(Callback):
        def __init__(self):
            self.n = 0

        def on_lam_end(self, corrector, **kw):
            self.n += 1
            if self.n == 3:      # two λs pruned at rung 1, then stop
                corrector.stop()

    first, _ = _fit(tiny_models, digits, task, schedule="halving", checkpoint_dir=tmp_path,
                    callbacks=[StopAfter()])
    assert first.cancelled_ and 0 < len(first.results_) < len(LAMS)
    again, _ = _fit(tiny_models, digits, task, schedule="halving", checkpoint_dir=tmp_path)
    assert sorted(again.resumed_) == sorted(first.lam_index_)
    assert [r["test"] for r in again.results_] == [r["test"] for r in whole.results_]
    assert again.best_["lam"] == whole.best_["lam"]


def test_halving_on_an_executor_equals_in_process(tiny_models, digits, task):
    local, _ = _fit(tiny_models, digits, task, schedule="halving")
    # one worker thread: threads share torch's global random stream (dropout),
    # so parallel threads are not reproducible; processes (Dask) are: test_scale_out
    with ThreadPoolExecutor(1) as pool:
        remote, seen = _fit(tiny_models, digits, task, schedule="halving", executor=pool)
    assert len(seen) == 8
    for a, b in zip(local.results_, remote.results_):
        for key in ("test", "region_test", "validation", "epoch"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["lam"], key)


def test_stage_progress_counts_to_the_planned_total(tiny_models, digits, task):
    calls = []
    c, _ = _fit(tiny_models, digits, task, schedule="halving",
                callbacks=[StageProgress(lambda stage, d, t: calls.append((d, t)))])
    assert [d for d, _ in calls] == list(range(1, 41))
    assert {t for _, t in calls} == {40}


SEEN_DTYPES = []


def _record_dtype(module, inputs, output):
    SEEN_DTYPES.append(output.dtype)


def test_bf16_precision_runs_the_passes_in_bf16_and_keeps_fp32_weights(
        tiny_models, digits, task):
    import copy

    clf, _ = tiny_models
    X_f, y_f, evals = task
    probe = copy.deepcopy(clf)
    handle = probe.fc2.register_forward_hook(_record_dtype)   # the deep copies keep it
    SEEN_DTYPES.clear()
    c = Corrector(lams=[0.1], epochs=1, batch_size=256, device="cpu", precision="bf16",
                  channels_last=True)
    c.fit(probe, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    handle.remove()
    assert c.precision_ == "bf16" and c.sweep_params()["precision"] == "bf16"
    assert torch.bfloat16 in SEEN_DTYPES                 # the training passes
    assert torch.float32 in SEEN_DTYPES                  # the evaluations
    assert all(p.dtype == torch.float32 for p in c.best_model_.parameters())
    fp32 = Corrector(lams=[0.1], epochs=1, batch_size=256, device="cpu").fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert fp32.precision_ == "fp32"
    # channels-last follows the precision unless set
    assert not fp32.sweep_params()["channels_last"]
    assert Corrector(precision="bf16").sweep_params()["channels_last"]
    assert not Corrector(precision="bf16", channels_last=False).sweep_params()["channels_last"]
    assert abs(fp32.results_[0]["validation"] - c.results_[0]["validation"]) < 0.05


def test_bad_schedule_and_precision_are_named():
    with pytest.raises(ValueError, match="schedule"):
        Corrector(schedule="fast")._check_params()
    with pytest.raises(ValueError, match="precision"):
        Corrector(precision="fp16")._check_params()
    with pytest.raises(TypeError, match="channels_last"):
        Corrector(channels_last="yes")._check_params()


@pytest.mark.parametrize("schedule", ["full", "halving"])
def test_progress_bar_counts_finished_lambdas(tiny_models, digits, task, capsys, schedule):
    _fit(tiny_models, digits, task, schedule=schedule, progress=True, epochs=1)
    err = capsys.readouterr().err
    assert f"{len(LAMS)}/{len(LAMS)}" in err and "defuse" in err
    _fit(tiny_models, digits, task, schedule=schedule, epochs=1)
    assert capsys.readouterr().err == ""               # progress=False: no bar


class _LiveModels(Callback):
    """The most classifier copies alive at an epoch's end (garbage collector's count)."""

    def __init__(self, kind):
        self.kind, self.most = kind, 0

    def on_epoch_end(self, corrector, **kw):
        n = sum(type(o) is self.kind for o in gc.get_objects())
        self.most = max(self.most, n)


def test_halving_parks_paused_runs_so_it_holds_no_more_models_than_a_full_sweep(
        tiny_models, digits, task, full):
    """Paused runs go to disk: halving keeps as many classifier copies in memory as
    the full sweep (one run at a time), not one per paused λ, and its records stay
    bit-equal to the full sweep's (test above).
    """
    kind = type(tiny_models[0])
    counts = {}
    for schedule in ("full", "halving"):
        gc.collect()
        live = _LiveModels(kind)
        _fit(tiny_models, digits, task, schedule=schedule, callbacks=[live])
        counts[schedule] = live.most
    assert counts["halving"] <= counts["full"], counts


def test_parked_runs_round_trip_bit_for_bit(tiny_models, tmp_path):
    from defuse_widgets.stages.correction.parked_runs import ParkedRuns
    from defuse_widgets.stages.correction.sweep import Run

    base = tiny_models[0]
    model = copy.deepcopy(base)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(4, 1, 8, 8)).sum().backward()
    opt.step()
    best = {k: v.clone() for k, v in model.state_dict().items()}
    run = Run(i=3, lam=1.0, model=model, opt_state=opt.state_dict(), rng_state=(None, None),
              gen_state=torch.Generator().get_state(), perm_f=torch.arange(4), best_state=best)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    moments = opt.state_dict()["state"][0]["exp_avg"].clone()
    parked = ParkedRuns(base, torch.contiguous_format, torch.device("cpu"), folder=tmp_path)
    parked.park(run)
    assert run.model is None and run.opt_state is None and run.best_state is None
    assert run.parked is not None
    assert parked.restore(run) is run and run.model is not model and run.parked is None
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert torch.equal(run.opt_state["state"][0]["exp_avg"], moments)
    assert all(torch.equal(run.best_state[k], best[k]) for k in best)
    parked.close()
    assert list(tmp_path.iterdir()) == []
