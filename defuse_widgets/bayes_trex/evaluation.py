"""Evaluating Bayes-TrEx level sets as the paper does (§4.3, §4.4, §4.8).

* :func:`ambiguity_counts` / :func:`sampled_ambiguity` / :func:`baseline_ambiguity`:
  the ambiguity matrix (paper Fig. 5) and its test-set baseline: a class pair
  is covered when some image has confidence in [0.4, 0.6] for both classes.
* :func:`train_class_excluded_vae` and :func:`confident_failures`: a generator
  that cannot produce class c, and the high-confidence class-c draws that an
  annotator says are not c (paper §4.4, Fig. 3(b)).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from defuse_widgets._validation import (
    check_images,
    check_int,
    check_labels,
    check_number,
    check_seed,
    describe,
)
from defuse_widgets.bayes_trex.level_sets import LevelSetSampler, Target
from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.models.inference import encode_mean, predict_logits

__all__ = ["ambiguity_counts", "all_pair_targets", "pair_draws", "pair_interpolation_codes",
           "sampled_ambiguity", "baseline_ambiguity", "train_class_excluded_vae",
           "train_subset_classifier",
           "confident_failures"]


def ambiguity_counts(probs, *, low: float = 0.4, high: float = 0.6) -> np.ndarray:
    """Count, for every class pair, the images ambiguous between the two classes.

    Parameters
    ----------
    probs : ndarray of shape (n_images, n_classes)
        Predicted class probabilities.
    low, high : float, default=0.4, 0.6
        An image is ambiguous between i and j when both confidences lie in [low, high].

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64
        Symmetric, zero diagonal; ``counts > 0`` is the covered-pairs matrix.

    Examples
    --------
    >>> ambiguity_counts(np.array([[0.5, 0.45, 0.05]]))[0, 1]
    1
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (n_images, n_classes); got {describe(p)}.")
    low = check_number("low", low, low=0, high=1)
    high = check_number("high", high, low=low, high=1)
    inside = ((p >= low) & (p <= high)).astype(np.int64)
    counts = inside.T @ inside
    np.fill_diagonal(counts, 0)
    return counts


def all_pair_targets(n_classes: int) -> list[Target]:
    """``Target.ambiguous(i, j)`` for every pair i < j (45 for 10 classes)."""
    n = check_int("n_classes", n_classes, low=2)
    return [Target.ambiguous(i, j) for i in range(n) for j in range(i + 1, n)]


def pair_interpolation_codes(vae: nn.Module, X, y, pairs, *, n_per_pair: int = 16,
                             n_steps: int = 9, seed: int = 0, device="cpu") -> np.ndarray:
    """Codes on straight lines between encodings of class-i and class-j images.

    Every line from an i image to a j image crosses the classifier's i/j
    boundary somewhere, so these codes are good starting points for ambiguous
    targets (``LevelSetSampler(init_codes=...)``): the sampler's importance
    resampling picks the ones nearest each level set.

    Parameters
    ----------
    vae : BetaVAE
        Its ``encode`` gives the posterior mean of each image.
    X : Tensor of shape (n, C, H, W)
        Real images, e.g. a validation or test split.
    y : Tensor of shape (n,)
    pairs : sequence of (int, int)
        Class pairs; a pair with a class absent from ``y`` is skipped.
    n_per_pair : int, default=16
        Random (i image, j image) couples per pair.
    n_steps : int, default=9
        Points per line, endpoints included.
    seed : int, default=0
    device : str or torch.device, default="cpu"

    Returns
    -------
    ndarray of shape (n_pairs * n_per_pair * n_steps, n_latent), float32
    """
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X)).numpy()
    n_per_pair = check_int("n_per_pair", n_per_pair, low=1)
    n_steps = check_int("n_steps", n_steps, low=2)
    rng = np.random.default_rng(check_seed("seed", seed))
    mu = np.asarray(encode_mean(vae, X, device=device), dtype=np.float32)
    t = np.linspace(0.0, 1.0, n_steps, dtype=np.float32)[None, :, None]
    out = []
    for pair in pairs:
        i, j = (check_int("pairs", c, low=0) for c in pair)
        in_i, in_j = np.flatnonzero(y == i), np.flatnonzero(y == j)
        if not len(in_i) or not len(in_j):
            continue
        a = mu[rng.choice(in_i, n_per_pair)][:, None]
        b = mu[rng.choice(in_j, n_per_pair)][:, None]
        out.append(((1 - t) * a + t * b).reshape(-1, mu.shape[1]))
    if not out:
        raise ValueError("pairs must name classes present in y; none of them are.")
    return np.concatenate(out)


