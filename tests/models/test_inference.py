import torch

from defuse_widgets.models.inference import decode, predict


def test_decode_of_no_codes_keeps_the_image_shape(tiny_models):
    clf, vae = tiny_models            # latent size 4, images 1x8x8
    assert decode(vae, torch.zeros(0, 4)).shape == (0, 1, 8, 8)
    assert decode(vae, torch.zeros(3, 4)).shape == (3, 1, 8, 8)
    assert predict(clf, decode(vae, torch.zeros(3, 4))).shape == (3,)


def test_images_that_do_not_fit_the_models_name_the_argument_and_both_shapes(tiny_models):
    import pytest

    from defuse_widgets.stages.correction import Corrector
    from defuse_widgets.stages.identification import identify

    clf, vae = tiny_models
    X = torch.rand(4, 1, 16, 16)   # the tiny models take 1x8x8
    with pytest.raises(ValueError, match=r"X must hold images the vae takes \(\(1, 8, 8\)\); "
                                         r"got shape \(1, 16, 16\)"):
        identify(clf, vae, X, torch.zeros(4, dtype=torch.long), Q=2, progress=False)
    with pytest.raises(ValueError, match=r"X must hold images the classifier takes.*"
                                         r"got shape \(3, 8, 8\)"):
        Corrector(lams=[1.0]).fit(clf, torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long),
                                  torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))


def test_a_vae_without_n_latent_still_names_the_shape_it_takes(bare_vae):
    import pytest

    from defuse_widgets.models.inference import check_images_fit

    with pytest.raises(ValueError, match=r"X must hold images the vae takes \(\(1, 8, 8\)\); "
                                         r"got shape \(1, 16, 16\)"):
        check_images_fit(torch.rand(2, 1, 16, 16), vae=bare_vae())


def test_a_classifier_returning_a_tuple_is_named_with_the_remedy():
    import pytest
    from torch import nn

    from defuse_widgets.models.inference import n_outputs, predict_logits

    class WithFeatures(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10], x.flatten(1)
    X = torch.rand(3, 1, 8, 8)
    msg = (r"classifier must return a tensor of logits of shape \(n, n_classes\); got a "
           r"tuple of 2 .*Wrap it")
    with pytest.raises(TypeError, match=msg):
        n_outputs(WithFeatures(), X)
    with pytest.raises(TypeError, match=msg):
        predict(WithFeatures(), X)
    with pytest.raises(TypeError, match=r"oracle must return"):
        predict_logits(WithFeatures(), X, name="oracle")
