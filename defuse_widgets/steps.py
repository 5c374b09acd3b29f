"""Stage helpers of the dashboard's session: identification in steps, subsets, D_f.

:func:`identify_in_steps` reports progress between slices of the training
set (so a widget can show it and stop it); :func:`map_subset` picks the codes
a latent map shows; :func:`correction_data` gathers what a λ sweep needs.
This module imports no UI code.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ._validation import check_int
from .identification import AdversarialExamples, identify
from .regions import Regions

__all__ = ["StepCallback", "correction_data", "identify_in_steps", "map_subset"]

#: ``callback(n_done, n_total) -> bool | None``; a True return stops the work.
StepCallback = Callable[[int, int], "bool | None"]


def identify_in_steps(classifier: torch.nn.Module, vae: torch.nn.Module, X, y, *, Q: int,
                      a: float, b: float, max_per_instance: int | None = 100,
                      centered: bool = True, seed: int = 0, batch_size: int = 4096,
                      n_steps: int = 20, device: Any = None,
                      callback: StepCallback | None = None) -> AdversarialExamples | None:
    """Run :func:`~defuse_widgets.identification.identify` over slices of X, reporting progress.

    The slices share one random generator and a whole number of identify's
    chunks, so the result equals ``identify(..., seed=seed)`` on all of X.

    Parameters
    ----------
    classifier, vae, X, y, Q, a, b, max_per_instance, centered, seed, batch_size, device
        As in :func:`~defuse_widgets.identification.identify`; X has shape
        (n, C, H, W), y shape (n,).
    n_steps : int, default=20
        About how many slices (progress reports) to use.
    callback : callable, optional
        ``callback(n_done, n_total)`` after each slice; returning True stops.

    Returns
    -------
    AdversarialExamples or None
        None when ``callback`` stopped the work.
    """
    Q = check_int("Q", Q, low=1)
    n_steps = check_int("n_steps", n_steps, low=1)
    seed = check_int("seed", seed)
    n = len(X)
    chunk = max(1, check_int("batch_size", batch_size, low=1) // Q)
    step = chunk * max(1, math.ceil(n / chunk / n_steps))
    rng = np.random.default_rng(seed)   # identify continues this generator slice by slice
    parts = []
    for start in range(0, max(n, 1), step):
        part = identify(classifier, vae, X[start:start + step], y[start:start + step], Q=Q,
                        a=a, b=b, max_per_instance=max_per_instance, centered=centered,
                        chunk_size=chunk, batch_size=batch_size, seed=rng, device=device,
                        progress=False)
        parts.append((start, part))
        if callback is not None and callback(min(start + step, n), n):
            return None
    params = dict(parts[0][1].params, seed=seed,
                  n_misclassified=sum(p.params["n_misclassified"] for _, p in parts))
    cat = [np.concatenate([getattr(p, f) for _, p in parts])
           for f in ("codes", "true_label", "predicted_label", "noise_norm")]
    source = np.concatenate([p.source_index + start for start, p in parts]).astype(np.int64)
    return AdversarialExamples(cat[0], source, cat[1], cat[2], cat[3],
                               sum(p.n_decoded for _, p in parts), params)


def map_subset(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` of ``n`` items (all if None).

    Returns
    -------
    ndarray of shape (min(n, size),), int64
    """
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    size = check_int("size", size, low=1)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False)).astype(np.int64)


def correction_data(regions: Regions, decisions, vae: torch.nn.Module, data, *,
                    n_finetune: int = 256, n_region_test: int = 256, tau: float = 0.5,
                    seed: int = 0, baseline_from: AdversarialExamples | None = None) -> dict:
    """Everything a λ sweep needs: D_f, the eval sets and optionally a baseline set.

    Parameters
    ----------
    regions : Regions
    decisions : list of RegionDecision
        As from :func:`~defuse_widgets.labeling.decide`; at least one accepted.
    vae : BetaVAE or any module with ``decode(z)``
    data : DataSplits
        Its validation and test splits become the ``validation`` and ``test`` eval sets.
    n_finetune, n_region_test, tau, seed
        As in :func:`~defuse_widgets.failure_data.build_failure_sets`.
    baseline_from : AdversarialExamples, optional
        When given, ``len(y_f)`` of its examples (a seeded subset), decoded and
        labelled with their source image's class, form the baseline set.

    Returns
    -------
    dict
        ``X_f`` (n_f, C, H, W), ``y_f`` (n_f,), ``eval_sets`` (name -> (X, y)),
        ``X_adv`` and ``y_adv`` (None without ``baseline_from``).
    """
    from .failure_data import build_failure_sets
    from .inference import decode

    sets = build_failure_sets(regions, decisions, vae, n_finetune=n_finetune,
                              n_region_test=n_region_test, tau=tau, seed=seed, device="cpu")
    if not sets:
        raise ValueError("decisions must accept at least one misclassification region; "
                         "none does (vote in the Labeling tab first).")
    X_f, y_f = sets.pop("finetune")
    out = dict(X_f=X_f, y_f=y_f, X_adv=None, y_adv=None, eval_sets={
        "validation": (data.X_val, data.y_val), "test": (data.X_test, data.y_test), **sets})
    if baseline_from is not None and len(baseline_from):
        pick = map_subset(len(baseline_from), len(y_f), seed)
        out["X_adv"] = decode(vae, torch.from_numpy(baseline_from.codes[pick]))
        out["y_adv"] = torch.from_numpy(baseline_from.true_label[pick])
    return out
