"""Tests of defuse_widgets.data.synthetic: shifted copies and digits on coloured backgrounds."""
import numpy as np
import pytest
import torch

from defuse_widgets.data.synthetic import (
    PALETTE,
    augmented_splits,
    biased_digits,
    colorize,
    coloured_digits,
    shift_plan,
    shifted_copies,
)


def _reference_shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift (C, H, W) by (dy, dx) with zero fill, written independently of the module."""
    out = np.roll(img, (dy, dx), axis=(1, 2))
    if dy > 0:
        out[:, :dy] = 0
    elif dy < 0:
        out[:, dy:] = 0
    if dx > 0:
        out[:, :, :dx] = 0
    elif dx < 0:
        out[:, :, dx:] = 0
    return out


@pytest.fixture
def images():
    """Six 2x9x9 images with no zero pixel, so a zero border can only come from a shift."""
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.uniform(0.1, 1.0, size=(6, 2, 9, 9)).astype(np.float32))
    return X, torch.arange(6) % 3


def test_shifted_copies_shapes_dtypes_and_originals_first(images):
    X, y = images
    X_new, y_new = shifted_copies(X, y, 20)
    assert X_new.shape == (20, 2, 9, 9) and X_new.dtype == torch.float32
    assert y_new.shape == (20,) and y_new.dtype == y.dtype
    assert torch.equal(X_new[:6], X)
    assert torch.equal(y_new, y[torch.arange(20) % 6])
    X8, y8 = shifted_copies((X * 255).to(torch.uint8).numpy(), y.numpy(), 13)
    assert isinstance(X8, np.ndarray) and X8.dtype == np.uint8 and X8.shape == (13, 2, 9, 9)
    assert isinstance(y8, np.ndarray) and y8.shape == (13,)
    X_few, y_few = shifted_copies(X, y, 4)
    assert torch.equal(X_few, X[:4]) and torch.equal(y_few, y[:4])


def test_every_copy_is_its_original_shifted_by_at_most_max_shift(images):
    X, y = images
    X_new, _ = shifted_copies(X, y, 40, max_shift=2, seed=3)
    source, offsets = shift_plan(6, 40, max_shift=2, seed=3)
    assert np.abs(offsets).max() <= 2 and (offsets[6:] != 0).any(1).all()
    for j in range(6):   # an image's copies (fewer than 24 here) are all different
        mine = offsets[6:][source[6:] == j]
        assert len(np.unique(mine, axis=0)) == len(mine)
    for k in range(6, 40):
        orig, copy = X[source[k]].numpy(), X_new[k].numpy()
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(copy, _reference_shift(orig, dy, dx))]
        assert found == [tuple(offsets[k])], k   # exactly the planned shift, zero fill
    assert (X_new[6:] == 0).any(dim=(1, 2, 3)).all()   # every copy has a zero border


def test_shifted_copies_are_seeded_and_prefix_stable(images):
    X, y = images
    a, _ = shifted_copies(X, y, 30, seed=5)
    b, _ = shifted_copies(X, y, 30, seed=5)
    c, _ = shifted_copies(X, y, 30, seed=6)
    longer, _ = shifted_copies(X, y, 50, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(longer[:30], a)      # copy i of image j does not depend on n


def test_shifted_copies_refuses_bad_input(images):
    X, y = images
    with pytest.raises(ValueError, match="y must have shape"):
        shifted_copies(X, y[:3], 10)
    with pytest.raises(ValueError, match="max_shift"):
        shifted_copies(X, y, 10, max_shift=0)
    with pytest.raises(TypeError, match="shape"):
        shifted_copies(X[0], y, 10)


def test_augmented_splits_grow_every_split_in_proportion(digits):
    big = augmented_splits(digits, 3 * len(digits.y_train), seed=0)
    for split in ("train", "val", "test"):
        X, X_big = getattr(digits, f"X_{split}"), getattr(big, f"X_{split}")
        assert len(X_big) == 3 * len(X) and X_big.dtype == X.dtype
        assert torch.equal(X_big[:len(X)], X)
        assert len(getattr(big, f"y_{split}")) == len(X_big)
    assert big.class_names == digits.class_names
    assert torch.equal(big.X_train, augmented_splits(digits, 3 * len(digits.y_train)).X_train)
    small = augmented_splits(digits, 300)       # the train split is sorted by class
    assert len(small.y_train) == 300 and len(np.unique(small.y_train)) == 10
    assert len(small.y_val) == round(len(digits.y_val) * 300 / len(digits.y_train))


def test_colorize_blends_background_and_foreground():
    g = torch.zeros(3, 1, 4, 4)
    g[:, :, 1, 1], g[:, :, 2, 2] = 1.0, 0.5
    rgb = colorize(g, np.array([0, 3, 9]))
    assert rgb.shape == (3, 3, 4, 4) and rgb.dtype == torch.uint8
    for i, c in enumerate((0, 3, 9)):
        assert (rgb[i, :, 0, 0].numpy() == PALETTE[c]).all()           # background
        assert (rgb[i, :, 1, 1] == 255).all()                          # white stroke
        half = np.round((PALETTE[c].astype(float) + 255) / 2)
        assert (rgb[i, :, 2, 2].numpy() == half).all()                 # blended edge
    from_uint8 = colorize((g * 255).round().to(torch.uint8), np.array([0, 3, 9]))
    assert (from_uint8.int() - rgb.int()).abs().max() <= 1    # 0.5 is 128/255 in uint8
    red = colorize(g, np.zeros(3, int), palette=[[10, 20, 30]], foreground=(200, 0, 0))
    assert red[0, :, 0, 0].tolist() == [10, 20, 30] and red[0, :, 1, 1].tolist() == [200, 0, 0]


def test_colorize_refuses_bad_colours():
    g = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="colors"):
        colorize(g, np.array([0, 10]))
    with pytest.raises(ValueError, match="colors"):
        colorize(g, np.array([0]))
    with pytest.raises(ValueError, match="palette"):
        colorize(g, np.array([0, 1]), palette=[[0, 0, 300]])
    with pytest.raises(ValueError, match="one channel"):
        colorize(torch.zeros(2, 3, 4, 4), np.array([0, 1]))


def test_palette_has_ten_distinct_colours():
    assert PALETTE.shape == (10, 3) and PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE}) == 10


def test_coloured_digits_are_rgb_uint8_with_random_seeded_backgrounds(digits):
    rgb = coloured_digits(digits, seed=0)
    assert rgb.X_train.shape == (len(digits.y_train), 3, 8, 8)
    assert rgb.X_train.dtype == torch.uint8 and rgb.image_shape == (3, 8, 8)
    assert rgb.class_names == digits.class_names
    assert torch.equal(rgb.y_test, digits.y_test)
    # the corner pixel is background in these digits: its colour is the image's palette entry
    corners = rgb.X_train[:, :, 0, 0].numpy()
    which = (corners[:, None, :] == PALETTE[None]).all(2)
    assert which.sum(1).tolist() == [1] * len(corners)
    counts = np.bincount(which.argmax(1), minlength=10)
    assert counts.min() > 0.5 * counts.mean()        # roughly uniform over the 10 colours
    assert torch.equal(coloured_digits(digits, seed=0).X_val, rgb.X_val)
    assert not torch.equal(coloured_digits(digits, seed=1).X_train, rgb.X_train)
    as_float = coloured_digits(digits, seed=0, dtype=torch.float32)
    assert as_float.X_train.dtype == torch.float32
    assert torch.allclose(as_float.X_train, rgb.X_train.float() / 255)
    two = coloured_digits(digits, colors=[[0, 0, 0], [255, 0, 0]])
    assert set(map(tuple, two.X_train[:, :, 0, 0].tolist())) == {(0, 0, 0), (255, 0, 0)}


def test_biased_digits_follow_the_class_colour_with_probability_rho(digits):
    b = biased_digits(digits, 0.9, seed=3)
    d = b.data
    assert d.X_train.shape[1] == 3 and d.X_train.dtype == torch.uint8
    for split in ("train", "val"):
        y = getattr(d, f"y_{split}").numpy()
        on = b.colours[split] == y
        assert abs(on.mean() - 0.9) < 0.05   # ρ of them on their class's colour
        assert (b.conflicting(split) == ~on).all()
        # each image's background (a corner pixel: digits' corners are blank) is its colour
        corner = getattr(d, f"X_{split}")[:, :, 0, 0].numpy()
        assert (corner == PALETTE[b.colours[split]]).all()
    test_on = b.colours["test"] == d.y_test.numpy()
    assert abs(test_on.mean() - 0.1) < 0.06   # uniform colours at test time
    again = biased_digits(digits, 0.9, seed=3)
    assert all((again.colours[s] == b.colours[s]).all() for s in b.colours)
    assert not (biased_digits(digits, 0.9, seed=4).colours["train"] == b.colours["train"]).all()


def test_biased_digits_refuses_bad_rho_and_split(digits):
    with pytest.raises(ValueError, match="rho must be <= 1"):
        biased_digits(digits, 1.5)
    with pytest.raises(ValueError, match="split must be one of"):
        biased_digits(digits, 0.9).conflicting("training")
