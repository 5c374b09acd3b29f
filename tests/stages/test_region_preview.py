"""The core's region preview: the samples the gallery shows, computed without any widget."""
import numpy as np
import pytest
import torch

from defuse_widgets.models.inference import predict
from defuse_widgets.stages.distillation import distill
from defuse_widgets.stages.region_preview import preview_regions, sample_seed


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    return distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)


def test_previews_are_the_seeded_decodes_and_their_predictions(regions, tiny_models):
    clf, vae = tiny_models
    p = preview_regions(regions, vae, clf, [2, 0], n=6, tau=0.4)
    assert [x.region for x in p] == [2, 0] and p[0].saliency is None
    _, images = regions.decode(2, 6, vae, tau=0.4, seed=sample_seed(2, 0.4, 0))
    torch.testing.assert_close(p[0].images, images)
    assert p[0].predicted == predict(clf, images).tolist()
    again = preview_regions(regions, vae, clf, [2], n=6, tau=0.4)
    torch.testing.assert_close(again[0].images, p[0].images)   # one batch or two: the same
    other = preview_regions(regions, vae, clf, [2], n=6, tau=0.4, resample_count=1)
    assert not torch.allclose(other[0].images, p[0].images)


def test_saliency_is_one_map_per_sample(regions, tiny_models):
    clf, vae = tiny_models
    (p,) = preview_regions(regions, vae, clf, [1], n=3, tau=0.5, saliency=True)
    assert p.saliency.shape == (3, *p.images.shape[-2:]) and np.all(p.saliency >= 0)
    from defuse_widgets.models.saliency import smoothgrad
    from defuse_widgets.stages.region_preview import SALIENCY_COPIES

    expected = smoothgrad(clf, p.images, target=p.predicted, n_samples=SALIENCY_COPIES)
    np.testing.assert_allclose(p.saliency, expected, rtol=1e-5, atol=1e-6)   # fp32: exact
    (fast,) = preview_regions(regions, vae, clf, [1], n=3, tau=0.5, saliency=True,
                              precision="bf16")
    assert np.corrcoef(fast.saliency.ravel(), expected.ravel())[0, 1] > 0.9   # bf16: close
