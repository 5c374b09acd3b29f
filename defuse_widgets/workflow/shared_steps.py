"""The steps every entry point shares, each defined once.

* :func:`annotate_regions`: an annotator with the simulated annotator's
  interface votes on every region's review set, through the session's store.
* :func:`correction_data`: D_f, the region validation and test sets, the
  validation and test splits, and the baseline set.
* :func:`baseline_set`: the paper's baseline (Figure 4, "Unrestricted
  adversarial examples"): a seeded random subset of the adversarial examples,
  as many as D_f holds, decoded and **labelled one by one by the annotator**;
  those it calls "none of the above" are dropped. Without an annotator that
  labels single images there is no baseline (as for the paper's GTSRB).

This module imports no UI code.
"""
from __future__ import annotations

import numpy as np
import torch

from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.seeding import seeded_subset
from defuse_widgets.workflow.memo import digest

__all__ = ["annotate_regions", "baseline_set", "correction_data"]


def annotate_regions(session, annotator, *, callback: ProgressCallback | None = None) -> bool:
    """Let ``annotator`` vote on every region's review set; votes go to the session's store.

    Parameters
    ----------
    session : Session
    annotator : SimulatedAnnotator or alike
        With ``annotate(store, region, images)``.
    callback : ProgressCallback, optional
        ``callback("labeling", regions done, n_regions)``; True stops.

    Returns
    -------
    bool
        False when ``callback`` stopped it (the votes cast so far are kept).
    """
    regions = session.load_regions()
    store = session.open_store()
    for k in range(len(regions)):
        images, predicted = session.review_set(k, regions)
        store.set_review_set(k, predicted)
        annotator.annotate(store, k, images)
        if callback is not None and callback("labeling", k + 1, len(regions)):
            return False
    return True


def baseline_set(session, n: int):
    """The paper's baseline set: ``n`` adversarial examples labelled one by one.

    Parameters
    ----------
    session : Session
        Its saved adversarial examples, VAE, seed and simulated annotator.
    n : int
        How many to draw (D_f's size).

    Returns
    -------
    (X_adv, y_adv) or None
        Tensors of shape (m, C, H, W) and (m,), m ≤ n (the annotator's "none of
        the above" answers are dropped); None without an oracle, or when
        ``config.baseline`` is False.
    """
    from defuse_widgets.models.inference import decode
    from defuse_widgets.stages.annotators import SimulatedAnnotator

    annotator = session.simulated_annotator() if session.config.baseline else None
    if annotator is None:
        return None
    adv = session.load_adversarial()
    if adv is None or len(adv) == 0:
        return None
    seed = session.config.seed

    def compute():
        pick = seeded_subset(len(adv), n, seed)
        X_adv = decode(session.vae, torch.from_numpy(adv.codes[pick]))
        y_adv = torch.from_numpy(np.asarray(annotator.label(X_adv)))
        keep = y_adv >= 0
        return X_adv[keep], y_adv[keep]

    if not isinstance(annotator, SimulatedAnnotator):
        return compute()   # another annotator may answer differently each time
    crowd = (id(annotator.oracle), annotator.n_workers, annotator.error_rate,
             annotator.none_threshold, annotator.seed)
    return session.memo.get(("baseline_set", digest(adv.codes), n, seed, crowd), compute)


def correction_data(session) -> dict:
    """Everything the correction arms need, from the session's saved decisions.

    Returns
    -------
    dict
        ``X_f`` (n_f, C, H, W), ``y_f`` (n_f,), ``eval_sets`` (``validation``,
        ``test``, ``region_validation``, ``region_test``: name -> (X, y)),
        ``X_adv`` and ``y_adv`` (the baseline set, None without one).

    Raises
    ------
    ValueError
        When no region is accepted as a misclassification region.
    """
    from defuse_widgets.stages.failure_data import build_failure_sets

    c, data = session.config, session.data
    decisions = session.load_decisions()
    if decisions is None:
        decisions = session.decide()
    sets = build_failure_sets(session.load_regions(), decisions, session.vae,
                              n_finetune=c.n_finetune, n_region_test=c.n_region_test,
                              tau=c.tau, seed=c.seed, device="cpu")
    if not sets:
        raise ValueError("decisions must accept at least one misclassification region; none "
                         f"does (a region is accepted when more than rho={c.rho:g} of its "
                         "votes disagree with the classifier; vote first).")
    X_f, y_f = sets.pop("finetune")
    base = session.baseline_set(len(y_f))
    X_adv, y_adv = base if base is not None else (None, None)
    return dict(X_f=X_f, y_f=y_f, X_adv=X_adv, y_adv=y_adv, eval_sets={
        "validation": (data.X_val, data.y_val), "test": (data.X_test, data.y_test), **sets})
