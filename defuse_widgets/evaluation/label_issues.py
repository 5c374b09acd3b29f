"""Label-error detection with cleanlab, scored against the planted mislabelled images.

The peer of the project's label review (:mod:`defuse_widgets.stages.label_review`):
confident learning (Northcutt et al., 2021) flags training images whose
out-of-fold predicted probabilities disagree with their label, with no
annotator. :func:`out_of_fold_probs` trains the project's classifier recipe
on K−1 folds and predicts the held-out fold (or fits any scikit-learn
classifier on fixed features), :func:`cleanlab_label_issues` runs
``cleanlab.filter.find_label_issues`` and :func:`label_issue_scores` scores
any set of flagged training indices, cleanlab's or the label review's, on
the truly mislabelled ones.

Out-of-fold probabilities, measured on the planted data of seed 0 (3,407
training images, 216 of them planted mislabelled; cleanlab's default
``prune_by_noise_rate``; 2 shared CPU cores):

============================================  ======  =========  ======
out-of-fold model (3 folds)                   time    precision  recall
============================================  ======  =========  ======
MnistCNN, paper recipe, 3 epochs (default)    38 s    0.31       0.07
MnistCNN, paper recipe, 5 epochs              122 s   0.33       0.08
logistic regression on the planted VAE codes  0.4 s   0.26       0.11
============================================  ======  =========  ======

The default is the project's classifier recipe with 3 epochs: as good as 5
epochs at a third of the time, and it needs no VAE. All three miss most
planted images: a planted bug relabels a whole sub-style consistently, so
the models of the other folds learn the planted label too.

cleanlab is an optional dependency (the ``test`` extra); it is imported when
used. This module imports no UI code.
"""
from __future__ import annotations

import numpy as np
import torch

from defuse_widgets._validation import (
    check_choice,
    check_images,
    check_int,
    check_labels,
    check_seed,
    describe,
)

__all__ = ["cleanlab_label_issues", "label_issue_scores", "out_of_fold_probs"]


def out_of_fold_probs(X, y, *, n_folds: int = 3, epochs: int = 3, estimator=None,
                      build=None, seed: int = 0, device=None) -> np.ndarray:
    """Predicted probabilities of every training image from a model that did not train on it.

    Parameters
    ----------
    X : Tensor of shape (n, C, H, W), or ndarray of shape (n, d) with ``estimator``
    y : array-like of shape (n,)
        The (possibly noisy) training labels.
    n_folds : int, default=3
        Stratified folds.
    epochs : int, default=3
        Epochs of :func:`~defuse_widgets.models.training.train_classifier` per
        fold (the paper's recipe otherwise); ignored with ``estimator``.
    estimator : scikit-learn classifier, optional
        Fitted (a clone per fold) on the features ``X`` instead of training a CNN.
    build : callable() -> nn.Module, optional
        The CNN to train per fold; default ``MnistCNN(C, H, n_classes)``.
    seed : int, default=0
    device : str or torch.device, optional

    Returns
    -------
    ndarray of shape (n, n_classes)
        Rows sum to 1; ``n_classes = max(y) + 1``.
    """
    import warnings

    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from defuse_widgets.models import MnistCNN
    from defuse_widgets.models.inference import predict_logits
    from defuse_widgets.models.training import train_classifier

    n_folds = check_int("n_folds", n_folds, low=2)
    epochs = check_int("epochs", epochs, low=1)
    seed = check_seed("seed", seed)
    if estimator is None:
        X = check_images("X", X)
    elif not (isinstance(X, np.ndarray) and X.ndim == 2 and len(X)):
        raise ValueError(f"X must be features of shape (n, d) when an estimator is given; "
                         f"got {describe(X)}.")
    lab = check_labels("y", y, n_samples=len(X)).numpy()
    if lab.min() < 0 or np.bincount(lab).max() < n_folds:
        raise ValueError(f"y must hold non-negative labels with at least n_folds={n_folds} "
                         f"images in some class; got {describe(y)}.")
    n_classes = int(lab.max()) + 1
    out = np.zeros((len(lab), n_classes))
    with warnings.catch_warnings():   # classes with fewer members than folds
        warnings.simplefilter("ignore", UserWarning)
        folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed)
                     .split(np.zeros(len(lab)), lab))
    for f, (tr, te) in enumerate(folds):
        if estimator is not None:
            model = clone(estimator).fit(X[tr], lab[tr])
            out[np.ix_(te, model.classes_)] = model.predict_proba(X[te])
            continue
        torch.manual_seed(seed + f)
        model = build() if build is not None else MnistCNN(X.shape[1], X.shape[2], n_classes)
        train_classifier(model, X[tr], torch.from_numpy(lab[tr]), epochs=epochs, seed=seed + f,
                         device=device, progress=False)
        dev = next(model.parameters()).device
        out[te] = torch.softmax(predict_logits(model, X[te], device=dev), 1).numpy()
    return out / out.sum(1, keepdims=True)


