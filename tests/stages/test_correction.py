import copy

import pytest
import torch

from defuse_widgets.callbacks import Callback, History
from defuse_widgets.stages.correction import PAPER_LAMS, Corrector


@pytest.fixture(scope="module")
def task(digits):
    """D = digits train; D_f = 60 held-out 3s labelled 8 (a planted 'region label')."""
    threes = digits.X_test[digits.y_test == 3]
    X_f, y_f = threes[:30], torch.full((30,), 8)
    X_rt, y_rt = threes[30:], torch.full((len(threes) - 30,), 8)
    evals = {"validation": (digits.X_val, digits.y_val), "region_validation": (X_f, y_f),
             "region_test": (X_rt, y_rt)}
    return X_f, y_f, evals


class Recorder(Callback):
    def __init__(self, stop_after=None):
        self.events, self.stop_after, self.batches = [], stop_after, 0

    def on_lam_begin(self, corrector, *, lam, **kw):
        self.events.append(("lam_begin", lam))

    def on_batch_end(self, corrector, **kw):
        self.batches += 1
        if self.stop_after and self.batches >= self.stop_after:
            corrector.stop()

    def on_epoch_end(self, corrector, *, record, **kw):
        self.events.append(("epoch", record["lam"], record["epoch"]))

    def on_lam_end(self, corrector, *, result, **kw):
        self.events.append(("lam_end", result["lam"]))


