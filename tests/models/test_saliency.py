"""SmoothGrad saliency: it finds the pixels the answer depends on, is seeded and checks inputs."""
import numpy as np
import pytest
import torch
from torch import nn

from defuse_widgets.models.saliency import smoothgrad


class BlockReader(nn.Module):
    """Two-class linear model reading only the 4x4 block at rows/cols 2..5 of 16x16 images."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(256, 2)
        w = torch.zeros(2, 16, 16)
        w[1, 2:6, 2:6] = torch.linspace(0.5, 2.0, 16).view(4, 4)
        w[0, 2:6, 2:6] = -1.0
        with torch.no_grad():
            self.linear.weight.copy_(w.view(2, -1))
            self.linear.bias.zero_()

    def forward(self, x):
        return self.linear(torch.tanh(x).flatten(1))   # tanh: gradients depend on the noise


@pytest.fixture
def images():
    return torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def test_mass_concentrates_on_the_block_the_classifier_reads(images):
    maps = smoothgrad(BlockReader(), images, n_samples=8, batch_size=5)
    assert maps.shape == (6, 16, 16) and maps.dtype == np.float32
    assert (maps >= 0).all()
    block = maps[:, 2:6, 2:6].sum((1, 2)) / maps.sum((1, 2))
    assert (block > 0.99).all()
    # pixels outside the block carry (numerically) nothing
    outside = maps.copy()
    outside[:, 2:6, 2:6] = 0
    assert outside.max() < 1e-6


def test_target_selects_the_explained_logit(images):
    clf = BlockReader()
    for_one = smoothgrad(clf, images, target=1, n_samples=4)
    for_zero = smoothgrad(clf, images, target=[0] * 6, n_samples=4)
    # class 1 weights grow along the block, class 0 weights are flat
    assert for_one[:, 5, 5].mean() > 2 * for_one[:, 2, 2].mean()
    assert not np.allclose(for_one, for_zero)


def test_same_seed_same_maps_other_seed_other_maps(images):
    clf = BlockReader()
    a = smoothgrad(clf, images, n_samples=5, seed=3)
    b = smoothgrad(clf, images, n_samples=5, seed=3, batch_size=7)
    c = smoothgrad(clf, images, n_samples=5, seed=4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a, c)


def test_zero_noise_is_the_plain_gradient(images):
    clf = BlockReader()
    maps = smoothgrad(clf, images[:2], target=1, n_samples=3, noise=0.0)
    x = images[:2].clone().requires_grad_(True)
    g, = torch.autograd.grad(clf(x)[:, 1].sum(), x)
    np.testing.assert_allclose(maps, g.abs().sum(1).numpy(), rtol=1e-5, atol=1e-7)


def test_restores_training_mode_and_leaves_parameters_without_grad(images):
    clf = BlockReader().train()
    smoothgrad(clf, images, n_samples=2)
    assert clf.training
    assert all(p.grad is None for p in clf.parameters())


@pytest.mark.parametrize("kw, exc, words", [
    (dict(images=torch.rand(2, 16, 16)), ValueError, "images must have shape (n, C, H, W)"),
    (dict(n_samples=0), ValueError, "n_samples must be >= 1"),
    (dict(noise=-0.1), ValueError, "noise must be >= 0"),
    (dict(target=2), ValueError, "target must be <= 1"),
    (dict(target=[0, 1]), ValueError, "target must have length 6"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    (dict(classifier="clf"), TypeError, "classifier"),
])
def test_bad_input_names_the_parameter(images, kw, exc, words):
    args = dict(classifier=BlockReader(), images=images)
    args.update(kw)
    with pytest.raises(exc) as info:
        smoothgrad(args.pop("classifier"), args.pop("images"), **args)
    assert words in str(info.value)
