import numpy as np
import pytest
import torch

from defuse_widgets.stages.distillation import distill


@pytest.fixture(scope="module")
def regions():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    z = np.concatenate([rng.multivariate_normal([0, 0], cov, 400),
                        rng.multivariate_normal([8, 8], np.eye(2) * 0.1, 200)])
    src = np.r_[np.full(400, 4), np.full(200, 2)]
    pred = np.r_[np.full(300, 9), np.full(100, 1), np.full(200, 7)]
    return distill(z, source_label=src, predicted_label=pred, n_classes=10, n_components=6,
                   eps=0.05)


def test_sample_follows_scaled_covariance(regions):
    k = int(np.argmax(regions.weights))
    s = regions.sample(k, 20000, tau=0.25, seed=1)
    assert s.shape == (20000, 2) and s.dtype == np.float32
    np.testing.assert_allclose(s.mean(0), regions.means[k], atol=0.03)
    np.testing.assert_allclose(np.cov(s.T), 0.25 * regions.covariances[k], atol=0.03)


def test_sample_seeded(regions):
    np.testing.assert_array_equal(regions.sample(0, 5, seed=3), regions.sample(0, 5, seed=3))
    assert not np.allclose(regions.sample(0, 5, seed=3), regions.sample(0, 5, seed=4))


def test_confusion_histogram(regions):
    k = int(np.argmax(regions.weights))
    hist = regions.confusion(k)
    assert hist.shape == (10, 10)
    assert hist[4, 9] == 300 and hist[4, 1] == 100 and hist.sum() == 400
    assert regions.top_confusions(k, 2) == [(4, 9, 300), (4, 1, 100)]


@pytest.mark.parametrize("tau", [0, -1.0])
def test_bad_tau(regions, tau):
    with pytest.raises(ValueError, match="tau must be > 0"):
        regions.sample(0, 3, tau=tau)


def test_unknown_region(regions):
    with pytest.raises(ValueError, match=r"region must be <= 1"):
        regions.sample(5, 3)


def test_decode_uses_decoder(tiny_models, tiny_adversarial):
    _, vae = tiny_models
    r = distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)
    codes, images = r.decode(0, 4, vae, tau=0.5, seed=0)
    assert images.shape == (4, 1, 8, 8)
    torch.testing.assert_close(images, vae.decode(torch.from_numpy(codes)).detach())


def test_npz_round_trip(tmp_path, regions):
    np.savez(tmp_path / "r.npz", **regions.to_npz())
    from defuse_widgets.stages.regions import Regions
    back = Regions.from_npz(np.load(tmp_path / "r.npz"))
    np.testing.assert_array_equal(back.covariances, regions.covariances)
    assert back.n_classes == 10 and len(back) == len(regions)
