"""Planted bugs: known failure sub-styles with held-out real images (issue 7).

A *planted bug* is a coherent sub-style of one class (a k-means cluster of
that class's images in some feature space, by default the shipped β-VAE's
latent means) on which we make the classifier wrong, in one of two ways:

* ``"rare"``: only ``keep_fraction`` (about 5%) of the sub-style's training
  and validation images stay; the rest are dropped from the data the
  classifier and the VAE see.
* ``"mislabelled"``: the sub-style's training and validation images get a
  confusable class's label.

How the images of a sub-style are divided (``held_out_fraction`` = h):

* every member in the **test** pool is *held out*;
* a seeded share h of the members in the **train** and in the **validation**
  pools is *held out*; held-out images are removed from those splits;
* the remaining train/validation members are *planted*: kept with planted
  labels (mislabelled), or ``keep_fraction`` of them kept and the rest
  *dropped* (rare).

No model of the benchmark trains on a held-out image; they measure whether
correction fixed the bug on real images. Dropped images are used only by the
"stronger" annotator that saw clean labels for all styles. Planting is done
on the pooled images ``concat(train, val, test)``; every index recorded here
is a *pool index* unless its name says otherwise.

Planted-bug recall follows the planted-slice evaluation of Domino
(Eyuboglu et al., ICLR 2022): a bug is found when a region's members trace
back mostly (≥ ``min_purity``) to the bug's planted training images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from defuse_widgets._validation import check_choice, check_int, check_number, check_seed, describe
from defuse_widgets.data.splits import DataSplits

__all__ = ["BUG_KINDS", "DEFAULT_BUGS", "BugSpec", "PlantedBug", "PlantedData", "plant_bugs",
           "sub_styles"]

BUG_KINDS = ("rare", "mislabelled")


@dataclass(frozen=True)
class BugSpec:
    """What to plant: a sub-style of ``source_class`` made ``kind``.

    Attributes
    ----------
    source_class : int
    kind : {"rare", "mislabelled"}
    target_label : int or None
        Label given to a mislabelled sub-style; None picks the class whose
        mean feature is nearest the sub-style's centroid. Ignored for "rare".
    style : int or None
        Which of the class's ``n_styles`` k-means clusters; None picks the
        most confusable one: the cluster whose centroid is nearest another
        class's mean feature.
    """

    source_class: int
    kind: str = "rare"
    target_label: int | None = None
    style: int | None = None


#: Default bugs on embedded MNIST (with ``n_styles=3``): three mislabelled
#: sub-styles a latent search can draw. Chosen before running Defuse, from two
#: scans over all ten classes (seed 0): *harm*, the classifier's accuracy on
#: the style's held-out images when that bug alone is planted (2 -> 8: 0.12,
#: 6 -> 0: 0.06, 9 -> 7: 0.12); and *renderability*, the true-label oracle's
#: accuracy on the planted β-VAE's reconstructions of the style's test images
#: (0.90, 0.96, 0.84). The first design (rare 5, 3 -> 8, 6 -> 0) planted two
#: bugs no annotator could see in the decodes (0.00 and 0.20): a rare style
#: leaves the VAE with ~5 training images of it, and the 3 -> 8 style decodes
#: as an 8. Rare styles also hurt the classifier little (held-out accuracy
#: 0.52-0.97 across classes), so "rare" stays available but is not a default.
DEFAULT_BUGS = (BugSpec(2, "mislabelled"), BugSpec(6, "mislabelled"), BugSpec(9, "mislabelled"))


@dataclass(frozen=True)
class PlantedBug:
    """One planted bug and the pool indices of its images.

    Attributes
    ----------
    name : str
        e.g. ``"rare-2/s1"``.
    source_class, kind, style : int, str, int
    planted_label : int
        Label of the planted images in the training data (= ``source_class``
        for "rare").
    members : ndarray of shape (n_members,)
        Pool indices of the whole sub-style.
    held_out : ndarray of shape (n_held_out,)
        Pool indices never trained on.
    planted : ndarray of shape (n_planted,)
        Pool indices kept in train/validation with ``planted_label``.
    dropped : ndarray of shape (n_dropped,)
        Pool indices removed from train/validation ("rare" only).
    train_index : ndarray of shape (n_planted_train,)
        Indices **into the planted training split** of the planted images:
        the bug's source images for recall.
    centroids : ndarray of shape (n_styles, d)
        Feature centroids of all sub-styles of ``source_class`` (row
        ``style`` is this bug's), for :func:`~benchmarks.harness.planted_eval.style_purity`.
    """

    name: str
    source_class: int
    kind: str
    style: int
    planted_label: int
    members: np.ndarray = field(repr=False)
    held_out: np.ndarray = field(repr=False)
    planted: np.ndarray = field(repr=False)
    dropped: np.ndarray = field(repr=False)
    train_index: np.ndarray = field(repr=False)
    centroids: np.ndarray = field(repr=False, default=None)

    def summary(self) -> dict:
        return dict(name=self.name, source_class=self.source_class, kind=self.kind,
                    style=self.style, planted_label=self.planted_label,
                    n_members=len(self.members), n_held_out=len(self.held_out),
                    n_planted=len(self.planted), n_dropped=len(self.dropped),
                    n_planted_train=len(self.train_index))


@dataclass(frozen=True)
class PlantedData:
    """Planted splits, the bugs and the clean labels.

    Attributes
    ----------
    splits : DataSplits
        What every model of the benchmark trains on: train and validation
        with planted labels and without held-out or dropped images; test
        without held-out images (clean labels).
    bugs : tuple of PlantedBug
    X_pool : Tensor of shape (n_pool, C, H, W)
        ``concat(train, val, test)`` of the original splits.
    y_pool : ndarray of shape (n_pool,)
        Clean labels of the pool.
    pool_split : ndarray of shape (n_pool,)
        0 train, 1 validation, 2 test: the split each pool image came from.
    train_pool_index, val_pool_index, test_pool_index : ndarray
        Pool index of every image of the planted splits, in split order.
    """

    splits: DataSplits
    bugs: tuple
    X_pool: torch.Tensor = field(repr=False)
    y_pool: np.ndarray = field(repr=False)
    pool_split: np.ndarray = field(repr=False)
    train_pool_index: np.ndarray = field(repr=False)
    val_pool_index: np.ndarray = field(repr=False)
    test_pool_index: np.ndarray = field(repr=False)

    @property
    def held_out_index(self) -> np.ndarray:
        """Pool indices of every bug's held-out images, shape (n,)."""
        return np.concatenate([b.held_out for b in self.bugs]).astype(np.int64)

    def held_out(self, bug: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Real held-out images of bug ``bug`` and their clean labels, shapes (n, C, H, W), (n,)."""
        bug = check_int("bug", bug, low=0, high=len(self.bugs) - 1)
        idx = self.bugs[bug].held_out
        return self.X_pool[idx], torch.from_numpy(self.y_pool[idx])

    def clean_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All non-held-out train-pool images with clean labels (dropped ones included)."""
        keep = np.setdiff1d(np.flatnonzero(self.pool_split == 0), self.held_out_index)
        return self.X_pool[keep], torch.from_numpy(self.y_pool[keep])

    def clean_train_labels(self) -> np.ndarray:
        """Clean labels of the planted training split, shape (n_train,)."""
        return self.y_pool[self.train_pool_index]

    def summary(self) -> list:
        return [b.summary() for b in self.bugs]


def sub_styles(features: np.ndarray, n_styles: int = 4, *, seed: int = 0) -> np.ndarray:
    """Cluster one class's images into ``n_styles`` sub-styles with k-means.

    Parameters
    ----------
    features : ndarray of shape (n, d)
    n_styles : int, default=4
    seed : int, default=0

    Returns
    -------
    ndarray of shape (n,), int64
        Sub-style of each image, in ``[0, n_styles)``.
    """
    from sklearn.cluster import KMeans

    n_styles = check_int("n_styles", n_styles, low=2)
    F = np.asarray(features, dtype=np.float64)
    if F.ndim != 2 or len(F) < n_styles:
        raise ValueError(f"features must have shape (n, d) with n >= n_styles={n_styles}; "
                         f"got {describe(features)}.")
    return KMeans(n_styles, n_init=10, random_state=seed).fit_predict(F).astype(np.int64)


def _check_bugs(bugs, n_classes: int) -> tuple:
    if isinstance(bugs, BugSpec) or not isinstance(bugs, (list, tuple)) or not bugs:
        raise TypeError(f"bugs must be a non-empty list or tuple of BugSpec; got {describe(bugs)}.")
    seen = set()
    for i, b in enumerate(bugs):
        if not isinstance(b, BugSpec):
            raise TypeError(f"bugs[{i}] must be a BugSpec; got {describe(b)}.")
        check_int(f"bugs[{i}].source_class", b.source_class, low=0, high=n_classes - 1)
        check_choice(f"bugs[{i}].kind", b.kind, BUG_KINDS)
        if b.target_label is not None:
            check_int(f"bugs[{i}].target_label", b.target_label, low=0, high=n_classes - 1)
            if b.target_label == b.source_class and b.kind == "mislabelled":
                raise ValueError(f"bugs[{i}].target_label must differ from source_class "
                                 f"{b.source_class} for a mislabelled bug; got {b.target_label}.")
        if b.source_class in seen:
            raise ValueError(f"bugs must have distinct source classes; got class "
                             f"{b.source_class} twice.")
        seen.add(b.source_class)
    return tuple(bugs)


def _pick_style(spec: BugSpec, F: np.ndarray, y: np.ndarray, members_of: list,
                n_classes: int) -> tuple[int, int]:
    """Return (style, planted_label) for ``spec`` (see :class:`BugSpec`)."""
    c = spec.source_class
    others = {k: F[y == k].mean(0) for k in range(n_classes) if k != c and np.any(y == k)}
    cents = [F[m].mean(0) for m in members_of]
    nearest = [min(others, key=lambda k: np.linalg.norm(others[k] - ct)) for ct in cents]
    if spec.style is not None:
        style = check_int("style", spec.style, low=0, high=len(members_of) - 1)
    else:
        style = int(np.argmin([np.linalg.norm(ct - others[nearest[s]])
                               for s, ct in enumerate(cents)]))
    if spec.kind == "rare":
        return style, c
    label = spec.target_label if spec.target_label is not None else nearest[style]
    return style, int(label)


def plant_bugs(data: DataSplits, bugs=DEFAULT_BUGS, *, features: np.ndarray,
               n_styles: int = 3, keep_fraction: float = 0.05, held_out_fraction: float = 0.3,
               seed: int = 0) -> PlantedData:
    """Plant ``bugs`` in ``data``; see the module docstring for the exact split rules.

    Parameters
    ----------
    data : DataSplits
        Clean splits.
    bugs : sequence of BugSpec, default=DEFAULT_BUGS
        Distinct source classes.
    features : ndarray of shape (n_pool, d)
        Features of ``concat(X_train, X_val, X_test)`` that define sub-styles
        (e.g. latent means of a VAE, or pixel traits).
    n_styles : int, default=3
        k-means clusters per class.
    keep_fraction : float in (0, 1), default=0.05
        Share of a rare sub-style's planted images kept (at least one).
    held_out_fraction : float in (0, 1), default=0.3
        Share of a sub-style's train and validation members held out.
    seed : int, default=0

    Returns
    -------
    PlantedData
    """
    if not isinstance(data, DataSplits):
        raise TypeError(f"data must be a DataSplits; got {describe(data)}.")
    bugs = _check_bugs(bugs, data.n_classes)
    keep_fraction = check_number("keep_fraction", keep_fraction, low=0, high=1,
                                 low_inclusive=False, high_inclusive=False)
    held_out_fraction = check_number("held_out_fraction", held_out_fraction, low=0, high=1,
                                     low_inclusive=False, high_inclusive=False)
    check_seed("seed", seed)
    X = torch.cat([data.X_train, data.X_val, data.X_test])
    y = torch.cat([data.y_train, data.y_val, data.y_test]).numpy().astype(np.int64)
    split = np.repeat([0, 1, 2], [len(data.y_train), len(data.y_val), len(data.y_test)])
    F = np.asarray(features, dtype=np.float64)
    if F.ndim != 2 or len(F) != len(y):
        raise ValueError(f"features must have shape ({len(y)}, d), one row per image of "
                         f"concat(train, val, test); got {describe(features)}.")
    rng = np.random.default_rng(seed)
    labels = y.copy()
    removed, planted_bugs = np.zeros(len(y), bool), []
    for spec in bugs:
        idx = np.flatnonzero(y == spec.source_class)
        style_of = sub_styles(F[idx], n_styles, seed=seed)
        members_of = [idx[style_of == s] for s in range(n_styles)]
        style, label = _pick_style(spec, F, y, members_of, data.n_classes)
        members = members_of[style]
        held, planted, dropped = [members[split[members] == 2]], [], []
        for part in (0, 1):
            m = rng.permutation(members[split[members] == part])
            n_held = int(round(held_out_fraction * len(m)))
            held.append(m[:n_held])
            rest = m[n_held:]
            if spec.kind == "rare":
                n_keep = max(1, int(round(keep_fraction * len(rest)))) if len(rest) else 0
                planted.append(rest[:n_keep])
                dropped.append(rest[n_keep:])
            else:
                planted.append(rest)
        held, planted = np.sort(np.concatenate(held)), np.sort(np.concatenate(planted))
        dropped = np.sort(np.concatenate(dropped)) if dropped else np.zeros(0, np.int64)
        labels[planted] = label
        removed[held] = removed[dropped] = True
        cents = np.stack([F[m].mean(0) for m in members_of])
        planted_bugs.append((spec, style, label, members, held, planted, dropped, cents))
    index = [np.flatnonzero((split == s) & ~removed) for s in (0, 1, 2)]
    pos = np.full(len(y), -1)
    pos[index[0]] = np.arange(len(index[0]))
    out_bugs = tuple(
        PlantedBug(f"{spec.kind}-{spec.source_class}/s{style}"
                   + (f"->{label}" if spec.kind == "mislabelled" else ""),
                   spec.source_class, spec.kind, style, label, members, held, planted, dropped,
                   np.sort(pos[planted[split[planted] == 0]]), cents)
        for spec, style, label, members, held, planted, dropped, cents in planted_bugs)
    lab = torch.from_numpy(labels)
    splits = DataSplits(f"{data.name}-planted", X[index[0]], lab[index[0]], X[index[1]],
                        lab[index[1]], X[index[2]], lab[index[2]], data.class_names)
    return PlantedData(splits, out_bugs, X, y, split, *index)
