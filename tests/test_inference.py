import torch

from defuse_widgets.models.inference import decode, predict


def test_decode_of_no_codes_keeps_the_image_shape(tiny_models):
    clf, vae = tiny_models            # latent size 4, images 1x8x8
    assert decode(vae, torch.zeros(0, 4)).shape == (0, 1, 8, 8)
    assert decode(vae, torch.zeros(3, 4)).shape == (3, 1, 8, 8)
    assert predict(clf, decode(vae, torch.zeros(3, 4))).shape == (3,)
