"""Synthetic variants of MNIST-5k: more images by shifting, and digits on coloured backgrounds.

* :func:`shifted_copies` grows a set of images to ``n`` with copies shifted by
  a few pixels (zero fill), so the workflow can run at the paper's MNIST size
  (60,000 training images) from the 5,000 digits that ship with the package.
* :func:`augmented_splits` applies it to every split of a :class:`DataSplits`,
  the validation and test splits growing by the same factor as the training split.
* :func:`colorize` draws grey digits in white (or a fixed colour) on a
  background colour chosen per image from a palette; with colour indices
  that follow the labels it builds a colour-biased MNIST (Biased-MNIST,
  Bahng et al. 2020, whose palette is :data:`PALETTE`).
* :func:`coloured_digits` gives every image of a :class:`DataSplits` a
  uniformly random background colour: RGB digits of shape (3, 32, 32).
* :func:`biased_digits` builds Biased-MNIST (Bahng et al. 2020): each class
  has a background colour, which a training or validation image gets with
  probability ρ (one of the other colours otherwise); test colours are
  uniform, so the test images off their class's colour are the
  *bias-conflicting* held-out set.

Every random choice is drawn from a generator seeded by ``seed`` and the
split, or the copy, it belongs to, so the same arguments always give the same
images. This module imports no UI code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from defuse_widgets._validation import check_int, check_seed, describe
from defuse_widgets.data.splits import DataSplits
from defuse_widgets.seeding import seeded_subset

__all__ = ["PALETTE", "BiasedDigits", "augmented_splits", "biased_digits", "colorize",
           "coloured_digits", "shift_plan", "shifted_copies"]

#: Ten distinct background colours (RGB, uint8), one per row: Biased-MNIST's
#: colour map (Bahng et al. 2020, ``clovaai/rebias``): red, green, blue,
#: yellow, magenta, cyan, orange, pink, violet, grey.
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [225, 225, 0], [225, 0, 225],
                    [0, 255, 255], [255, 128, 0], [255, 0, 128], [128, 0, 255],
                    [128, 128, 128]], dtype=np.uint8)
PALETTE.flags.writeable = False

_SPLITS = ("train", "val", "test")


def shift_plan(n_source: int, n: int, *, max_shift: int = 2,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Which image each of ``n`` outputs copies, and by how much it is shifted.

    Output ``k`` copies image ``k % n_source``; the first ``n_source`` are the
    images themselves (shift 0), then copy ``i = k // n_source`` of every
    image in turn. Each image takes the non-zero shifts (there are
    ``m = (2 max_shift + 1)² - 1``) in a random order of its own, so its first
    ``m`` copies all differ; copies ``m + 1`` to ``2m`` take a new order, and
    so on. The orders of copies ``c m + 1`` to ``(c + 1) m`` come from a
    generator seeded with ``(seed, c)``, so copy ``i`` of image ``j`` is the
    same for every ``n`` that includes it.

    Parameters
    ----------
    n_source : int
        Number of images to copy.
    n : int
        Number of outputs, ≥ 1.
    max_shift : int, default=2
        Largest shift in pixels along each axis.
    seed : int, default=0

    Returns
    -------
    source : ndarray of shape (n,), int64
        The image each output copies.
    offsets : ndarray of shape (n, 2), int64
        ``(dy, dx)`` of each output: its content moves down by ``dy`` and right
        by ``dx`` pixels (negative: up, left); ``|dy|, |dx| <= max_shift``.
    """
    n_source = check_int("n_source", n_source, low=1)
    n = check_int("n", n, low=1)
    max_shift = check_int("max_shift", max_shift, low=0)
    check_seed("seed", seed)
    if n > n_source and max_shift == 0:
        raise ValueError(f"max_shift must be at least 1 to make copies (n={n} > {n_source} "
                         "images); got 0.")
    r = np.arange(-max_shift, max_shift + 1)
    moves = np.stack(np.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)
    moves = moves[(moves != 0).any(1)]                       # every shift but (0, 0)
    n_copies = -(-n // n_source)                             # the originals count as copy 0
    offsets = [np.zeros((n_source, 2), np.int64)]
    for i in range(1, n_copies):
        cycle, pos = divmod(i - 1, len(moves))
        if pos == 0:   # every image's own random order of the shifts
            order = np.random.default_rng([seed, cycle]).random(
                (n_source, len(moves))).argsort(1)
        offsets.append(moves[order[:, pos]])
    source = np.arange(n, dtype=np.int64) % n_source
    return source, np.concatenate(offsets)[:n].astype(np.int64)


def _shift_into(out: torch.Tensor, X: torch.Tensor, source: np.ndarray,
                offsets: np.ndarray) -> None:
    """Write image ``source[k]`` of ``X`` shifted by ``offsets[k]`` = (dy, dx) into ``out[k]``.

    ``out`` must be zero: the uncovered border keeps that fill.
    """
    H, W = X.shape[-2:]
    keys = offsets[:, 0] * (2 * W + 1) + offsets[:, 1]
    for key in np.unique(keys):   # one slice assignment per distinct shift
        rows = np.flatnonzero(keys == key)
        dy, dx = (int(v) for v in offsets[rows[0]])
        if abs(dy) >= H or abs(dx) >= W:
            continue                                   # shifted out of the frame: all zero
        out[torch.from_numpy(rows), :, max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
            X[torch.from_numpy(source[rows]), :, max(-dy, 0):H - max(dy, 0),
              max(-dx, 0):W - max(dx, 0)]


def _as_tensor(name: str, X: Any) -> torch.Tensor:
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(np.ascontiguousarray(X))
    if not isinstance(X, torch.Tensor) or X.ndim != 4 or len(X) == 0:
        raise TypeError(f"{name} must be a tensor or ndarray of shape (n, C, H, W) with n ≥ 1; "
                        f"got {describe(X)}.")
    if not (X.dtype == torch.uint8 or X.is_floating_point()):
        raise TypeError(f"{name} must hold uint8 or floating-point pixels; got {describe(X)}.")
    return X


def shifted_copies(X, y, n: int, *, max_shift: int = 2, seed: int = 0):
    """Grow images ``X`` to ``n`` with copies shifted by up to ``max_shift`` pixels.

    The originals come first, then copy 1 of every image, copy 2 of every
    image, and so on (the last copy only for the first images); see
    :func:`shift_plan` for the shifts and their seeds. A shift moves the
    image's content by whole pixels; what moves out is dropped and the
    uncovered border is zero (no wrap-around). ``n <= len(X)`` returns the
    first ``n`` images unchanged.

    Parameters
    ----------
    X : Tensor or ndarray of shape (n_source, C, H, W), uint8 or float
    y : Tensor or ndarray of shape (n_source,)
    n : int
    max_shift : int, default=2
    seed : int, default=0

    Returns
    -------
    X_new : shape (n, C, H, W)
        Same type (Tensor or ndarray) and dtype as ``X``.
    y_new : shape (n,)
        ``y`` of the copied images, same type and dtype as ``y``.

    Examples
    --------
    >>> from defuse_widgets.data import load_mnist5k
    >>> d = load_mnist5k()
    >>> X, y = shifted_copies(d.X_train, d.y_train, 60_000)
    >>> X.shape, bool((X[:3500] == d.X_train).all())
    (torch.Size([60000, 1, 32, 32]), True)
    """
    numpy_in = isinstance(X, np.ndarray)
    X = _as_tensor("X", X)
    y_arr = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y_arr.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},) like X; got {describe(y)}.")
    source, offsets = shift_plan(len(X), n, max_shift=max_shift, seed=seed)
    n0 = min(n, len(X))
    X_new = torch.zeros((n, *X.shape[1:]), dtype=X.dtype)
    X_new[:n0] = X[:n0]
    if n > n0:
        _shift_into(X_new[n0:], X, source[n0:], offsets[n0:])
    y_new = y_arr[source]
    if isinstance(y, torch.Tensor):
        y_new = torch.from_numpy(y_new)
    return (X_new.numpy() if numpy_in else X_new), y_new


