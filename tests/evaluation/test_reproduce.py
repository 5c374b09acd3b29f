"""Reproduction helpers: the paper's settings, the reduced stand-in, cached model training."""
import pytest
import torch

from defuse_widgets.data.torchvision_sets import DatasetFilesMissing
from defuse_widgets.evaluation.reproduce import (
    PAPER_SETTINGS,
    load_for_reproduction,
    reproduction_config,
    settings_for,
    train_models,
)
from defuse_widgets.models.inference import predict
from defuse_widgets.stages.correction import PAPER_LAMS


def test_paper_settings_match_the_appendices():
    m, s, g = (PAPER_SETTINGS[k] for k in ("mnist", "svhn", "gtsrb"))
    assert (m["identify"]["Q"], m["identify"]["a"], m["tau"]) == (500, 50.0, 0.5)
    assert (s["identify"]["Q"], s["identify"]["a"], s["identify"]["max_per_instance"]) == (
        100, 75.0, 10)
    assert (g["tau"], s["tau"], g["vae"]["family"]) == (0.01, 0.01, "gtsrb")
    assert m["correct"]["epochs"] == 3 and s["correct"]["epochs"] == g["correct"]["epochs"] == 5
    assert m["correct"]["selection"] == "training" and g["correct"]["selection"] == "validation"
    assert all(p["distill"]["n_components"] == 100 and p["correct"]["lams"] == PAPER_LAMS
               for p in PAPER_SETTINGS.values())


def test_reduced_settings_override_budgets_but_keep_architectures():
    full, small = settings_for("svhn"), settings_for("svhn", reduced=True)
    assert small["classifier"]["arch"] == full["classifier"]["arch"] == "resnet18"
    assert small["classifier"]["weights"] is None and small["identify"]["Q"] < full["identify"]["Q"]
    assert small["identify"]["a"] == 75.0                     # the paper's noise is kept
    assert PAPER_SETTINGS["svhn"]["identify"]["Q"] == 100     # a copy, not the table itself
    with pytest.raises(ValueError, match="name"):
        settings_for("cifar10")


@pytest.mark.parametrize("name, shape", [("mnist", (1, 32, 32)), ("gtsrb", (3, 32, 32))])
def test_missing_files_give_a_labelled_stand_in(tmp_path, name, shape):
    data, reduced, message = load_for_reproduction(name, root=tmp_path)
    assert reduced and "REDUCED MODE" in message and name in message
    assert data.image_shape == shape and len(data.y_train) == 400
    assert torch.equal(data.X_train[:, 0], data.X_train[:, -1])   # grey copied to channels
    assert set(data.y_train.tolist()) == set(range(10))
    with pytest.raises(DatasetFilesMissing):
        load_for_reproduction(name, root=tmp_path, reduced=False)


def test_config_follows_the_settings(tmp_path):
    cfg = reproduction_config("gtsrb")
    assert (cfg.Q, cfg.a, cfg.b, cfg.tau, cfg.epochs, cfg.selection) == (
        100, 75.0, 75.0, 0.01, 5, "validation")
    cfg = reproduction_config("mnist", reduced=True, Q=3)
    assert cfg.Q == 3 and cfg.dataset == "mnist5k" and cfg.n_finetune == 64


def test_train_models_caches_and_retrains_when_settings_change(tmp_path):
    data, _, _ = load_for_reproduction("svhn", root=tmp_path, reduced=True)
    s = settings_for("svhn", reduced=True)
    s["classifier"]["epochs"], s["vae"]["epochs"] = 1, 1
    logs = []
    clf, vae, oracle = train_models("svhn", data, out=tmp_path / "m", settings=s,
                                    progress=False, log=logs.append)
    assert any("training the classifier" in line for line in logs)
    assert oracle(data.X_test[:4]).shape == (4, 10)           # grey oracle reads RGB
    logs.clear()
    clf2, vae2, _ = train_models("svhn", data, out=tmp_path / "m", settings=s,
                                 progress=False, log=logs.append)
    assert logs == [f"[models] loaded from {tmp_path / 'm'} (delete it to retrain)"]
    assert torch.equal(predict(clf, data.X_test), predict(clf2, data.X_test))
    assert torch.equal(vae.decode(torch.zeros(1, 10)), vae2.decode(torch.zeros(1, 10)))
    s["classifier"]["lr"] = 2e-3
    logs.clear()
    train_models("svhn", data, out=tmp_path / "m", settings=s, progress=False, log=logs.append)
    assert any("training the classifier" in line for line in logs)
    with pytest.raises(TypeError, match="data"):
        train_models("svhn", (data.X_train, data.y_train), out=tmp_path / "x")
