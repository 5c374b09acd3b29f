"""Defuse and its peers on the planted-bug benchmark, scored with one metric (issue 14).

The peers are what a user could run instead of Defuse:

* real-data slice discovery on the validation set: Domino's error-aware
  mixture (:class:`~defuse_widgets.evaluation.slice_discovery.DominoMixture`)
  and k-means on the misclassified images
  (:class:`~defuse_widgets.evaluation.slice_discovery.ErrorKMeans`);
* label-error detection on the training set with cleanlab
  (:mod:`~defuse_widgets.evaluation.label_issues`), the peer of the
  project's label review.

**The metric** (dcbench's, as used by Domino): the evaluation pool is the
test split plus every bug's held-out real images (:func:`evaluation_pool`).
For each slice or region, rank the pool by its membership score and take
the top ``k`` = 10; precision@k is the share that are bug b's held-out
images. A bug's score is the best precision@k over slices, and the bug is
*recovered* when that reaches ``min_precision`` (0.5)
(:func:`best_slice_precision`). Defuse's regions are scored the same way
through the VAE latent codes of the pool (:func:`defuse_region_scores`).

This module imports no UI code.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from benchmarks.harness.planted import PlantedData
from defuse_widgets._validation import (
    check_choice,
    check_images,
    check_int,
    check_module,
    check_number,
    check_seed,
    describe,
)
from defuse_widgets.evaluation.label_issues import (
    cleanlab_label_issues,
    label_issue_scores,
    out_of_fold_probs,
)
from defuse_widgets.evaluation.slice_discovery import DominoMixture, ErrorKMeans, classifier_outputs

__all__ = ["best_slice_precision", "compare_peers", "defuse_region_scores", "evaluation_pool",
           "precision_at_k"]


def evaluation_pool(planted: PlantedData) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The test split plus every bug's held-out images, with clean labels.

    Returns
    -------
    X : Tensor of shape (n_pool, C, H, W)
    y : ndarray of shape (n_pool,)
        Clean labels.
    hit : ndarray of shape (n_pool, n_bugs), bool
        ``hit[i, b]``: image i is one of bug b's held-out images.
    """
    if not isinstance(planted, PlantedData):
        raise TypeError(f"planted must be a PlantedData; got {describe(planted)}.")
    Xs, ys = [planted.splits.X_test], [planted.splits.y_test.numpy()]
    for b in range(len(planted.bugs)):
        Xb, yb = planted.held_out(b)
        Xs.append(Xb)
        ys.append(yb.numpy())
    start = np.cumsum([0] + [len(v) for v in ys])
    hit = np.zeros((start[-1], len(planted.bugs)), bool)
    for b in range(len(planted.bugs)):
        hit[start[b + 1]:start[b + 2], b] = True
    return torch.cat(Xs), np.concatenate(ys).astype(np.int64), hit


def precision_at_k(scores, hit, *, k: int = 10, seed: int = 0) -> np.ndarray:
    """Share of each slice's ``k`` top-scored images that are each bug's images.

    Parameters
    ----------
    scores : array-like of shape (n_pool, n_slices)
        Membership score of each pool image in each slice (higher: more a
        member). Ties are broken in a seeded random order.
    hit : array-like of shape (n_pool, n_bugs), bool
    k : int, default=10
    seed : int, default=0

    Returns
    -------
    ndarray of shape (n_slices, n_bugs)
    """
    S = np.asarray(scores, dtype=np.float64)
    H = np.asarray(hit)
    if S.ndim != 2 or np.isnan(S).any():
        raise ValueError(f"scores must have shape (n_pool, n_slices) without NaN; "
                         f"got {describe(scores)}.")
    if H.ndim != 2 or len(H) != len(S) or H.dtype != bool:
        raise ValueError(f"hit must be a bool array of shape ({len(S)}, n_bugs); "
                         f"got {describe(hit)}.")
    k = check_int("k", k, low=1, high=max(len(S), 1))
    tie = np.random.default_rng(check_seed("seed", seed)).permutation(len(S))
    out = np.zeros((S.shape[1], H.shape[1]))
    for j in range(S.shape[1]):
        top = np.lexsort((tie, -S[:, j]))[:k]
        out[j] = H[top].mean(0)
    return out