def augmented_splits(splits: DataSplits, n_train: int, *, max_shift: int = 2,
                     seed: int = 0) -> DataSplits:
    """``splits`` with ``n_train`` training images, validation and test grown in proportion.

    Every split grows by :func:`shifted_copies`, the validation and test
    splits to ``round(len(split) * n_train / len(train))`` images, so
    evaluation sets grow with the training set as a user's would. A split
    that shrinks keeps a seeded random subset of its images, in their order
    (the first images of a split sorted by class would miss classes). Each
    split has its own seed, derived from ``seed`` and the split.

    Returns
    -------
    DataSplits
        Named ``f"{splits.name}-shifted{n_train}"``, same dtype and class names.
    """
    if not isinstance(splits, DataSplits):
        raise TypeError(f"splits must be a DataSplits; got {describe(splits)}.")
    n_train = check_int("n_train", n_train, low=1)
    check_seed("seed", seed)
    factor = n_train / len(splits.y_train)
    out = {}
    for s, split in enumerate(_SPLITS):
        X, y = getattr(splits, f"X_{split}"), getattr(splits, f"y_{split}")
        n = n_train if split == "train" else max(1, round(len(y) * factor))
        if n < len(y):
            keep = torch.from_numpy(seeded_subset(len(y), n, _split_seed(seed, s)))
            out[f"X_{split}"], out[f"y_{split}"] = X[keep], y[keep]
            continue
        out[f"X_{split}"], out[f"y_{split}"] = shifted_copies(
            X, y, n, max_shift=max_shift, seed=_split_seed(seed, s))
    return DataSplits(f"{splits.name}-shifted{n_train}", class_names=splits.class_names,
                      **out)