def test_large_lambda_fixes_region_small_does_not(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    before = copy.deepcopy(clf.state_dict())
    c = Corrector(lams=[0.0, 10.0], epochs=2, batch_size=128, seed=0, selection="balanced",
                  tolerance=1.0).fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    low, high = c.results_
    assert c.before_["region_test"] < 0.1
    assert low["region_test"] < 0.3
    assert high["region_test"] > 0.8
    assert c.best_["lam"] == 10.0  # any validation drop allowed: the best region accuracy wins
    assert all(torch.equal(v, clf.state_dict()[k]) for k, v in before.items())  # input untouched
    assert c.best_model_ is not clf
    # the kept model is the selected λ's best epoch (only that λ's weights are held)
    from defuse_widgets.models.inference import predict
    X_rt, y_rt = evals["region_test"]
    assert (predict(c.best_model_, X_rt) == y_rt).float().mean().item() == pytest.approx(
        high["region_test"])
    assert (predict(c.best_model_, X_rt) == y_rt).float().mean().item() != pytest.approx(
        low["region_test"])


def test_balanced_selection_protects_validation_accuracy(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    c = Corrector(lams=[0.0, 0.1, 10.0], epochs=1, batch_size=128, selection="balanced",
                  tolerance=0.0).fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    floor = c.before_["validation"]
    ok = [r for r in c.results_ if r["validation"] >= floor]
    if ok:
        assert c.best_ is max(ok, key=lambda r: r["region_validation"])
    else:
        assert c.best_ is max(c.results_, key=lambda r: r["score"])
    assert any(r["validation"] < floor for r in c.results_)  # the rule had something to reject


def test_interval_rule_takes_best_region_among_insignificant_validation_changes(
        digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    c = Corrector(lams=[0.0, 0.1, 10.0], epochs=1, batch_size=128).fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert c.selection == "interval"
    n_val = len(digits.y_val)
    for r in c.results_:
        assert r["validation_change_low"] <= r["validation_change"] <= r["validation_change_high"]
        assert r["validation_change"] == pytest.approx(r["validation"] - c.before_["validation"])
        assert r["validation_change"] == pytest.approx(
            (r["validation_gained"] - r["validation_lost"]) / n_val)
        assert r["region_validation_change"] == pytest.approx(
            r["region_validation"] - c.before_["region_validation"])
    ok = [r for r in c.results_ if r["validation_change_high"] >= 0]
    assert ok, "λ = 0 fine-tunes on D alone and may not lose validation accuracy significantly"
    assert c.best_ is max(ok, key=lambda r: (r["region_validation"], r["validation"]))
    assert c.best_["lam"] > 0 and c.corrected_ is True   # D_f's region gets fixed
    assert c.verdict_.startswith(f"λ = {c.best_['lam']:g} fixes the regions")


def test_verdict_says_plainly_when_no_lambda_fixes_the_regions(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    c = Corrector(lams=[0.0], epochs=1, batch_size=128).fit(   # λ = 0 ignores D_f
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert c.corrected_ is False
    assert c.verdict_.startswith("No λ fixes the regions without a significant validation loss")
    assert "not saved as corrected" in c.verdict_


def test_callbacks_and_history(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    rec = Recorder()
    c = Corrector(lams=[1e-3, 1.0], epochs=2, batch_size=256, callbacks=[rec]).fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert rec.events == [("lam_begin", 1e-3), ("epoch", 1e-3, 1), ("epoch", 1e-3, 2),
                          ("lam_end", 1e-3), ("lam_begin", 1.0), ("epoch", 1.0, 1),
                          ("epoch", 1.0, 2), ("lam_end", 1.0)]
    assert isinstance(c.history_, History) and len(c.history_) == 4
    assert c.history_.column("epoch") == [1, 2, 1, 2]
    for r in c.results_:  # the selected epoch ranks first among its lambda's epochs
        epochs = [h for h in c.history_ if h["lam"] == r["lam"]]
        top = max(epochs, key=c.rank)
        assert (r["epoch"], r["region_validation"]) == (top["epoch"], top["region_validation"])


def test_stop_ends_within_one_batch(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    rec = Recorder(stop_after=3)
    c = Corrector(lams=[1.0, 2.0], epochs=3, batch_size=64, callbacks=[rec]).fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert c.cancelled_ and rec.batches == 3
    assert c.results_ == [] and c.best_model_ is None


def test_checkpoints_and_custom_loss(tmp_path, digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task

    class OnlyD(Corrector):
        def get_loss(self, logits, y, logits_f, y_f, lam):
            return torch.nn.functional.cross_entropy(logits, y)

    c = OnlyD(lams=[100.0], epochs=1, checkpoint_dir=tmp_path).fit(
        clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert c.results_[0]["region_test"] < 0.3  # the overridden loss ignores D_f
    state = torch.load(tmp_path / "defuse_lam_0.pt", weights_only=True)
    assert set(state) == set(clf.state_dict())


def test_paper_lambdas():
    assert len(PAPER_LAMS) == 17 and PAPER_LAMS[0] == 1e-10 and PAPER_LAMS[-1] == 1000


@pytest.mark.parametrize("kw, exc, match", [
    ({"lams": [1.0, -0.5]}, ValueError, r"lams\[1\] must be >= 0"),
    ({"lams": []}, ValueError, "lams must hold at least one"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"selection": "best"}, ValueError, "selection must be one of"),
    ({"callbacks": [print]}, TypeError, "callbacks must hold Callback"),
])
def test_bad_parameters(digits, tiny_models, task, kw, exc, match):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    with pytest.raises(exc, match=match):
        Corrector(**kw).fit(clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)


def test_missing_eval_sets_and_shapes(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    with pytest.raises(ValueError, match="eval_sets must contain"):
        Corrector().fit(clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets={})
    with pytest.raises(ValueError, match=r"X_f must have shape \(n, 1, 8, 8\)"):
        Corrector().fit(clf, digits.X_train, digits.y_train, X_f[:, :, :4], y_f, eval_sets=evals)
    with pytest.raises(ValueError, match=r"y_f must hold class indices"):
        Corrector(lams=[1.0]).fit(clf, digits.X_train, digits.y_train, X_f, y_f + 20,
                                  eval_sets=evals)


def test_stop_before_fit_cancels_that_fit_only(digits, tiny_models, task):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    c = Corrector(lams=[1.0], epochs=1, batch_size=256)
    c.stop()
    c.fit(clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)
    assert c.cancelled_ and c.results_ == []
    c.fit(clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals)  # request was cleared
    assert not c.cancelled_ and len(c.results_) == 1


def test_images_the_classifier_refuses_name_the_shape_it_takes():
    from torch import nn

    from defuse_widgets.models import MnistCNN

    y = torch.zeros(4, dtype=torch.long)
    X = torch.rand(4, 1, 16, 16)
    for clf in (MnistCNN(1, 8, 10), nn.Sequential(nn.Flatten(), nn.Linear(64, 10))):
        with pytest.raises(ValueError, match=r"X must hold images the classifier takes "
                                             r"\(\(1, 8, 8\)\); got shape \(1, 16, 16\)"):
            Corrector(lams=[1.0]).fit(clf, X, y, X[:2], y[:2])


def test_a_classifier_returning_a_tuple_is_named():
    from torch import nn

    from defuse_widgets.models import MnistCNN

    class WithFeatures(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = MnistCNN(1, 8, 10)

        def forward(self, x):
            return self.net(x), x.flatten(1)
    X, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match=r"classifier must return a tensor of logits .*got a "
                                        r"tuple of 2"):
        Corrector(lams=[1.0]).fit(WithFeatures(), X, y, X[:2], y[:2])


@pytest.mark.parametrize("lams, error, message", [
    (None, TypeError, r"lams must be a non-empty sequence of finite numbers >= 0 .*got None"),
    (1.0, TypeError, r"lams must be a non-empty sequence .*got 1\.0"),
    ("1,2", TypeError, r"lams must be a non-empty sequence .*got '1,2'"),
    ([], ValueError, r"lams must hold at least one λ value"),
    ([1.0, -1.0], ValueError, r"lams\[1\] must be >= 0; got -1\.0"),
    ([float("nan")], ValueError, r"lams\[0\] must be finite"),
])
def test_lams_must_be_a_sequence_of_finite_non_negative_numbers(lams, error, message):
    from defuse_widgets.models import MnistCNN

    X, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(error, match=message):
        Corrector(lams=lams).fit(MnistCNN(1, 8, 10), X, y, X[:2], y[:2])


def test_corrector_follows_the_estimator_contract():
    """clone, get_params and set_params as in scikit-learn; a clone shares no stop flag."""
    from sklearn.base import clone

    c = Corrector(lams=(0.1, 1.0), epochs=2, seed=3)
    params = c.get_params()
    assert params["lams"] == (0.1, 1.0) and params["epochs"] == 2 and params["seed"] == 3
    twin = clone(c)
    assert twin.get_params() == params and twin is not c
    c.stop()
    assert not twin.stopping
    assert c.set_params(epochs=4) is c and c.epochs == 4
    assert "epochs=4" in repr(c)