def best_slice_precision(scores, hit, *, k: int = 10, min_precision: float = 0.5,
                         seed: int = 0) -> dict:
    """The shared metric: each bug's best precision@k over slices, and whether it is recovered.

    Parameters
    ----------
    scores : array-like of shape (n_pool, n_slices)
        No slice (``n_slices`` = 0) scores 0 for every bug.
    hit : array-like of shape (n_pool, n_bugs), bool
    k : int, default=10
    min_precision : float in (0, 1], default=0.5
        A bug is recovered when its best precision@k reaches this.
    seed : int, default=0

    Returns
    -------
    dict
        ``precision`` (per bug), ``best_slice`` (per bug; -1 without slices),
        ``recovered`` (bool per bug) and ``recovered_fraction``.
    """
    min_precision = check_number("min_precision", min_precision, low=0, high=1,
                                 low_inclusive=False)
    P = precision_at_k(scores, hit, k=k, seed=seed)
    best = P.max(0) if len(P) else np.zeros(P.shape[1])
    arg = P.argmax(0) if len(P) else np.full(P.shape[1], -1)
    rec = [bool(p >= min_precision) for p in best]
    return dict(precision=[round(float(p), 4) for p in best], best_slice=[int(a) for a in arg],
                recovered=rec, recovered_fraction=float(np.mean(rec)) if rec else 0.0)


def defuse_region_scores(regions, vae: nn.Module, X, *, accepted=None,
                         score: str = "log_density") -> np.ndarray:
    """Membership of real images in Defuse's regions, through their VAE latent codes.

    Parameters
    ----------
    regions : Regions
    vae : nn.Module
        The VAE the regions live in.
    X : Tensor of shape (n, C, H, W)
    accepted : array-like of bool of shape (n_regions,), optional
        Keep only these regions' columns (e.g. the misclassification regions).
    score : {"log_density", "responsibility"}, default="log_density"
        log N(z; μ_k, Σ_k) of the latent mean z, or the region's posterior
        π_k N(z; μ_k, Σ_k) / Σ_j π_j N(z; μ_j, Σ_j) over all regions.

    Returns
    -------
    ndarray of shape (n, n_kept)
        Columns in region order.
    """
    from scipy.special import logsumexp

    from defuse_widgets.models.inference import encode_mean
    from defuse_widgets.stages.regions import Regions

    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions; got {describe(regions)}.")
    check_module("vae", vae)
    X = check_images("X", X)
    score = check_choice("score", score, ("log_density", "responsibility"))
    keep = np.ones(len(regions), bool) if accepted is None else np.asarray(accepted)
    if keep.shape != (len(regions),) or keep.dtype != bool:
        raise ValueError(f"accepted must be a bool array of shape ({len(regions)},); "
                         f"got {describe(accepted)}.")
    Z = encode_mean(vae, X).numpy().astype(np.float64)
    if Z.shape[1] != regions.n_latent:
        raise ValueError(f"vae must encode to the regions' {regions.n_latent} latent "
                         f"dimensions; got codes of shape {Z.shape}.")
    logp = np.zeros((len(Z), len(regions)))
    for j in range(len(regions)):
        L = np.linalg.cholesky(regions.covariances[j])
        sol = np.linalg.solve(L, (Z - regions.means[j]).T)
        logp[:, j] = -0.5 * (sol ** 2).sum(0) - np.log(np.diag(L)).sum() \
            - 0.5 * Z.shape[1] * np.log(2 * np.pi)
    if score == "responsibility":
        lw = logp + np.log(np.maximum(regions.weights, 1e-300))
        logp = np.exp(lw - logsumexp(lw, axis=1, keepdims=True))
    return logp[:, keep]


def _label_review_scores(label_review, bugs, n_train):
    """Score the label review's relabelled indices, or pass its precomputed stats on."""
    if isinstance(label_review, dict):
        return {k: label_review[k] for k in ("n_contested", "n_true", "precision", "recall",
                                            "per_bug") if k in label_review}
    return label_issue_scores(label_review, bugs, n_train=n_train)