def _split_seed(seed: int, split: int) -> int:
    """One integer seed per (seed, split), for functions that take an int."""
    return int(np.random.SeedSequence([seed, split]).generate_state(1)[0])


def colorize(X_grey, colors, *, palette=None, foreground=(255, 255, 255)) -> torch.Tensor:
    """Digits on coloured backgrounds: RGB uint8 images from grey ones.

    Each pixel blends the image's background colour and the foreground by
    its grey intensity ``g`` in [0, 1]: ``(1 - g) · background + g · foreground``,
    rounded to uint8.

    Parameters
    ----------
    X_grey : Tensor or ndarray of shape (n, 1, H, W)
        Float intensities in [0, 1], or uint8 (0–255).
    colors : array-like of int, shape (n,)
        Each image's background: an index into ``palette``. Random indices
        give colour-free digits; indices that follow the labels give a
        colour-biased set.
    palette : array-like of shape (k, 3), optional
        RGB colours in 0–255; default :data:`PALETTE`.
    foreground : sequence of 3 int, default=(255, 255, 255)
        The colour of the digit's stroke (white).

    Returns
    -------
    Tensor of shape (n, 3, H, W), uint8
    """
    X = _as_tensor("X_grey", X_grey)
    if X.shape[1] != 1:
        raise ValueError(f"X_grey must have one channel, shape (n, 1, H, W); got {describe(X)}.")
    pal = np.asarray(PALETTE if palette is None else palette)
    fg = np.asarray(foreground)
    for name, a, shape in (("palette", pal, (len(pal), 3)), ("foreground", fg, (3,))):
        if a.shape != shape or a.size == 0 or not np.issubdtype(a.dtype, np.number) \
                or (a < 0).any() or (a > 255).any():
            raise ValueError(f"{name} must hold RGB values in [0, 255], shape "
                             f"{'(k, 3)' if name == 'palette' else '(3,)'}; got {describe(a)}.")
    idx = np.asarray(colors)
    if idx.shape != (len(X),) or not np.issubdtype(idx.dtype, np.integer) or \
            idx.min() < 0 or idx.max() >= len(pal):
        raise ValueError(f"colors must hold one palette index in [0, {len(pal) - 1}] per "
                         f"image, shape ({len(X)},); got {describe(colors)}.")
    g = X.float() / 255 if X.dtype == torch.uint8 else X.float().clamp(0, 1)
    bg = torch.as_tensor(pal[idx], dtype=torch.float32)[:, :, None, None]     # (n, 3, 1, 1)
    fg = torch.as_tensor(fg, dtype=torch.float32)[None, :, None, None]
    out = torch.empty((len(X), 3, *X.shape[2:]), dtype=torch.uint8)
    for i in range(0, len(X), 4096):   # bounded float scratch memory
        sl = slice(i, i + 4096)
        out[sl] = (bg[sl] + g[sl] * (fg - bg[sl])).round_().clamp_(0, 255).to(torch.uint8)
    return out


