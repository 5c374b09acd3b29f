"""check_fit: models that do not fit the data are named with both sides, before any work."""
import pytest
import torch
from torch import nn

from defuse_widgets.models import MnistCNN
from defuse_widgets.workflow.inputs import check_fit


def test_a_vae_for_other_images_names_both_shapes_without_n_latent(digits, bare_vae):
    big = bare_vae(image_size=16)         # takes 1x16x16; the digits are 1x8x8
    assert not hasattr(big, "n_latent")
    with pytest.raises(ValueError, match=r"vae must take the data's images of shape \(1, 8, 8\), "
                                         r"but it takes \(1, 16, 16\); it refuses them"):
        check_fit(digits, vae=big)
    check_fit(digits, vae=bare_vae(image_size=8))


def test_a_classifier_returning_a_tuple_is_named_by_its_role(digits):
    class WithFeatures(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = MnistCNN(1, 8, 10)

        def forward(self, x):
            return self.net(x), torch.flatten(x, 1)
    with pytest.raises(TypeError, match=r"oracle must return a tensor of logits of shape "
                                        r"\(n, n_classes\); got a tuple of 2"):
        check_fit(digits, oracle=WithFeatures())
