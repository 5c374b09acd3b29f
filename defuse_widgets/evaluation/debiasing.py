"""Debiasing baselines: training methods that counter a spurious feature.

The methods a user would pick instead of Defuse when a classifier relies on a
spurious feature (a background colour, say), written from the papers'
descriptions:

* :func:`train_weighted` -- the classifier recipe of
  :func:`~defuse_widgets.models.training.train_classifier` with a weight per
  training image on the cross-entropy; the other methods train through it.
* :func:`jtt` -- Just Train Twice (Liu et al., ICML 2021): upweight the
  training images that a briefly trained model gets wrong.
* :func:`lff` -- Learning from Failure (Nam et al., NeurIPS 2020): train a
  deliberately biased model and a debiased one side by side, weighting each
  image by how much harder it is for the biased model.
* :func:`group_weights` and :func:`group_reweighted` -- the upper bound that
  knows the spurious attribute of every training image and reweights it to
  break the correlation.

Each method takes ``make_model``, a zero-argument callable that returns a
fresh ``nn.Module`` mapping images (n, C, H, W) to logits (n, n_classes);
torch is seeded before each call, so initialisations are reproducible. Each
takes ``epochs``, so that a comparison can give every method the same
training budget, and returns its model in eval mode on the CPU. This module
imports no UI code.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from defuse_widgets._validation import (
    check_choice,
    check_images,
    check_int,
    check_labels,
    check_module,
    check_number,
    check_seed,
    describe,
    resolve_device,
)
from defuse_widgets.models.inference import accuracy, correct, to_unit
from defuse_widgets.models.training import batches, make_optimizer
from defuse_widgets.seeding import seed_everything

__all__ = ["weighted_cross_entropy", "train_weighted", "jtt", "gce_loss", "lff",
           "group_weights", "group_reweighted"]


def _check_make_model(make_model: Any) -> None:
    if not callable(make_model) or isinstance(make_model, nn.Module):
        raise TypeError("make_model must be a zero-argument callable that returns a fresh "
                        f"torch.nn.Module; got {describe(make_model)}.")


def _fresh_model(make_model: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Seed every generator with ``seed``, then call ``make_model()`` and check its result."""
    seed_everything(seed)
    return check_module("make_model()", make_model())


def _check_weights(weights: Any, n: int) -> torch.Tensor:
    """Return per-sample weights as a float32 tensor of shape (n,): finite, >= 0, not all 0."""
    if isinstance(weights, (list, tuple)):
        weights = np.asarray(weights, dtype=np.float64)
    if isinstance(weights, np.ndarray):
        if not np.issubdtype(weights.dtype, np.number) or np.iscomplexobj(weights):
            raise TypeError(f"weights must hold real numbers; got {describe(weights)}.")
        weights = torch.from_numpy(np.ascontiguousarray(weights))
    if not isinstance(weights, torch.Tensor) or weights.dtype == torch.bool:
        raise TypeError("weights must be an ndarray or tensor of shape (n_images,) holding "
                        f"real numbers; got {describe(weights)}.")
    if weights.ndim != 1 or len(weights) != n:
        raise ValueError(f"weights must have shape ({n},), one weight per image; "
                         f"got {describe(weights)}.")
    weights = weights.detach().cpu().float()
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and >= 0; got values in "
                         f"[{float(weights.min()):.4g}, {float(weights.max()):.4g}].")
    if not (weights > 0).any():
        raise ValueError("weights must not all be 0: no image would be trained on.")
    return weights