def coloured_digits(splits: DataSplits, *, seed: int = 0, colors=None,
                    dtype: torch.dtype = torch.uint8) -> DataSplits:
    """Every image of grey ``splits`` on a background colour drawn uniformly at random.

    Parameters
    ----------
    splits : DataSplits
        Grey images of shape (n, 1, H, W), e.g. :func:`~defuse_widgets.data.load_mnist5k`.
    seed : int, default=0
        Seeds the colours; split ``s`` (train, validation, test) draws from
        ``default_rng([seed, s])``.
    colors : array-like of shape (k, 3), optional
        The palette to draw from (RGB, 0–255); default :data:`PALETTE`.
    dtype : torch.dtype, default=torch.uint8
        ``torch.uint8`` keeps 0–255; ``torch.float32`` gives values in [0, 1].

    Returns
    -------
    DataSplits
        Images of shape (n, 3, H, W), named ``f"{splits.name}-colour"``; the
        labels and class names are those of ``splits``.
    """
    if not isinstance(splits, DataSplits):
        raise TypeError(f"splits must be a DataSplits; got {describe(splits)}.")
    check_seed("seed", seed)
    if dtype not in (torch.uint8, torch.float32):
        raise ValueError(f"dtype must be torch.uint8 or torch.float32; got {dtype!r}.")
    palette = PALETTE if colors is None else np.asarray(colors)
    out = {}
    for s, split in enumerate(_SPLITS):
        X, y = getattr(splits, f"X_{split}"), getattr(splits, f"y_{split}")
        idx = np.random.default_rng([seed, s]).integers(len(palette), size=len(y))
        rgb = colorize(X, idx, palette=palette)
        out[f"X_{split}"] = rgb if dtype == torch.uint8 else rgb.float().div_(255)
        out[f"y_{split}"] = y
    return DataSplits(f"{splits.name}-colour", class_names=splits.class_names, **out)


@dataclass(frozen=True)
class BiasedDigits:
    """Colour-biased digits and the background colour of every image.

    Attributes
    ----------
    data : DataSplits
        RGB images of shape (n, 3, H, W), uint8.
    colours : dict of str -> ndarray of shape (n,)
        ``"train"``, ``"val"``, ``"test"``: each image's palette index (class
        ``c``'s colour is palette row ``c``).
    rho : float
        The share of training and validation images on their class's colour.
    """

    data: DataSplits
    colours: dict
    rho: float

    def conflicting(self, split: str) -> np.ndarray:
        """Bool mask of shape (n,): images of ``split`` off their class's colour."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}; got {split!r}.")
        y = getattr(self.data, f"y_{split}")
        return self.colours[split] != np.asarray(y)


def biased_digits(splits: DataSplits, rho: float, *, seed: int = 0) -> BiasedDigits:
    """Biased-MNIST: digits on their class's background colour with probability ``rho``.

    A training or validation image of class ``c`` gets colour ``c`` with
    probability ``rho`` and one of the other colours, uniformly, otherwise
    (validation is biased as a user's own would be); a test image gets a
    uniformly random colour.

    Parameters
    ----------
    splits : DataSplits
        Grey images of shape (n, 1, H, W) and at most ``len(PALETTE)`` classes.
    rho : float in [0, 1]
    seed : int, default=0
        Split ``s`` draws its colours from ``default_rng([seed, s, 1])``.

    Returns
    -------
    BiasedDigits
        Named ``f"{splits.name}-biased-{rho:g}"``.
    """
    from defuse_widgets._validation import check_number

    if not isinstance(splits, DataSplits):
        raise TypeError(f"splits must be a DataSplits; got {describe(splits)}.")
    rho = check_number("rho", rho, low=0, high=1)
    check_seed("seed", seed)
    if splits.n_classes > len(PALETTE):
        raise ValueError(f"splits must have at most {len(PALETTE)} classes, one per palette "
                         f"colour; got {splits.n_classes}.")
    out, colours = {}, {}
    for s, split in enumerate(_SPLITS):
        X, y = getattr(splits, f"X_{split}"), np.asarray(getattr(splits, f"y_{split}"))
        colours[split] = _biased_colours(y, 1 / len(PALETTE) if split == "test" else rho,
                                         np.random.default_rng([seed, s, 1]))
        out[f"X_{split}"] = colorize(X, colours[split])
        out[f"y_{split}"] = getattr(splits, f"y_{split}")
    data = DataSplits(f"{splits.name}-biased-{rho:g}", class_names=splits.class_names, **out)
    return BiasedDigits(data, colours, float(rho))


def _biased_colours(y: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Colour ``y`` with probability ``rho``, else one of the other colours uniformly."""
    k = len(PALETTE)
    other = (y + rng.integers(1, k, size=len(y))) % k   # uniform over the other k - 1
    return np.where(rng.random(len(y)) < rho, y, other).astype(np.int64)
