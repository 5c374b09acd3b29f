import pytest
import torch

from defuse_widgets.models import BetaVAE, MnistCNN, OracleCNN, resnet18_classifier


@pytest.mark.parametrize("family, shape, n_latent", [("mnist", (1, 32, 32), 10),
                                                     ("svhn", (3, 32, 32), 10),
                                                     ("gtsrb", (3, 128, 128), 15)])
def test_vae_families_round_trip_shapes(family, shape, n_latent):
    vae = BetaVAE.from_family(family)
    x = torch.rand(2, *shape)
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape and mu.shape == (2, n_latent) == logvar.shape
    assert 0 <= recon.min() and recon.max() <= 1


def test_vae_family_overrides_and_bad_size():
    vae = BetaVAE.from_family("mnist", image_size=8, n_latent=3, width=4)
    assert vae.decode(torch.zeros(5, 3)).shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="image_size must be 4 times a power of two"):
        BetaVAE.from_family("mnist", image_size=28)
    with pytest.raises(ValueError, match="family must be one of"):
        BetaVAE.from_family("cifar")


@pytest.mark.parametrize("size, classes", [(32, 10), (8, 3), (28, 43)])
def test_mnist_cnn_any_size_and_classes(size, classes):
    assert MnistCNN(1, size, classes)(torch.rand(4, 1, size, size)).shape == (4, classes)


def test_oracle_and_resnet_heads():
    assert OracleCNN(3, 7)(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert resnet18_classifier(43)(torch.rand(2, 3, 64, 64)).shape == (2, 43)
    assert resnet18_classifier(10, in_channels=1)(torch.rand(2, 1, 32, 32)).shape == (2, 10)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        MnistCNN(1, 32, 1)
    with pytest.raises(TypeError, match="image_size must be an integer"):
        MnistCNN(1, 32.0, 10)
