"""Shared fixtures: every test is seeded, and tiny real data and models are built once."""
import pytest
import torch
from torch import nn

from defuse_widgets.seeding import seed_everything

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    seed_everything(0)
    yield


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits as DataSplits (1x8x8 images)."""
    from defuse_widgets.data import load_digits8

    return load_digits8()


@pytest.fixture(scope="session")
def tiny_models(digits):
    """A real classifier and β-VAE trained briefly on the 8x8 digits."""
    from defuse_widgets.models import BetaVAE, MnistCNN
    from defuse_widgets.models.training import train_classifier, train_vae

    seed_everything(0)
    clf = train_classifier(MnistCNN(1, 8, 10), digits.X_train, digits.y_train, epochs=3,
                           seed=0, progress=False)
    vae = train_vae(BetaVAE.from_family("mnist", image_size=8, n_latent=4, width=16),
                    digits.X_train, beta=0.5, epochs=8, batch_size=64, anneal_steps=50,
                    seed=0, progress=False)
    return clf, vae


@pytest.fixture(scope="session")
def tiny_adversarial(digits, tiny_models):
    """Adversarial examples of the tiny models (centred noise, Q=8)."""
    from defuse_widgets.stages.identification import identify

    clf, vae = tiny_models
    return identify(clf, vae, digits.X_train[:400], digits.y_train[:400], Q=8, a=5, b=5,
                    centered=True, max_per_instance=5, progress=False)


@pytest.fixture(scope="session")
def task(digits):
    """D_f = held-out 3s labelled 8, a planted 'region label' (as in test_correction)."""
    threes = digits.X_test[digits.y_test == 3]
    X_f, y_f = threes[:20], torch.full((20,), 8)
    X_rt, y_rt = threes[20:], torch.full((len(threes) - 20,), 8)
    evals = {"validation": (digits.X_val, digits.y_val), "test": (digits.X_test, digits.y_test),
             "region_validation": (X_f, y_f), "region_test": (X_rt, y_rt)}
    return X_f, y_f, evals


class Contrarian(nn.Module):
    """An oracle that always names the class after the classifier's: every region is a bug."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        logits = self.classifier(x)
        return 10 * torch.roll(nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float(),
                               1, dims=1)


@pytest.fixture(scope="session")
def contrarian(tiny_models):
    """A :class:`Contrarian` oracle around the tiny classifier."""
    return Contrarian(tiny_models[0])


class BareVAE(nn.Module):
    """A user's VAE: encode/decode, but no ``n_latent`` anywhere."""

    def __init__(self, image_size=8, n_latent=4):
        super().__init__()
        from defuse_widgets.models import BetaVAE

        vae = BetaVAE.from_family("mnist", image_size=image_size, n_latent=n_latent, width=8)
        del vae.encoder.n_latent, vae.decoder.n_latent
        self.encoder, self.decoder = vae.encoder, vae.decoder
        self._n = n_latent

    def encode(self, x):
        h = self.encoder.fc(self.encoder.conv(x))
        return h[:, :self._n], h[:, self._n:]

    def decode(self, z):
        return self.decoder.deconv(self.decoder.fc(z).view(-1, self.decoder.width, 4, 4))


@pytest.fixture
def bare_vae():
    """Build a :class:`BareVAE` (``bare_vae(image_size=8, n_latent=4)``)."""
    return BareVAE
