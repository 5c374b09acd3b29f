"""What a model takes, found for models that do not say it: both sides of every mismatch."""
import pytest
import torch
from torch import nn

from defuse_widgets.models import MnistCNN
from defuse_widgets.models.probes import check_decoder_fit, check_logits, input_shape, latent_size


def test_latent_size_and_input_shape_come_from_the_first_layer(bare_vae):
    vae = bare_vae(n_latent=6)
    assert not hasattr(vae, "n_latent") and latent_size(vae) == 6
    assert input_shape(vae, (1, 16, 16), encoder=True) == (1, 8, 8)
    assert input_shape(MnistCNN(1, 8, 10), (3, 8, 8)) == (1, 8, 8)
    assert input_shape(MnistCNN(1, 8, 10), (1, 16, 16)) == (1, 8, 8)
    assert input_shape(nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), (1, 16, 16)) == (3, 8, 8)
    assert input_shape(nn.Sequential(nn.ReLU()), (1, 8, 8)) is None


def test_check_logits_names_a_tuple_and_the_remedy():
    out = (torch.zeros(2, 10), torch.zeros(2, 64))
    with pytest.raises(TypeError, match=r"oracle must return a tensor of logits of shape "
                                        r"\(n, n_classes\); got a tuple of 2 \(tensor of shape "
                                        r"\(2, 10\).*forward\(x\) = oracle\(x\)\[0\]"):
        check_logits(out, name="oracle")
    with pytest.raises(TypeError, match="got a dict"):
        check_logits({"logits": out[0]})
    assert check_logits(out[0]) is out[0]


def test_decoder_of_another_latent_size_names_both_sizes(bare_vae):
    with pytest.raises(ValueError, match=r"decoder must decode codes of 4 latent dimensions "
                                         r"\(the regions' latent size\); it takes codes of 6 "
                                         r"latent dimensions"):
        check_decoder_fit("decoder", bare_vae(n_latent=6), 4, source="the regions' latent size")
    check_decoder_fit("decoder", bare_vae(n_latent=4), 4, source="n_latent=4")
