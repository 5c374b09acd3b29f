import pytest
import torch

from defuse_widgets.models import BetaVAE, MnistCNN
from defuse_widgets.models.inference import accuracy
from defuse_widgets.models.training import (
    reconstruction_fidelity,
    train_classifier,
    train_vae,
    vae_loss,
)
from defuse_widgets.seeding import seed_everything


def test_classifier_learns_digits(digits, tiny_models):
    clf, _ = tiny_models
    assert accuracy(clf, digits.X_test, digits.y_test) > 0.85


def test_classifier_training_is_reproducible(digits):
    X, y = digits.X_train[:300], digits.y_train[:300]
    models = []
    for _ in range(2):
        seed_everything(5)
        models.append(train_classifier(MnistCNN(1, 8, 10), X, y, epochs=1, seed=5, progress=False))
    a, b = models
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_vae_loss_decreases_and_annealing(digits):
    losses = []
    vae = BetaVAE.from_family("mnist", image_size=8, n_latent=4, width=8)
    train_vae(vae, digits.X_train, epochs=4, anneal_steps=20, beta=1.0, progress=False,
              on_epoch_end=lambda e, s: losses.append(s["loss"]))
    assert losses[-1] < losses[0]
    x = digits.X_train[:16]
    recon, mu, logvar = vae(x)
    zero, rec, kl = vae_loss(recon, x, mu, logvar, beta=0.0)
    assert torch.isclose(zero, rec) and kl >= 0


def test_fidelity_report(digits, tiny_models):
    clf, vae = tiny_models
    rep = reconstruction_fidelity(clf, vae, digits.X_test, digits.y_test)
    assert rep["accuracy_images"] == pytest.approx(accuracy(clf, digits.X_test, digits.y_test))
    assert 0.1 < rep["accuracy_reconstructions"] <= 1
    assert 0 <= rep["active_dims"] <= 4


def test_bad_inputs(digits):
    vae = BetaVAE.from_family("mnist", image_size=8, n_latent=4, width=8)
    with pytest.raises(ValueError, match=r"X must hold float pixels in \[0, 1\]"):
        train_vae(vae, digits.X_train * 16, epochs=1, progress=False)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        train_vae(vae, digits.X_train, beta=-1, progress=False)
    with pytest.raises(ValueError, match="optimizer must be"):
        train_classifier(MnistCNN(1, 8, 10), digits.X_train, digits.y_train, optimizer="sgd",
                         progress=False)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        train_classifier("cnn", digits.X_train, digits.y_train, progress=False)


def test_training_speaks_the_progress_protocol_and_stops(digits):
    from defuse_widgets.models import MnistCNN
    from defuse_widgets.models.training import train_classifier

    seen = []
    train_classifier(MnistCNN(1, 8, 10), digits.X_train[:128], digits.y_train[:128], epochs=5,
                     progress=False, callback=lambda *a: seen.append(a) or len(seen) == 2)
    assert seen == [("training", 1, 5), ("training", 2, 5)]   # stopped after epoch 2
    seen.clear()
    vae = BetaVAE.from_family("mnist", image_size=8, n_latent=4, width=8)
    train_vae(vae, digits.X_train[:128], epochs=3, progress=False,
              callback=lambda *a: seen.append(a))
    assert seen == [("training", k, 3) for k in (1, 2, 3)]


def test_train_vae_recipe_follows_the_channels():
    from defuse_widgets.models.recipes import COLOUR_VAE, vae_recipe

    grey, colour = vae_recipe((1, 32, 32)), vae_recipe((3, 32, 32))
    assert grey["beta"] == 0.25 and grey["augment"] and grey["batch_size"] == 64
    assert colour == COLOUR_VAE and colour["beta"] == 0.1 and not colour["augment"]
    assert colour["batch_size"] == 32