def weighted_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of the per-sample cross-entropy: sum(w_i * ce_i) / sum(w_i).

    Parameters
    ----------
    logits : Tensor of shape (n, n_classes)
    y : Tensor of shape (n,), int64
    weights : Tensor of shape (n,)
        Non-negative, with a positive sum.

    Returns
    -------
    Tensor of shape ()
    """
    ce = F.cross_entropy(logits, y, reduction="none")
    return (weights * ce).sum() / weights.sum()


def train_weighted(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                   weights: Any = None, *, epochs: int, batch_size: int = 64,
                   lr: float = 1.0, optimizer: str = "adadelta", seed: int = 0,
                   device=None) -> nn.Module:
    """Train a classifier with the paper's recipe and a weight per training image.

    The recipe of :func:`~defuse_widgets.models.training.train_classifier`
    (Adadelta with lr 1 and a StepLR(gamma=0.7) schedule, batches of 64 in a
    seeded random order), with each batch's loss the weighted mean of the
    per-image cross-entropy, sum(w_i * ce_i) / sum(w_i)
    (:func:`weighted_cross_entropy`). Weighting the loss, rather than sampling
    images in proportion to their weight, keeps every epoch one pass over the
    data. An image of weight 0 does not reach the gradient; a batch whose
    weights are all 0 makes no step. Scaling all weights by a constant
    changes nothing. Without ``weights``, the run is
    :func:`~defuse_widgets.models.training.train_classifier`'s.

    Parameters
    ----------
    model : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes); trained in place.
    X : Tensor of shape (n, C, H, W)
        float32 pixels in [0, 1], or uint8 pixels (made float in [0, 1] batch
        by batch).
    y : Tensor of shape (n,)
        Class indices.
    weights : array-like of shape (n,), optional
        Finite, non-negative weights, not all 0. None weighs every image 1.
    epochs : int
    batch_size : int, default=64
    lr : float, default=1.0
    optimizer : {"adadelta", "adam"}, default="adadelta"
        Adadelta with the StepLR schedule, or Adam without one.
    seed : int, default=0
        Seeds the batch order and torch's generator (dropout).
    device : str or torch.device, optional
        CUDA when available if not given.

    Returns
    -------
    nn.Module
        ``model``, trained, in eval mode on the CPU.

    Examples
    --------
    >>> model = train_weighted(MnistCNN(1, 8, 2), X, y, weights, epochs=3)  # doctest: +SKIP
    """
    check_module("model", model)
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    w = None if weights is None else _check_weights(weights, len(X))
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_number("lr", lr, low=0, low_inclusive=False)
    check_choice("optimizer", optimizer, ("adadelta", "adam"))
    seed = check_seed("seed", seed)
    dev = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(dev).train()
    opt, sched = make_optimizer(model, optimizer, lr)
    for _ in range(epochs):
        for idx in batches(len(X), batch_size, gen):
            if w is not None and not (w[idx] > 0).any():
                continue
            xb, yb = to_unit(X[idx].to(dev)), y[idx].to(dev)
            logits = model(xb)
            loss = (F.cross_entropy(logits, yb) if w is None
                    else weighted_cross_entropy(logits, yb, w[idx].to(dev)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
    return model.eval().cpu()


def _check_upweights(upweights: Any) -> tuple:
    if isinstance(upweights, (str, bytes)) or not isinstance(upweights, Sequence):
        raise TypeError("upweights must be a sequence of numbers > 0 (the lam_up values to "
                        f"try); got {describe(upweights)}.")
    if len(upweights) == 0:
        raise ValueError("upweights must hold at least one lam_up value; got an empty "
                         "sequence.")
    lams = tuple(check_number(f"upweights[{i}]", v, low=0, low_inclusive=False)
                 for i, v in enumerate(upweights))
    if len(set(lams)) != len(lams):
        raise ValueError(f"upweights must not repeat a value; got {list(upweights)}.")
    return lams


def _validation_score(select: Any, X_val: Any, y_val: Any, shape: tuple,
                      dev: torch.device) -> Callable[[nn.Module], float]:
    """Return the model-selection score: ``select``, or accuracy on (X_val, y_val)."""
    if select is not None:
        if not callable(select):
            raise TypeError("select must be a callable(model) -> float, or None; "
                            f"got {describe(select)}.")
        return select
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val are needed to select lam_up when select is None; "
                         "got None.")
    X_val = check_images("X_val", X_val, shape=shape)
    y_val = check_labels("y_val", y_val, n_samples=len(X_val))
    return lambda model: accuracy(model.to(dev), X_val, y_val, device=dev)


def jtt(make_model: Callable[[], nn.Module], X: torch.Tensor, y: torch.Tensor,
        X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, *,
        id_epochs: int = 1, upweights: Sequence[float] = (20, 50, 100), epochs: int = 5,
        seed: int = 0, select: Callable[[nn.Module], float] | None = None,
        device=None) -> tuple:
    """Just Train Twice (Liu et al., ICML 2021): upweight an ERM model's training errors.

    An identification model is trained by plain ERM for ``id_epochs`` epochs;
    the training images it misclassifies form the error set. For each
    ``lam_up`` of ``upweights``, a fresh model is trained for ``epochs``
    epochs with :func:`train_weighted`, the error set's images weighted
    ``lam_up`` and all others 1. The final model with the highest
    ``select(model)`` is returned (the first one on ties). Every model starts
    from ``make_model()`` with torch seeded by ``seed`` and trains with the
    batch order of ``seed``.

    Parameters
    ----------
    make_model : callable() -> nn.Module
        Returns a fresh model mapping images (n, C, H, W) to logits
        (n, n_classes).
    X : Tensor of shape (n, C, H, W)
        Training images, float32 in [0, 1] or uint8.
    y : Tensor of shape (n,)
    X_val : Tensor of shape (n_val, C, H, W), optional
    y_val : Tensor of shape (n_val,), optional
        The validation set whose accuracy selects ``lam_up``; needed when
        ``select`` is None.
    id_epochs : int, default=1
        Epochs of the identification model.
    upweights : sequence of float, default=(20, 50, 100)
        The ``lam_up`` values to try, each > 0.
    epochs : int, default=5
        Epochs of each final model.
    seed : int, default=0
    select : callable(model) -> float, optional
        Validation score of a final model (in eval mode on the CPU); higher
        is better. Default: accuracy on ``(X_val, y_val)``.
    device : str or torch.device, optional
        CUDA when available if not given.

    Returns
    -------
    model : nn.Module
        The selected final model, in eval mode on the CPU.
    info : dict
        ``error_set`` (ndarray of shape (n_errors,), int64: indices of the
        identification model's misclassified training images), ``n_errors``,
        ``scores`` (lam_up -> validation score), ``lam_up`` (the chosen one)
        and ``identification_model``.

    Examples
    --------
    >>> make = lambda: MnistCNN(1, 32, 10)
    >>> model, info = jtt(make, X, y, X_val, y_val, epochs=5)  # doctest: +SKIP
    >>> info["lam_up"], info["n_errors"]  # doctest: +SKIP
    """
    _check_make_model(make_model)
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    id_epochs = check_int("id_epochs", id_epochs, low=1)
    epochs = check_int("epochs", epochs, low=1)
    lams = _check_upweights(upweights)
    seed = check_seed("seed", seed)
    dev = resolve_device(device)
    score = _validation_score(select, X_val, y_val, tuple(X.shape[1:]), dev)
    id_model = train_weighted(_fresh_model(make_model, seed), X, y, epochs=id_epochs,
                              seed=seed, device=dev)
    errors = np.flatnonzero(~correct(id_model.to(dev), X, y, device=dev)).astype(np.int64)
    id_model.cpu()
    scores, best, chosen = {}, None, None
    for lam in lams:
        weights = torch.ones(len(X))
        weights[torch.from_numpy(errors)] = lam
        model = train_weighted(_fresh_model(make_model, seed), X, y, weights, epochs=epochs,
                               seed=seed, device=dev)
        scores[lam] = check_number("select(model)", score(model))
        model.eval().cpu()
        if chosen is None or scores[lam] > scores[chosen]:
            best, chosen = model, lam
    return best, {"error_set": errors, "n_errors": len(errors), "scores": scores,
                  "lam_up": chosen, "identification_model": id_model}


def gce_loss(logits: torch.Tensor, y: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Generalized cross-entropy per sample, (1 - p_y^q) / q (Zhang & Sabuncu, 2018).

    Its gradient is the cross-entropy's scaled by p_y^q, so images the model
    already fits well (the easy ones) weigh more: a model trained on it
    leans on whatever feature is easiest, the bias.

    Parameters
    ----------
    logits : Tensor of shape (n, n_classes)
    y : Tensor of shape (n,), int64
    q : float, default=0.7
        In (0, 1]; as q tends to 0 the loss tends to the cross-entropy.

    Returns
    -------
    Tensor of shape (n,)
    """
    p_y = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    return (1 - p_y.clamp_min(1e-12) ** q) / q


class _LossEMA:
    """Exponential moving average of each sample's loss, normalised per class.

    A sample's first loss starts its average; later ones are blended in as
    ``ema * old + (1 - ema) * new``.
    """

    def __init__(self, y: torch.Tensor, ema: float):
        self.y, self.ema = y, ema
        self.n_classes = int(y.max()) + 1
        self.value = torch.zeros(len(y), device=y.device)
        self.seen = torch.zeros(len(y), dtype=torch.bool, device=y.device)

    def update(self, idx: torch.Tensor, loss: torch.Tensor) -> None:
        blended = self.ema * self.value[idx] + (1 - self.ema) * loss
        self.value[idx] = torch.where(self.seen[idx], blended, loss)
        self.seen[idx] = True

    def normalised(self, idx: torch.Tensor) -> torch.Tensor:
        """The averages of ``idx`` divided by the largest average of their class."""
        top = torch.zeros(self.n_classes, device=self.value.device).scatter_reduce(
            0, self.y, self.value, reduce="amax")
        return self.value[idx] / top[self.y[idx]].clamp_min(1e-12)


def _lff_step(models: tuple, opts: tuple, emas: tuple, xb: torch.Tensor, yb: torch.Tensor,
              idx: torch.Tensor, q: float) -> torch.Tensor:
    """One LfF step on a batch; return the batch's relative-difficulty weights (n_batch,)."""
    logits_b, logits_d = models[0](xb), models[1](xb)
    ce_d = F.cross_entropy(logits_d, yb, reduction="none")
    emas[0].update(idx, F.cross_entropy(logits_b, yb, reduction="none").detach())
    emas[1].update(idx, ce_d.detach())
    loss_b, loss_d = emas[0].normalised(idx), emas[1].normalised(idx)
    w = loss_b / (loss_b + loss_d).clamp_min(1e-12)
    loss = gce_loss(logits_b, yb, q).mean() + (w * ce_d).mean()
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()
    return w


def lff(make_model: Callable[[], nn.Module], X: torch.Tensor, y: torch.Tensor, *,
        q: float = 0.7, ema: float = 0.7, epochs: int = 5, seed: int = 0,
        device=None) -> tuple:
    """Learning from Failure (Nam et al., NeurIPS 2020): learn from a biased model's failures.

    Two models from ``make_model()`` train side by side on the same batches,
    each with its own optimizer of the classifier recipe (Adadelta, lr 1,
    StepLR gamma 0.7, batches of 64). The biased model f_B minimises the
    generalized cross-entropy (:func:`gce_loss`), which makes it lean on the
    easiest feature. The debiased model f_D minimises the batch mean of
    W(x) * CE(f_D(x), y), where the relative difficulty

        W(x) = CE_B(x) / (CE_B(x) + CE_D(x))

    is computed from exponential moving averages (factor ``ema``) of each
    image's cross-entropy under f_B and f_D, each divided by the largest
    average among the images of the same class, and is not differentiated.
    Images the biased model fails on (bias-conflicting ones) get weights
    near 1; images it fits easily get weights near 0.

    Parameters
    ----------
    make_model : callable() -> nn.Module
        Returns a fresh model mapping images (n, C, H, W) to logits
        (n, n_classes); called once for f_B and once for f_D, with torch
        seeded by ``seed`` and ``seed + 1``.
    X : Tensor of shape (n, C, H, W)
        Training images, float32 in [0, 1] or uint8.
    y : Tensor of shape (n,)
    q : float, default=0.7
        The GCE exponent, in (0, 1].
    ema : float, default=0.7
        Weight of the past in the loss averages, in [0, 1).
    epochs : int, default=5
        Epochs of both models.
    seed : int, default=0
    device : str or torch.device, optional
        CUDA when available if not given.

    Returns
    -------
    model : nn.Module
        The debiased model f_D, in eval mode on the CPU.
    info : dict
        ``weights`` (ndarray of shape (n,), float32: each training image's
        W(x) in the final epoch, in [0, 1]), ``mean_weight`` (their mean)
        and ``biased_model`` (f_B, in eval mode on the CPU).

    Examples
    --------
    >>> model, info = lff(lambda: MnistCNN(3, 32, 10), X, y, epochs=5)  # doctest: +SKIP
    """
    _check_make_model(make_model)
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    q = check_number("q", q, low=0, high=1, low_inclusive=False)
    ema = check_number("ema", ema, low=0, high=1, high_inclusive=False)
    epochs = check_int("epochs", epochs, low=1)
    seed = check_seed("seed", seed)
    dev = resolve_device(device)
    models = (_fresh_model(make_model, seed).to(dev).train(),
              _fresh_model(make_model, seed + 1).to(dev).train())
    recipes = [make_optimizer(m) for m in models]
    opts = tuple(opt for opt, _ in recipes)
    y_dev = y.to(dev)
    emas = (_LossEMA(y_dev, ema), _LossEMA(y_dev, ema))
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    weights = torch.zeros(len(X))
    for _ in range(epochs):
        for idx in batches(len(X), 64, gen):
            xb, yb = to_unit(X[idx].to(dev)), y_dev[idx.to(dev)]
            weights[idx] = _lff_step(models, opts, emas, xb, yb, idx.to(dev), q).cpu()
        for _, sched in recipes:
            sched.step()
    biased, debiased = (m.eval().cpu() for m in models)
    return debiased, {"weights": weights.numpy(), "mean_weight": float(weights.mean()),
                      "biased_model": biased}


def _check_groups(groups: Any, n: int) -> np.ndarray:
    if isinstance(groups, torch.Tensor):
        groups = groups.detach().cpu().numpy()
    if isinstance(groups, (list, tuple)):
        try:
            groups = np.asarray(groups)
        except ValueError as exc:   # ragged
            raise ValueError(f"groups must have shape ({n},); got {describe(groups)}.") from exc
    if not isinstance(groups, np.ndarray) or not (np.issubdtype(groups.dtype, np.integer)
                                                  or groups.dtype == bool):
        raise TypeError("groups must be an array of integer group indices (e.g. each "
                        f"image's background colour); got {describe(groups)}.")
    if groups.ndim != 1 or len(groups) != n:
        raise ValueError(f"groups must have one entry per image, shape ({n},); "
                         f"got {describe(groups)}.")
    return groups.astype(np.int64)


def group_weights(y: Any, groups: Any) -> np.ndarray:
    """Per-image weights 1 / p(y | group), estimated from counts and normalised to mean 1.

    With these weights every group holds, in total weight, the same share of
    each class, so the group (the spurious attribute) no longer predicts the
    label.

    Parameters
    ----------
    y : array-like of shape (n,)
        Class indices.
    groups : array-like of shape (n,)
        Integer group of each image, e.g. the index of its background colour.

    Returns
    -------
    ndarray of shape (n,), float64
        ``count(group_i) / count(group_i, y_i)``, divided by its mean.

    Examples
    --------
    >>> group_weights([0, 0, 0, 1], [0, 0, 0, 0])
    array([0.66666667, 0.66666667, 0.66666667, 2.        ])
    """
    y = check_labels("y", y).numpy()
    groups = _check_groups(groups, len(y))
    if len(y) == 0:
        raise ValueError("y must hold at least one label; got length 0.")
    _, per_group, n_group = np.unique(groups, return_inverse=True, return_counts=True)
    _, per_pair, n_pair = np.unique(np.stack([groups, y], axis=1), axis=0,
                                    return_inverse=True, return_counts=True)
    weights = n_group[per_group.ravel()] / n_pair[per_pair.ravel()]
    return weights / weights.mean()


def group_reweighted(make_model: Callable[[], nn.Module], X: torch.Tensor, y: torch.Tensor,
                     groups: Any, *, epochs: int = 5, seed: int = 0,
                     device=None) -> tuple:
    """Train on group-reweighted data: the upper bound that knows the spurious attribute.

    :func:`train_weighted` with :func:`group_weights`, on a fresh model from
    ``make_model()`` with torch seeded by ``seed``.

    Parameters
    ----------
    make_model : callable() -> nn.Module
        Returns a fresh model mapping images (n, C, H, W) to logits
        (n, n_classes).
    X : Tensor of shape (n, C, H, W)
        Training images, float32 in [0, 1] or uint8.
    y : Tensor of shape (n,)
    groups : array-like of shape (n,)
        Integer group of each image, e.g. the index of its background colour.
    epochs : int, default=5
    seed : int, default=0
    device : str or torch.device, optional
        CUDA when available if not given.

    Returns
    -------
    model : nn.Module
        In eval mode on the CPU.
    info : dict
        ``weights``: the :func:`group_weights`, ndarray of shape (n,).

    Examples
    --------
    >>> model, info = group_reweighted(lambda: MnistCNN(3, 32, 10), X, y,
    ...                                background, epochs=5)  # doctest: +SKIP
    """
    _check_make_model(make_model)
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    weights = group_weights(y, groups)
    epochs = check_int("epochs", epochs, low=1)
    seed = check_seed("seed", seed)
    model = train_weighted(_fresh_model(make_model, seed), X, y, weights, epochs=epochs,
                           seed=seed, device=device)
    return model, {"weights": weights}
