import numpy as np
import pytest

from defuse_widgets.stages.latent_map import LatentMap, fit_or_load

FAST = dict(n_iter=100, early_exaggeration_iter=50)


@pytest.fixture(scope="module")
def blobs():
    """Two well separated blobs of 4-d codes (60 each) and 6 codes near the first."""
    rng = np.random.default_rng(0)
    train = np.vstack([rng.normal(0, 1, (60, 4)), rng.normal(12, 1, (60, 4))])
    codes = train[:6] + rng.normal(0, 0.05, (6, 4))
    return train, codes


@pytest.fixture(scope="module")
def fitted(blobs):
    train, codes = blobs
    return LatentMap(**FAST).fit(train, codes)


def test_fit_shapes_and_centring(fitted, blobs):
    train, codes = blobs
    assert fitted.embedding_.shape == (120, 2)
    assert fitted.codes_embedding_.shape == (6, 2)
    assert fitted.reference_codes_.shape == (120, 4)
    span = fitted.embedding_.max(0) + fitted.embedding_.min(0)
    np.testing.assert_allclose(span, 0, atol=1e-9)
    assert fitted.perplexity_ == 30 and not fitted.interrupted_


def test_map_keeps_blobs_apart(fitted):
    a, b = fitted.embedding_[:60].mean(0), fitted.embedding_[60:].mean(0)
    spread = fitted.embedding_[:60].std(0).max()
    assert np.linalg.norm(a - b) > 3 * spread


def test_transform_places_near_neighbours_and_leaves_map(fitted, blobs):
    train, codes = blobs
    before = fitted.embedding_.copy()
    placed = fitted.transform(codes)
    np.testing.assert_array_equal(fitted.embedding_, before)
    assert placed.shape == (6, 2)
    # each code sits next to its source training code: nearer to it than to most others
    d = np.linalg.norm(fitted.embedding_[None] - placed[:, None], axis=2)
    rank = (d < d[np.arange(6), np.arange(6)][:, None]).sum(1)
    assert np.median(rank) < 12   # of 120; chance would be ~60


def test_place_reuses_fitted_codes(fitted, blobs):
    _, codes = blobs
    assert fitted.place(codes) is fitted.codes_embedding_
    assert fitted.place(codes[:2] + 1).shape == (2, 2)


def test_perplexity_clamped_for_tiny_input():
    rng = np.random.default_rng(1)
    m = LatentMap(**FAST).fit(rng.normal(size=(10, 3)))
    assert m.perplexity_ == pytest.approx(3.0)
    assert m.embedding_.shape == (10, 2) and m.codes_embedding_ is None


def test_joint_embeds_codes_with_training(blobs):
    train, codes = blobs
    m = LatentMap(joint=True, **FAST).fit(train, codes)
    assert m.reference_codes_.shape == (126, 4)
    assert m.embedding_.shape == (120, 2) and m.codes_embedding_.shape == (6, 2)
    np.testing.assert_array_equal(m.codes_embedding_, m.reference_embedding_[120:])
    assert m.place(codes) is m.codes_embedding_


def test_save_load_round_trip(tmp_path, fitted, blobs):
    path = tmp_path / "map.npz"
    fitted.save(path)
    loaded = LatentMap.load(path)
    np.testing.assert_array_equal(loaded.embedding_, fitted.embedding_)
    np.testing.assert_array_equal(loaded.codes_embedding_, fitted.codes_embedding_)
    assert loaded.get_params() == fitted.get_params()
    probe = blobs[0][60:63] + 0.1
    np.testing.assert_allclose(loaded.transform(probe), fitted.transform(probe))


def test_save_keeps_exact_path(tmp_path, fitted):
    path = tmp_path / "map.cache"
    fitted.save(path)
    assert path.exists() and not (tmp_path / "map.cache.npz").exists()


def test_fit_or_load_reuses_a_cached_map(tmp_path, blobs):
    train, codes = blobs
    stages = []
    first = fit_or_load(train, codes, callback=lambda s, i, n: stages.append(s), **FAST)
    assert "optimize" in stages
    path = tmp_path / "map.npz"
    first.save(path)   # fit_or_load writes nothing; its caller saves

    stages.clear()
    again = fit_or_load(train, codes, cached=LatentMap.load(path),
                        callback=lambda s, i, n: stages.append(s), **FAST)
    assert stages == []
    np.testing.assert_array_equal(again.embedding_, first.embedding_)
    np.testing.assert_array_equal(again.codes_embedding_, first.codes_embedding_)

    stages.clear()
    new_codes = codes[:3] + 0.2
    moved = fit_or_load(train, new_codes, cached=LatentMap.load(path),
                        callback=lambda s, i, n: stages.append(s), **FAST)
    assert stages == ["transform"]
    np.testing.assert_array_equal(moved.embedding_, first.embedding_)
    assert moved.codes_embedding_.shape == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.npz"]


def test_fit_or_load_refits_for_other_training_codes(blobs):
    train, codes = blobs
    cached = fit_or_load(train, codes, **FAST)
    stages = []
    m = fit_or_load(train[:100], codes, cached=cached,
                    callback=lambda s, i, n: stages.append(s), **FAST)
    assert "optimize" in stages and m is not cached and m.n_train_ == 100
    with pytest.raises(TypeError, match="cached must be a LatentMap"):
        fit_or_load(train, codes, cached="map.npz", **FAST)


def test_callback_can_stop(blobs):
    train, _ = blobs
    seen = []

    def stop_early(stage, iteration, n_iter):
        seen.append(iteration)
        return stage == "optimize" and iteration >= 50

    m = fit_or_load(train, callback=stop_early, **FAST)
    assert m.interrupted_ and m.embedding_.shape == (120, 2)
    assert max(seen) == 50 < 150



def test_bad_input(fitted):
    with pytest.raises(ValueError, match="codes must have 4 latent dimensions"):
        fitted.transform(np.zeros((2, 3)))
    bad = np.zeros((20, 4))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="train_codes must not contain NaN"):
        LatentMap(**FAST).fit(bad)
    with pytest.raises(ValueError, match="codes must be given when joint=True"):
        LatentMap(joint=True).fit(np.zeros((20, 4)))
    with pytest.raises(ValueError, match="perplexity must be > 0"):
        LatentMap(perplexity=0).fit(np.zeros((20, 4)))
    with pytest.raises(RuntimeError, match="not fitted"):
        LatentMap().transform(np.zeros((2, 4)))
