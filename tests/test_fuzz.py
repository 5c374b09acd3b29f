"""Fuzzed inputs across the public API: every bad value is a ValueError or TypeError naming it.

Each test draws bad values for one parameter (wrong type or dtype, wrong
shape, NaN and inf, empty input, huge or zero τ, out-of-range labels,
mismatched lengths) and checks that the call fails at the API boundary with
a message that names the parameter, never deep inside torch or scikit-learn
and never with a silently wrong answer. Hypothesis is seeded (derandomize).
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defuse_widgets.data import load_dataset
from defuse_widgets.stages.correction import Corrector
from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.failure_data import build_failure_sets
from defuse_widgets.stages.identification import identify
from defuse_widgets.stages.labeling import RegionDecision, decide, decide_region
from defuse_widgets.stages.latent_map import LatentMap
from defuse_widgets.storage.annotations import AnnotationStore
from defuse_widgets.workflow import DefuseConfig

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

NOT_A_NUMBER = st.one_of(st.text(max_size=3), st.none(), st.booleans(),
                         st.lists(st.integers(0, 3), max_size=2), st.just(object()))
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def bad_int(low=None, high=None):
    """Values an integer parameter in [low, high] must refuse."""
    out = [NOT_A_NUMBER, st.floats(allow_nan=True), st.just(np.float32(2.0))]
    if low is not None:
        out.append(st.integers(max_value=low - 1))
    if high is not None:
        out.append(st.integers(min_value=high + 1))
    return st.one_of(*out)


def bad_real(low=None, high=None, low_inclusive=True, high_inclusive=True):
    """Values a real parameter in the given range must refuse."""
    out = [NOT_A_NUMBER, NON_FINITE]
    if low is not None:
        out.append(st.floats(max_value=low, exclude_max=low_inclusive, allow_nan=False))
    if high is not None:
        out.append(st.floats(min_value=high, exclude_min=high_inclusive, allow_nan=False))
    return st.one_of(*out)


def bad_images(n=8, shape=(1, 8, 8)):
    """Image batches that are not (n, C, H, W) finite real numbers of the expected size."""
    good = np.zeros((n, *shape), np.float32)
    with_nan = good.copy()
    with_nan[1, 0, 2, 3] = np.nan
    with_inf = good.copy()
    with_inf[0, 0, 0, 0] = -np.inf
    return st.one_of(NOT_A_NUMBER, st.sampled_from([
        good[0], good[:, 0], good[None], good[:0], good[:, :, :7], np.zeros((n, 3, 8, 8)),
        with_nan, with_inf, good.astype(bool), good.astype(np.complex64),
        good.astype(str), good.astype(object), torch.zeros(n, 1, 8, 8, dtype=torch.bool)]))


def bad_labels(n=8, n_classes=10):
    """Label vectors with a wrong dtype, shape or length, or out-of-range classes."""
    return st.one_of(
        NOT_A_NUMBER.filter(lambda v: not isinstance(v, list)),
        st.integers(n_classes, 10**6).map(lambda c: np.full(n, c)),
        st.integers(-10**6, -1).map(lambda c: np.full(n, c)),
        st.integers(0, 3 * n).filter(lambda m: m != n).map(lambda m: np.zeros(m, np.int64)),
        st.sampled_from([np.zeros(n, np.float32), np.zeros((n, 1), np.int64),
                         np.zeros(n, bool), np.array(["1"] * n), np.full(n, np.nan),
                         torch.zeros(n, dtype=torch.complex64)]))


def not_none(strategy):
    """For parameters where None means "use the default"."""
    return strategy.filter(lambda v: v is not None)


def raises_naming(param, fn, *args, **kw):
    with pytest.raises((ValueError, TypeError)) as info:
        fn(*args, **kw)
    assert param in str(info.value), f"{param!r} not named in: {info.value}"
    return info.value


# ------------------------------------------------------------------ identification
@pytest.fixture(scope="module")
def small(digits):
    return digits.X_train[:8], digits.y_train[:8]


IDENTIFY = dict(Q=2, a=5.0, b=5.0, progress=False)


@FUZZ
@given(X=bad_images())
def test_identify_images(tiny_models, small, X):
    raises_naming("X", identify, *tiny_models, X, small[1], **IDENTIFY)


@FUZZ
@given(y=bad_labels())
def test_identify_labels(tiny_models, small, y):
    raises_naming("y", identify, *tiny_models, small[0], y, **IDENTIFY)


@FUZZ
@given(data=st.data(), param=st.sampled_from(["Q", "a", "b", "max_per_instance",
                                                "batch_size", "seed", "device"]))
def test_identify_settings(tiny_models, small, data, param):
    bad = {"Q": bad_int(1), "a": bad_real(0, low_inclusive=False),
           "b": bad_real(0, low_inclusive=False), "max_per_instance": not_none(bad_int(1)),
           "batch_size": bad_int(1), "seed": bad_int(0),
           "device": st.sampled_from(["gpu", "cuda:x", 3.5, "tpu"])}[param]
    raises_naming(param, identify, *tiny_models, *small, **{**IDENTIFY, param: data.draw(bad)})


def test_identify_refuses_non_modules(small):
    raises_naming("classifier", identify, "clf", torch.nn.Identity(), *small, **IDENTIFY)
    raises_naming("vae", identify, torch.nn.Identity(), None, *small, **IDENTIFY)


# ------------------------------------------------------------------- distillation
@FUZZ
@given(X=st.one_of(NOT_A_NUMBER, st.sampled_from([
    np.zeros(30), np.zeros((30, 2, 2)), np.zeros((0, 3)), np.full((30, 3), np.nan),
    np.array([[np.inf, 0, 0]] * 30), np.zeros((30, 3), bool), np.zeros((30, 3), complex),
    np.array([["a"] * 3] * 30)])))
def test_distiller_codes(X):
    raises_naming("X", Distiller(n_components=2).fit, X, n_classes=10)


@FUZZ
@given(data=st.data(), param=st.sampled_from(["n_components", "eps", "max_samples",
                                                "max_iter", "n_init", "tol", "seed"]))
def test_distiller_settings(data, param):
    bad = {"n_components": bad_int(1), "eps": bad_real(0, 1, high_inclusive=False),
           "max_samples": not_none(bad_int(1)), "max_iter": bad_int(1), "n_init": bad_int(1),
           "tol": bad_real(0), "seed": bad_int(0)}[param]
    z = np.random.default_rng(0).normal(size=(30, 3))
    raises_naming(param, Distiller(**{"n_components": 2, param: data.draw(bad)}).fit, z,
                  n_classes=10)


@FUZZ
@given(labels=not_none(bad_labels(n=30, n_classes=4)), which=st.sampled_from(["source_label",
                                                                      "predicted_label"]))
def test_distiller_labels(labels, which):
    z = np.random.default_rng(0).normal(size=(30, 3))
    raises_naming(which, Distiller(n_components=2).fit, z, n_classes=4, **{which: labels})


# ------------------------------------------------------------------------ regions
@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    return Distiller(n_components=3, eps=0.0).fit(tiny_adversarial, n_classes=10).regions_


@FUZZ
@given(data=st.data(), param=st.sampled_from(["region", "n", "tau", "seed"]))
def test_regions_sample(regions, data, param):
    bad = {"region": bad_int(0, len(regions) - 1), "n": bad_int(1),
           "tau": bad_real(0, low_inclusive=False), "seed": bad_int(0)}[param]
    kw = dict(k=0, n=3, tau=0.5, seed=0)
    kw[{"region": "k"}.get(param, param)] = data.draw(bad)
    raises_naming(param, regions.sample, **kw)


@FUZZ
@given(tau=st.floats(min_value=1e20, max_value=1e308))
def test_huge_tau_is_finite_or_refused(regions, tau):
    try:
        codes = regions.sample(0, 5, tau=tau)
    except ValueError as exc:
        assert "tau" in str(exc)
    else:
        assert np.isfinite(codes).all() and codes.dtype == np.float32


def test_regions_decode_refuses_non_decoder(regions):
    raises_naming("decoder", regions.decode, 0, 2, "vae")


# --------------------------------------------------------------------- annotations
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with AnnotationStore(tmp_path_factory.mktemp("fuzz") / "v.sqlite", n_classes=10) as s:
        s.set_review_set(0, [1, 2, 3])
        yield s


@FUZZ
@given(data=st.data(), param=st.sampled_from(["annotator", "region", "sample", "label"]))
def test_cast_vote(store, data, param):
    bad = {"annotator": st.one_of(st.sampled_from(["", "   "]), st.integers(), st.none()),
           "region": st.one_of(bad_int(0), st.integers(1, 10**6)),
           "sample": st.one_of(bad_int(0), st.integers(3, 10**6)),
           "label": st.one_of(bad_int(-1, 9), st.integers(max_value=-2))}[param]
    kw = dict(annotator="ada", region=0, sample=0, label=1)
    kw[param] = data.draw(bad)
    raises_naming(param, store.cast_vote, **kw)
    assert store.votes() == []   # nothing half-written


@FUZZ
@given(n_classes=bad_int(2))
def test_store_classes(tmp_path_factory, n_classes):
    raises_naming("n_classes", AnnotationStore, tmp_path_factory.mktemp("c") / "v.sqlite",
                  n_classes=n_classes)


# ----------------------------------------------------------------------- labeling
@FUZZ
@given(rho=bad_real(0, 1, high_inclusive=False))
def test_decide_rho(store, rho):
    raises_naming("rho", decide, store, rho=rho)


@FUZZ
@given(votes=st.sampled_from([np.zeros(3, np.int64), np.zeros((2, 3)), np.full((2, 3), -3),
                              np.array([["1"] * 3])]), )
def test_decide_region_votes(votes):
    raises_naming("votes", decide_region, votes, [1, 2, 3])


@FUZZ
@given(predicted=st.sampled_from([[1, 2], [1, 2, 3, 4], [[1, 2, 3]], [1.0, 2.0, 3.0],
                                  [-1, 0, 0]]))
def test_decide_region_predicted(predicted):
    raises_naming("predicted", decide_region, np.zeros((2, 3), np.int64), predicted)


def test_decide_refuses_non_store():
    raises_naming("store", decide, "votes.sqlite")


# --------------------------------------------------------------------- correction
@pytest.fixture(scope="module")
def sweep(digits):
    X, y = digits.X_train[:64], digits.y_train[:64]
    X_f, y_f = digits.X_test[:8], torch.full((8,), 8)
    return X, y, X_f, y_f, {"validation": (digits.X_val[:32], digits.y_val[:32]),
                            "region_validation": (X_f, y_f)}


@FUZZ
@given(data=st.data(), param=st.sampled_from(["X", "y", "X_f", "y_f"]))
def test_corrector_data(tiny_models, sweep, data, param):
    X, y, X_f, y_f, evals = sweep
    bad = {"X": bad_images(64), "y": bad_labels(64), "X_f": bad_images(8),
           "y_f": bad_labels(8)}[param]
    args = dict(X=X, y=y, X_f=X_f, y_f=y_f)
    args[param] = data.draw(bad)
    c = Corrector(lams=[1.0], epochs=1)
    raises_naming(param, c.fit, tiny_models[0], **args, eval_sets=evals)


@FUZZ
@given(data=st.data(), param=st.sampled_from(["lams", "epochs", "lr", "batch_size",
                                                "selection", "tolerance", "seed",
                                                "callbacks"]))
def test_corrector_settings(tiny_models, sweep, data, param):
    X, y, X_f, y_f, evals = sweep
    bad = {"lams": st.one_of(st.just([]), st.lists(bad_real(0), min_size=1, max_size=3)),
           "epochs": bad_int(1), "lr": bad_real(0, low_inclusive=False),
           "batch_size": bad_int(1), "selection": st.sampled_from(["best", "", None]),
           "tolerance": bad_real(0, 1), "seed": bad_int(0),
           "callbacks": st.sampled_from([None, "cb", [print], [object()]])}[param]
    c = Corrector(**{"lams": [1.0], "epochs": 1, param: data.draw(bad)})
    raises_naming(param, c.fit, tiny_models[0], X, y, X_f, y_f, eval_sets=evals)


@FUZZ
@given(evals=st.sampled_from([
    "validation", {"validation": (np.zeros((4, 1, 8, 8)), np.zeros(5, np.int64))},
    {"validation": (np.full((4, 1, 8, 8), np.nan), np.zeros(4, np.int64))},
    {"validation": (np.zeros((4, 1, 8, 8)), np.full(4, 12))}, {}]))
def test_corrector_eval_sets(tiny_models, sweep, evals):
    X, y, X_f, y_f, _ = sweep
    raises_naming("eval_sets", Corrector(lams=[1.0], epochs=1).fit, tiny_models[0], X, y,
                  X_f, y_f, eval_sets=evals)


# ------------------------------------------------------------------- failure data
@FUZZ
@given(data=st.data(), param=st.sampled_from(["n_finetune", "n_region_test", "tau", "seed",
                                                "decisions", "sets"]))
def test_build_failure_sets(regions, tiny_models, data, param):
    accept = RegionDecision(0, True, 3, 1.0, 1.0, 10, 0)
    bad = {"n_finetune": bad_int(1), "n_region_test": bad_int(1),
           "tau": bad_real(0, low_inclusive=False), "seed": bad_int(0),
           "decisions": st.sampled_from([
               None, 3, "abc", [{"region": 0}], [RegionDecision(99, True, 3, 1.0, 1.0, 10, 0)],
               [RegionDecision(0, True, 10, 1.0, 1.0, 10, 0)],
               [RegionDecision(0, True, None, 1.0, 1.0, 10, 0)]]),
           "sets": st.sampled_from([[], ["test"], "finetune", None])}[param]
    kw = dict(decisions=[accept], n_finetune=4, n_region_test=4, tau=0.5, seed=0,
              sets=("finetune",))
    kw[param] = data.draw(bad)
    raises_naming(param, build_failure_sets, regions, vae=tiny_models[1], **kw)


# ------------------------------------------------------------------------ embedding
@FUZZ
@given(data=st.data(), param=st.sampled_from(["perplexity", "n_iter",
                                                "early_exaggeration_iter", "seed",
                                                "joint", "train_codes", "codes"]))
def test_latent_map(data, param):
    z = np.random.default_rng(0).normal(size=(20, 3))
    bad = {"perplexity": bad_real(0, low_inclusive=False), "n_iter": bad_int(0),
           "early_exaggeration_iter": bad_int(0), "seed": bad_int(0),
           "joint": st.sampled_from([1, "yes", None]),
           "train_codes": st.sampled_from([z[:3], np.full((20, 3), np.nan), z[:, 0], "z"]),
           "codes": st.sampled_from([z[:, :2], np.full((5, 3), np.inf), [1, 2]])}[param]
    params, fit = dict(n_iter=10, early_exaggeration_iter=5), dict(train_codes=z)
    if param in ("train_codes", "codes"):
        fit[param] = data.draw(bad)
    else:
        params[param] = data.draw(bad)
    raises_naming(param, LatentMap(**params).fit, **fit)


# ------------------------------------------------------------------- data, config
@FUZZ
@given(name=st.one_of(st.text(max_size=8).filter(lambda s: s not in (
    "mnist5k", "digits", "mnist", "fashionmnist", "svhn", "gtsrb")), st.integers(), st.none()))
def test_load_dataset_name(name):
    raises_naming("dataset", load_dataset, name)


@FUZZ
@given(seed=bad_int(0))
def test_load_dataset_seed(seed):
    raises_naming("seed", load_dataset, "digits", seed=seed)


CONFIG_BAD = {
    "dataset": st.sampled_from(["imagenet", "", None]), "Q": bad_int(1),
    "a": bad_real(0, low_inclusive=False), "b": bad_real(0, low_inclusive=False),
    "n_components": bad_int(1),
    "eps": bad_real(0, 1, high_inclusive=False), "tau": bad_real(0, low_inclusive=False),
    "rho": bad_real(0, 1, high_inclusive=False), "error_rate": bad_real(0, 1),
    "epochs": bad_int(1), "batch_size": bad_int(1), "review_size": bad_int(1),
    "lams": st.one_of(st.just(()), st.lists(bad_real(0), min_size=1, max_size=2)),
    "selection": st.sampled_from(["best", None]), "seed": bad_int(0),
    "centered": st.sampled_from([1, "no", None]), "baseline": st.sampled_from([1, "no", None]),
    "map_size": st.sampled_from([0, 1, 2.5, "all"]),
}


@FUZZ
@given(data=st.data(), param=st.sampled_from(sorted(CONFIG_BAD)))
def test_defuse_config(data, param):
    raises_naming(param, DefuseConfig, **{param: data.draw(CONFIG_BAD[param])})