def compare_peers(planted: PlantedData, classifier: nn.Module, vae: nn.Module | None = None,
                  regions=None, accepted=None, *, n_slices: int = 5, n_components: int = 25,
                  gamma: float = 10.0, k: int = 10, min_precision: float = 0.5,
                  n_folds: int = 3, epochs: int = 3, oof_probs=None, label_review=None,
                  seed: int = 0, log=print) -> dict:
    """Score Defuse's regions and its peers on the planted bugs with the same metric.

    Slice discovery is fitted on the validation split as the user has it
    (planted labels: a mislabelled style is *correct* there) and, as an upper
    bound, with the validation split's clean labels (``*_clean_labels``).
    cleanlab runs on out-of-fold probabilities of the training split.

    Parameters
    ----------
    planted : PlantedData
    classifier : nn.Module
        Trained on ``planted.splits``; its penultimate features are the
        slice-discovery embedding (:func:`classifier_outputs`).
    vae : nn.Module, optional
        Needed with ``regions``.
    regions : Regions, optional
        Defuse's candidate regions (scored when given).
    accepted : array-like of bool of shape (n_regions,), optional
        Misclassification regions; adds ``defuse_accepted``.
    n_slices, n_components, gamma : int, int, float
        Of :class:`DominoMixture`; ``n_slices`` is also k-means' cluster count.
    k : int, default=10
    min_precision : float, default=0.5
        Recovered when the best precision@k reaches this.
    n_folds, epochs : int, default=3, 3
        Out-of-fold training for cleanlab (:func:`out_of_fold_probs`).
    oof_probs : ndarray of shape (n_train, n_classes), optional
        Precomputed out-of-fold probabilities (skips the training).
    label_review : dict or array-like, optional
        The label review to compare with: the ``label_review`` stats of
        :func:`~benchmarks.harness.planted_eval.evaluate_planted`, or
        the relabelled training indices.
    seed : int, default=0
    log : callable(str), default=print

    Returns
    -------
    dict (JSON-safe)
        ``bugs`` (names), ``k``, ``min_precision``, ``pool`` (sizes, and per
        bug ``class_share``: the share of its held-out images among the pool
        images of its class, the precision@k a slice that only knows the
        class gets on average),
        ``slices``: per method the :func:`best_slice_precision` result plus
        ``n_slices`` and ``seconds`` (fit and score; Defuse: scoring only);
        ``label_issues``: ``cleanlab`` (the :func:`label_issue_scores` result,
        ``oof_accuracy`` against the clean labels, ``n_folds`` and ``epochs``
        (None with ``oof_probs``) and ``seconds``, out-of-fold training
        included) and ``label_review`` when given.
    """
    if not isinstance(planted, PlantedData):
        raise TypeError(f"planted must be a PlantedData; got {describe(planted)}.")
    check_module("classifier", classifier)
    if regions is not None and vae is None:
        raise ValueError("vae must be given to score regions; got vae=None.")
    check_seed("seed", seed)
    k = check_int("k", k, low=1)
    min_precision = check_number("min_precision", min_precision, low=0, high=1,
                                 low_inclusive=False)
    s = planted.splits
    X_pool, y_pool, hit = evaluation_pool(planted)
    class_share = [float(hit[:, j].sum() / max((y_pool == b.source_class).sum(), 1))
                   for j, b in enumerate(planted.bugs)]
    out = dict(bugs=[b.name for b in planted.bugs], k=k, min_precision=min_precision,
               pool=dict(n=len(y_pool), n_test=len(s.y_test),
                         n_held_out=[int(h) for h in hit.sum(0)],
                         class_share=[round(c, 4) for c in class_share]),
               slices={}, label_issues={})
    metric = dict(k=k, min_precision=min_precision, seed=seed)
    F_val, P_val = classifier_outputs(classifier, s.X_val)
    F_pool, P_pool = classifier_outputs(classifier, X_pool)
    y_val = {"": s.y_val.numpy(),
             "_clean_labels": planted.y_pool[planted.val_pool_index]}
    for suffix, yv in y_val.items():
        for name, est in (("domino", DominoMixture(n_slices=n_slices, n_components=n_components,
                                                   gamma=gamma, seed=seed)),
                          ("kmeans_errors", ErrorKMeans(n_slices=n_slices, seed=seed))):
            t = time.perf_counter()
            S = est.fit(F_val, yv, P_val).predict_proba(F_pool, y_pool, P_pool)
            out["slices"][name + suffix] = dict(
                **best_slice_precision(S, hit, **metric), n_slices=int(S.shape[1]),
                seconds=round(time.perf_counter() - t, 2))
    if regions is not None:
        for name, keep in (("defuse", None), ("defuse_accepted", accepted)):
            if name == "defuse_accepted" and accepted is None:
                continue
            t = time.perf_counter()
            S = defuse_region_scores(regions, vae, X_pool, accepted=keep)
            out["slices"][name] = dict(**best_slice_precision(S, hit, **metric),
                                       n_slices=int(S.shape[1]),
                                       seconds=round(time.perf_counter() - t, 2))
    t, given = time.perf_counter(), oof_probs is not None
    if not given:
        oof_probs = out_of_fold_probs(s.X_train, s.y_train, n_folds=n_folds, epochs=epochs,
                                      seed=seed)
    flagged = cleanlab_label_issues(s.y_train.numpy(), oof_probs)
    clean = planted.clean_train_labels()
    out["label_issues"]["cleanlab"] = dict(
        **label_issue_scores(flagged, planted.bugs, n_train=len(s.y_train)),
        oof_accuracy=round(float((oof_probs.argmax(1) == clean).mean()), 4),
        n_folds=None if given else n_folds, epochs=None if given else epochs,
        seconds=round(time.perf_counter() - t, 1))
    if label_review is not None:
        out["label_issues"]["label_review"] = _label_review_scores(label_review, planted.bugs,
                                                                   len(s.y_train))
    for name, r in out["slices"].items():
        log(f"  [peers] {name}: precision@{k} {r['precision']}, recovered "
            f"{r['recovered_fraction']:.2f} ({r['n_slices']} slices, {r['seconds']} s)")
    cl = out["label_issues"]["cleanlab"]
    log(f"  [peers] cleanlab: {cl['n_flagged']} flagged, precision {cl['precision']:.2f}, "
        f"recall {cl['recall']:.2f} ({cl['seconds']} s)")
    return out