def pair_draws(sampler, i: int, j: int, *, n_show: int = 16, low: float = 0.4,
               high: float = 0.6) -> tuple:
    """Up to ``n_show`` level-set draws of the ambiguous pair (i, j).

    Ambiguous draws (both confidences in [low, high]) come first, spread evenly
    over the chain; when there are none, the draws closest to p_i = p_j = 0.5
    are returned instead.

    Returns
    -------
    codes : ndarray of shape (m, n_latent)
    probs : ndarray of shape (m, n_classes)
    ambiguous : bool
        Whether the draws are ambiguous (False: the closest ones, a sampling failure).
        ``m`` is 0 when the sampler has no target for the pair.
    """
    target = Target.ambiguous(i, j)
    if target not in sampler.targets_:
        return (np.zeros((0, sampler.codes_.shape[-1])), np.zeros((0, sampler.n_classes_)),
                False)
    codes, probs = sampler.samples(target)
    inside = ((probs[:, [i, j]] >= low) & (probs[:, [i, j]] <= high)).all(1)
    if inside.any():
        idx = np.flatnonzero(inside)
        idx = idx[np.linspace(0, len(idx) - 1, min(n_show, len(idx))).astype(int)]
        return codes[idx], probs[idx], True
    idx = np.argsort(np.abs(probs[:, [i, j]] - 0.5).sum(1))[:n_show]
    return codes[idx], probs[idx], False


def sampled_ambiguity(sampler: LevelSetSampler, *, low: float = 0.4,
                      high: float = 0.6) -> np.ndarray:
    """Ambiguity counts of a fitted sampler, each pair counted on its own chains only.

    Parameters
    ----------
    sampler : LevelSetSampler
        Fitted, with ambiguous targets (e.g. :func:`all_pair_targets`).
    low, high : float

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64
        Draws of the chains targeting (i, j) whose confidences for i and j
        both lie in [low, high]; pairs without a target stay 0.
    """
    if not hasattr(sampler, "probs_"):
        raise ValueError("sampler must be a fitted LevelSetSampler; call fit first.")
    K = sampler.n_classes_
    out = np.zeros((K, K), np.int64)
    for k, t in enumerate(sampler.targets_):
        if t.kind != "ambiguous":
            continue
        i, j = t.classes
        out[i, j] = out[j, i] = ambiguity_counts(sampler.samples(k)[1], low=low, high=high)[i, j]
    return out


def baseline_ambiguity(classifier: nn.Module, X, *, low: float = 0.4, high: float = 0.6,
                       device="cpu") -> np.ndarray:
    """The test-set baseline of Bayes-TrEx §4.8: :func:`ambiguity_counts` of test images.

    Parameters
    ----------
    classifier : nn.Module
    X : Tensor of shape (n, C, H, W)
    low, high : float
    device : str or torch.device, default="cpu"

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64
    """
    X = check_images("X", X)
    probs = torch.softmax(predict_logits(classifier, X, device=device), 1).numpy()
    return ambiguity_counts(probs, low=low, high=high)


def train_class_excluded_vae(X, y, exclude, *, epochs: int = 20, beta: float = 0.25,
                             anneal_steps: int = 500, batch_size: int = 64, seed: int = 0,
                             device=None, progress: bool = False,
                             callback: ProgressCallback | None = None) -> nn.Module:
    """Train a β-VAE on the images of every class except ``exclude`` (P_G ⊂ P_C).

    Parameters
    ----------
    X : Tensor of shape (n, C, H, W), values in [0, 1]
    y : Tensor of shape (n,)
    exclude : int or sequence of int
        Class c (or classes) the generator must not be able to produce.
    epochs : int, default=20
        The shipped β-VAE trained 200 epochs; 20 (about a minute on 2 CPU
        cores) give blurrier but varied decodes.
    beta : float, default=0.25
        As the shipped β-VAE; with β = 1 and few epochs the decoder collapses
        to nearly one image.
    anneal_steps, batch_size : int, default=500, 64
    seed : int, default=0
    device : str or torch.device, optional
    progress : bool, default=False
    callback : ProgressCallback, optional
        ``callback("training", epoch, epochs)`` after each epoch; True stops
        (see :func:`~defuse_widgets.models.training.train_vae`).

    Returns
    -------
    BetaVAE
        Of the family matching the image shape (``"mnist"`` for 1×32×32).
    """
    from defuse_widgets.models import BetaVAE
    from defuse_widgets.models.training import train_vae

    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    excluded = [check_int("exclude", c, low=0) for c in np.atleast_1d(exclude).tolist()]
    for c in excluded:
        if not (y == c).any():
            raise ValueError(f"exclude must hold classes present in y; got {c}.")
    check_seed("seed", seed)
    keep = ~torch.isin(y, torch.tensor(excluded))
    if not keep.any():
        raise ValueError(f"exclude must leave some images to train on; got {excluded}.")
    torch.manual_seed(seed)
    family = "mnist" if tuple(X.shape[1:]) == (1, 32, 32) else None
    if family is None:
        raise ValueError(f"X must hold 1x32x32 images for the MNIST β-VAE; got {describe(X)}.")
    vae = BetaVAE.from_family(family)
    return train_vae(vae, X[keep], beta=beta, epochs=epochs, anneal_steps=anneal_steps,
                     batch_size=batch_size, seed=seed, device=device,
                     progress=progress, callback=callback)