def cleanlab_label_issues(labels, pred_probs, *, filter_by: str = "prune_by_noise_rate"
                          ) -> np.ndarray:
    """Training indices cleanlab flags as label issues, most likely first.

    Parameters
    ----------
    labels : array-like of shape (n,)
    pred_probs : ndarray of shape (n, n_classes)
        Out-of-fold probabilities (:func:`out_of_fold_probs`).
    filter_by : str, default="prune_by_noise_rate"
        cleanlab's filter (``"prune_by_class"``, ``"both"``,
        ``"confident_learning"``, ``"predicted_neq_given"``, ...).

    Returns
    -------
    ndarray of shape (n_flagged,), int64
        Ranked by self-confidence (lowest probability of the given label first).
    """
    from cleanlab.filter import find_label_issues

    filter_by = check_choice("filter_by", filter_by, (
        "prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
        "predicted_neq_given", "low_normalized_margin", "low_self_confidence"))
    lab = check_labels("labels", labels).numpy()
    P = np.asarray(pred_probs, dtype=np.float64) if isinstance(pred_probs, np.ndarray) \
        else pred_probs
    if (not isinstance(P, np.ndarray) or P.shape[:1] != lab.shape or P.ndim != 2
            or not np.isfinite(P).all() or lab.max() >= P.shape[1]):
        raise ValueError(f"pred_probs must have shape ({len(lab)}, n_classes) with n_classes > "
                         f"max(labels); got {describe(pred_probs)}.")
    idx = find_label_issues(lab, P, filter_by=filter_by,
                            return_indices_ranked_by="self_confidence")
    return np.asarray(idx, dtype=np.int64)


def label_issue_scores(flagged, bugs, *, n_train: int | None = None) -> dict:
    """Precision and recall of flagged training indices on the truly mislabelled ones.

    Parameters
    ----------
    flagged : array-like of shape (n_flagged,)
        Indices into the training split (cleanlab's, or the label review's
        relabelled images).
    bugs : sequence of PlantedBug, or of index arrays
        The truly mislabelled images: ``train_index`` of every bug of kind
        "mislabelled" (other kinds are skipped), or the arrays themselves.
    n_train : int, optional
        Size of the training split, to check the indices.

    Returns
    -------
    dict
        ``n_flagged``, ``n_true`` (flagged and mislabelled), ``precision``
        (0 when nothing is flagged), ``recall`` and ``per_bug``: for each
        counted bug, ``name``, ``n_mislabelled``, ``n_flagged`` and ``recall``.
    """
    arr = np.asarray(flagged).ravel()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"flagged must hold integer indices into the training split; "
                        f"got {describe(flagged)}.")
    idx = np.unique(arr.astype(np.int64))
    if len(idx) and (idx.min() < 0 or (n_train is not None and idx.max() >= n_train)):
        raise ValueError(f"flagged must hold indices in [0, {n_train}) into the training "
                         f"split; got values in [{idx.min()}, {idx.max()}].")
    sets, names = [], []
    for j, b in enumerate(bugs):
        if hasattr(b, "train_index"):
            if b.kind == "mislabelled":
                sets.append(np.asarray(b.train_index, dtype=np.int64))
                names.append(b.name)
        else:
            sets.append(np.asarray(b, dtype=np.int64).ravel())
            names.append(f"bug{j}")
    wrong = np.unique(np.concatenate(sets)) if sets else np.zeros(0, np.int64)
    n_true = int(np.isin(idx, wrong).sum())
    per_bug = [dict(name=name, n_mislabelled=len(s), n_flagged=int(np.isin(s, idx).sum()),
                    recall=float(np.isin(s, idx).mean()) if len(s) else 0.0)
               for name, s in zip(names, sets)]
    return dict(n_flagged=len(idx), n_true=n_true, precision=n_true / max(len(idx), 1),
                recall=n_true / max(len(wrong), 1), per_bug=per_bug)
