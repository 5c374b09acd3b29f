"""Your own images and models through the CLI: train-vae, run, the fidelity gate, no oracle.

A tiny RGB ImageFolder (3 classes x 40 PNGs, 16x16) and a TorchScript
classifier trained here in plain torch stand in for a user's own.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from defuse_widgets.cli import main

SHAPES = ("bar", "column", "square")


def _draw(kind: str, rng) -> np.ndarray:
    """A 16x16 RGB image: a bright shape of ``kind`` on a random dark background."""
    img = np.zeros((16, 16, 3), np.float32) + rng.uniform(0, 0.35, 3)
    c = rng.uniform(0.65, 1.0, 3)
    o = rng.integers(3, 7)
    w = rng.integers(3, 5)
    if kind == "bar":
        img[o:o + w, 2:14] = c
    elif kind == "column":
        img[2:14, o:o + w] = c
    else:
        img[o:o + 6, o:o + 6] = c
    img += rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The ImageFolder, a TorchScript classifier trained on it, and a TorchScript oracle."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    for kind in SHAPES:
        (root / "images" / kind).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(_draw(kind, rng)).save(root / "images" / kind / f"{i:02d}.png")
    from defuse_widgets.data import load_images

    data = load_images(root / "images")
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 64, 3))
    opt = torch.optim.Adam(clf.parameters(), 1e-2)
    X = data.X_train.float() / 255
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(clf(X), data.y_train).backward()
        opt.step()
    torch.jit.save(torch.jit.script(clf.eval()), str(root / "clf.pt"))
    assert main(["train-oracle", "--data", str(root / "images"), "--out", str(root / "oracle.pt"),
                 "--epochs", "3", "--no-progress"]) == 0
    return root


def _run_args(own, session, *extra):
    return ["run", "--quick", "--Q", "10", "--no-baseline", "--no-progress", "--out", str(session),
            "--data", str(own / "images"), "--classifier", str(own / "clf.pt"),
            "--vae", str(own / "vae.pt"), *extra]


@pytest.fixture(scope="module")
def vae(own):
    """``train-vae`` on the ImageFolder, with the fidelity report."""
    assert main(["train-vae", "--data", str(own / "images"), "--out", str(own / "vae.pt"),
                 "--epochs", "150", "--latent", "4", "--patience", "20", "--no-progress",
                 "--classifier", str(own / "clf.pt")]) == 0
    return own / "vae.pt"


@pytest.mark.slow
def test_train_vae_writes_torchscript_and_a_fidelity_report(own, vae):
    from defuse_widgets.models.loading import load_model

    model = load_model(str(vae), role="vae")
    assert model.decode(torch.zeros(2, 4)).shape == (2, 3, 16, 16)
    rep = json.loads((own / "vae.fidelity.json").read_text())["report"]
    assert rep["split"] == "validation" and rep["n"] == 12
    assert [c["class"] for c in rep["per_class"]] == sorted(SHAPES)
    assert 0 <= rep["fidelity"] <= 1.5
    history = json.loads((own / "vae.fidelity.json").read_text())["history"]
    assert history and all(np.isfinite(h["validation_loss"]) for h in history)


@pytest.mark.slow
def test_train_vae_refuses_to_write_over_a_file(own, vae, capsys):
    before = vae.read_bytes()
    assert main(["train-vae", "--data", str(own / "images"), "--out", str(vae),
                 "--epochs", "1", "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err and vae.read_bytes() == before


@pytest.mark.slow
def test_run_on_your_own_images_then_status_and_report_without_flags(own, vae, tmp_path,
                                                                       capsys):
    session = tmp_path / "s"
    assert main(_run_args(own, session, "--oracle", str(own / "oracle.pt"))) == 0
    results = json.loads((session / "results.json").read_text())
    assert results["config"]["dataset"] == "own"
    assert results["class_names"] == sorted(SHAPES)
    assert results["inputs"]["data"]["image_shape"] == [3, 16, 16]
    assert results["fidelity"]["split"] == "validation"
    capsys.readouterr()
    assert main(["status", "--session", str(session)]) == 0
    out = capsys.readouterr().out
    assert "classes: bar, column, square" in out and "generator fidelity" in out
    assert main(["report", "--session", str(session), "--html"]) == 0
    page = (session / "report.html").read_text()
    assert "Generator fidelity" in page and "column" in page


@pytest.mark.slow
def test_without_an_oracle_run_stops_after_distillation_and_people_finish(own, vae, tmp_path,
                                                                          capsys):
    import defuse_widgets as dw

    session = tmp_path / "s"
    assert main(_run_args(own, session)) == 0
    out = capsys.readouterr().out
    assert "no oracle" in out and "DefuseDashboard.open" in out and "correct --session" in out
    assert (session / "regions.npz").exists() and not (session / "correction.json").exists()
    assert main(["label", "--session", str(session), "--simulated"]) == 2
    assert "train-oracle" in capsys.readouterr().err
    # A person votes through the store: every review sample of region 0 is the class
    # the classifier does not predict, so the region is a misclassification region.
    s = dw.Session(session)
    images, predicted = s.review_set(0)
    label = int((np.bincount(predicted, minlength=3).argmax() + 1) % 3)
    store = s.open_store()
    store.set_review_set(0, predicted)
    store.cast_votes([("ana", 0, i, label) for i in range(len(images))])
    s.close()
    assert main(["correct", "--session", str(session), "--no-progress"]) == 0
    assert json.loads((session / "correction.json").read_text())["defuse"]["best_index"] is not None


@pytest.mark.slow
def test_a_weak_vae_warns_everywhere_and_min_fidelity_stops(own, tmp_path, capsys):
    weak = tmp_path / "weak.pt"
    assert main(["train-vae", "--data", str(own / "images"), "--out", str(weak),
                 "--epochs", "1", "--no-progress"]) == 0
    args = ["run", "--quick", "--Q", "4", "--no-baseline", "--no-progress",
            "--data", str(own / "images"), "--classifier", str(own / "clf.pt"),
            "--vae", str(weak)]
    stopped = tmp_path / "stopped"
    capsys.readouterr()
    assert main([*args, "--out", str(stopped), "--min-fidelity", "0.99"]) == 2
    err = capsys.readouterr().err
    assert "min_fidelity is 0.99" in err and not (stopped / "adversarial.npz").exists()
    session = tmp_path / "warned"
    assert main([*args, "--out", str(session)]) == 0
    assert "reconstruction artefacts" in capsys.readouterr().out
    assert main(["report", "--session", str(session), "--html"]) == 0
    assert "reconstruction artefacts" in (session / "report.html").read_text()
    from defuse_widgets.widgets import DefuseDashboard

    dash = DefuseDashboard.open(session)
    try:
        assert "reconstruction artefacts" in dash.view.status.value
    finally:
        dash.close()


@pytest.mark.parametrize("flag, value, message", [
    ("--classifier", "nosuchpkg.mod:make", "module 'nosuchpkg.mod' cannot be imported"),
    ("--classifier", "missing.pt", "does not exist"),
    ("--vae", "images/bar/00.png", "must be a TorchScript archive"),
])
@pytest.mark.slow
def test_bad_model_specs_are_named_and_nothing_is_written(own, tmp_path, capsys, flag, value,
                                                          message):
    session = tmp_path / "s"
    specs = {"--classifier": str(own / "clf.pt"), "--vae": str(own / "oracle.pt")}
    specs[flag] = str(own / value) if value.endswith((".pt", ".png")) else value
    argv = ["identify", "--session", str(session), "--data", str(own / "images")]
    for f, v in specs.items():
        argv += [f, v]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and flag in err
    assert not session.exists()


@pytest.mark.slow
def test_models_that_do_not_fit_the_data_name_both_sides(own, tmp_path, capsys):
    from defuse_widgets.models import BetaVAE, MnistCNN
    from defuse_widgets.models.recipes import save_torchscript

    ten = save_torchscript(MnistCNN(3, 16, 10), tmp_path / "ten.pt")
    grey = save_torchscript(BetaVAE.from_family("mnist", image_size=16, n_latent=4),
                            tmp_path / "grey.pt")
    base = ["identify", "--session", str(tmp_path / "s"), "--data", str(own / "images")]
    assert main([*base, "--classifier", str(ten), "--vae", str(own / "vae.pt")]) == 2
    assert "3 classes (bar, column, square) but the classifier outputs 10" in \
        capsys.readouterr().err
    assert main([*base, "--classifier", str(own / "clf.pt"), "--vae", str(grey)]) == 2
    err = capsys.readouterr().err
    assert "vae must" in err and "(3, 16, 16)" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_changed_or_moved_model_file_is_refused_and_a_new_path_reopens(own, vae, tmp_path,
                                                                          capsys):
    import shutil

    clf = tmp_path / "clf.pt"
    shutil.copy(own / "clf.pt", clf)
    session = tmp_path / "s"
    assert main(["identify", "--session", str(session), "--quick", "--Q", "2", "--no-progress",
                 "--data", str(own / "images"), "--classifier", str(clf),
                 "--vae", str(vae)]) == 0
    moved = tmp_path / "moved.pt"
    clf.rename(moved)
    capsys.readouterr()
    assert main(["distill", "--session", str(session)]) == 0   # needs no model
    capsys.readouterr()
    assert main(["report", "--session", str(session)]) == 2
    err = capsys.readouterr().err
    assert "--classifier" in err and "new path" in err and str(clf) in err
    identity = (session / "session.json").read_bytes()
    assert main(["report", "--session", str(session), "--classifier", str(moved)]) == 0
    assert (session / "session.json").read_bytes() == identity   # report reads only
    assert main(["report", "--session", str(session), "--html", "--classifier",
                 str(moved)]) == 0   # a command that writes records the new path
    record = json.loads((session / "session.json").read_text())["inputs"]["classifier"]
    assert record["spec"] == str(moved)
    other = torch.jit.load(str(moved))
    with torch.no_grad():
        next(other.parameters()).add_(1)
    torch.jit.save(other, str(moved))
    capsys.readouterr()
    assert main(["report", "--session", str(session)]) == 2
    assert "classifier" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_images_are_named_before_any_session_file_is_written(own, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(own / "images", bad)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(bad / "bar" / "odd.png")
    session = tmp_path / "s"
    argv = ["run", "--quick", "--out", str(session), "--data", str(bad),
            "--classifier", str(own / "clf.pt"), "--vae", str(own / "oracle.pt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "odd.png" in err and "1x20x20" in err and "3x16x16" in err
    assert not session.exists()