def train_subset_classifier(X, y, classes, *, epochs: int = 5, seed: int = 0, device=None,
                            progress: bool = False) -> nn.Module:
    """Train an MnistCNN on the images of ``classes`` only (the paper's recipe).

    Parameters
    ----------
    X : Tensor of shape (n, 1, 32, 32)
    y : Tensor of shape (n,)
    classes : sequence of int
        Classes C_1 it learns; output k of the classifier is ``classes[k]``.
    epochs : int, default=5
    seed : int, default=0
    device : str or torch.device, optional
    progress : bool, default=False

    Returns
    -------
    MnistCNN
        With ``len(classes)`` outputs, in eval mode.
    """
    from defuse_widgets.models import MnistCNN
    from defuse_widgets.models.training import train_classifier

    X = check_images("X", X, shape=(1, 32, 32))
    y = check_labels("y", y, n_samples=len(X))
    classes = [check_int("classes", c, low=0) for c in np.atleast_1d(classes).tolist()]
    if len(set(classes)) < 2 or not all((y == c).any() for c in classes):
        raise ValueError(f"classes must name at least 2 distinct classes present in y; "
                         f"got {classes}.")
    keep = torch.isin(y, torch.tensor(classes))
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    torch.manual_seed(check_seed("seed", seed))
    return train_classifier(MnistCNN(n_classes=len(classes)), X[keep], remap[y[keep]],
                            epochs=epochs, seed=seed, device=device, progress=progress)


def confident_failures(sampler: LevelSetSampler, annotator, *, target_class: int,
                       min_confidence: float = 0.9, max_images: int = 2000,
                       seed: int = 0) -> dict:
    """High-confidence class-c draws that the annotator labels as another class.

    Parameters
    ----------
    sampler : LevelSetSampler
        Fitted with ``Target.high_confidence(target_class)`` on a generator
        trained without ``target_class`` (:func:`train_class_excluded_vae`).
    annotator : object with ``label(images) -> ndarray (n,)``
        E.g. :class:`~defuse_widgets.stages.annotators.SimulatedAnnotator`.
    target_class : int
    min_confidence : float, default=0.9
        A draw is confident when the classifier gives ``target_class`` at
        least this probability.
    max_images : int, default=2000
        Confident draws sent to the annotator (a random subset beyond that).
    seed : int, default=0

    Returns
    -------
    dict
        ``n_draws``, ``n_confident``, ``n_annotated``, ``n_confirmed`` (the
        annotator says not c: a confident failure), ``n_other_class`` (of
        those, the ones it gives another class rather than "none of the
        above", ``NONE_OF_THE_ABOVE`` = -1), ``confirmed_share``,
        ``mean_confidence`` of the confident draws, ``annotator_labels``
        (class -> count) and ``codes`` of shape (n_confirmed, n_latent).
    """
    c = check_int("target_class", target_class, low=0)
    check_number("min_confidence", min_confidence, low=0, high=1)
    check_int("max_images", max_images, low=1)
    if not callable(getattr(annotator, "label", None)):
        raise TypeError(f"annotator must have a label(images) method; got {describe(annotator)}.")
    target = Target.high_confidence(c)
    codes, probs = sampler.samples(target)
    confident = np.flatnonzero(probs[:, c] >= min_confidence)
    rng = np.random.default_rng(check_seed("seed", seed))
    chosen = confident if len(confident) <= max_images else np.sort(
        rng.choice(confident, max_images, replace=False))
    labels = (np.asarray(annotator.label(sampler.decode_samples(codes[chosen])))
              if len(chosen) else np.zeros(0, np.int64))
    failed = labels != c
    values, counts = np.unique(labels, return_counts=True)
    return {"target_class": c, "n_draws": int(len(codes)), "n_confident": int(len(confident)),
            "n_annotated": int(len(chosen)), "n_confirmed": int(failed.sum()),
            "n_other_class": int((failed & (labels >= 0)).sum()),
            "confirmed_share": float(failed.mean()) if len(chosen) else float("nan"),
            "mean_confidence": (float(probs[confident, c].mean()) if len(confident)
                                else float("nan")),
            "annotator_labels": {int(v): int(n) for v, n in zip(values, counts)},
            "codes": codes[chosen][failed]}
