"""Choosing λ in the correction sweep, with the uncertainty of the validation sets.

The paper picks the fine-tuned model by validation accuracy (SVHN, GTSRB)
or by accuracy on D ∪ D_f (MNIST). Neither looks at the regions, so both can
keep a model that fixes nothing. The default rule here, ``"interval"``:

1. compares each candidate with the model before fine-tuning *image by image*
   on the validation set: with ``lost`` images it gets wrong that the model
   before got right and ``gained`` the reverse, out of n, the change in
   accuracy is (gained − lost) / n, with the paired (McNemar-type) Wald
   interval ± z·√(gained + lost − (gained − lost)²/n) / n;
2. keeps the candidates whose validation change is *not significantly below*
   zero (the interval's upper end is ≥ 0);
3. of those, takes the best region-validation accuracy (ties: better
   validation, then the smaller λ).

The same paired interval on the region-validation set says whether the
chosen model *fixes* the regions: its lower end must be above zero. When it
is not, :func:`verdict` says so plainly, whatever rule chose the model.

A fixed tolerance (the earlier ``"balanced"`` rule, kept for old sessions)
means different things on different sets: 0.005 on 500 validation images is
2.5 images, which is noise, and it picked a λ that left region accuracy at
16 % when a λ costing an insignificant 1.3 points reached 96 %.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["SELECTIONS", "change_fields", "paired_change", "rank", "score", "selection_sets",
           "verdict"]

#: Model-selection rules of :class:`~defuse_widgets.stages.correction.Corrector`.
SELECTIONS = ("interval", "balanced", "validation", "training")

#: The sets whose per-image changes are measured against the model before fine-tuning.
PAIRED_SETS = ("validation", "region_validation")


def paired_change(before: np.ndarray, after: np.ndarray, confidence: float = 0.95) -> dict:
    """The change in accuracy from ``before`` to ``after`` on the same images, with its interval.

    Parameters
    ----------
    before, after : ndarray of shape (n,), bool
        Whether each image was classified right before and after fine-tuning.
    confidence : float, default=0.95
        Two-sided level of the interval.

    Returns
    -------
    dict
        ``change``, ``low``, ``high`` (accuracy differences, clipped to [-1, 1]) and
        the counts ``n``, ``lost``, ``gained``.
    """
    before, after = np.asarray(before, bool), np.asarray(after, bool)
    n = len(before)
    lost, gained = int((before & ~after).sum()), int((~before & after).sum())
    if n == 0:
        return dict(change=0.0, low=0.0, high=0.0, n=0, lost=0, gained=0)
    d = gained - lost
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(max(gained + lost - d * d / n, 0.0)) / n
    return dict(change=d / n, low=max(d / n - half, -1.0), high=min(d / n + half, 1.0), n=n,
                lost=lost, gained=gained)


def change_fields(name: str, change: dict) -> dict:
    """A :func:`paired_change` as flat record fields: ``<name>_change``, ``<name>_change_low``,
    ``<name>_change_high``, ``<name>_lost``, ``<name>_gained``.
    """
    return {f"{name}_change": change["change"], f"{name}_change_low": change["low"],
            f"{name}_change_high": change["high"], f"{name}_lost": change["lost"],
            f"{name}_gained": change["gained"]}


def _change(rec: dict, name: str) -> dict:
    return {k: rec[f"{name}_change{s}"] for k, s in (("change", ""), ("low", "_low"),
                                                     ("high", "_high"))}


def selection_sets(selection: str) -> tuple:
    """The eval sets the rule scores every epoch on (``finetune``/``training``: D_f, D ∪ D_f)."""
    return {"interval": PAIRED_SETS, "balanced": PAIRED_SETS, "validation": ("validation",),
            "training": ("finetune", "training")}[selection]


def score(selection: str, rec: dict) -> float:
    """One number per record (larger is better): what successive halving ranks by."""
    if selection in ("interval", "balanced"):
        return 0.5 * (rec["validation"] + rec["region_validation"])
    return rec[selection]


def _keeps_validation(rec: dict) -> bool:
    return rec["validation_change_high"] >= 0


def rank(selection: str, rec: dict, before: dict, tolerance: float) -> tuple:
    """Sort key of a record under the rule (larger is better; ties go to the smaller λ)."""
    if selection == "interval":
        ok = _keeps_validation(rec)
        return ((ok, rec["region_validation"], rec["validation"]) if ok
                else (ok, rec["validation_change_high"], rec["region_validation"]))
    if selection == "balanced":
        ok = rec["validation"] >= before["validation"] - tolerance
        return (ok, rec["region_validation"] if ok else rec["score"], 0.0)
    return (True, rec["score"], 0.0)


def verdict(best: dict | None, confidence: float, *, tolerance: float | None = None) -> dict:
    """Did the selected model fix the regions without a significant validation loss?

    Parameters
    ----------
    best : dict or None
        The selected record, with the :func:`change_fields` of
        ``validation`` and ``region_validation``.
    confidence : float
    tolerance : float, optional
        The ``"balanced"`` rule's allowed validation drop, which then replaces
        the significance test on validation (a user who set it accepted it).

    Returns
    -------
    dict
        ``corrected`` (bool, or None when the sweep lacks the paired sets)
        and ``message``, a sentence for people.
    """
    if best is None or not {"region_validation_change", "validation_change"} <= set(best):
        return dict(corrected=None, message="Without validation and region-validation sets "
                                            "nobody can tell whether the regions were fixed.")
    reg, val = _change(best, "region_validation"), _change(best, "validation")
    pts = lambda c: (f"{100 * c['change']:+.1f} points ({confidence:.0%} interval "  # noqa: E731
                     f"{100 * c['low']:+.1f} to {100 * c['high']:+.1f})")
    keeps = val["high"] >= 0 if tolerance is None else val["change"] >= -tolerance
    loss = ("not a significant loss" if tolerance is None
            else f"within the allowed drop of {100 * tolerance:g} points")
    if reg["low"] > 0 and keeps:
        return dict(corrected=True, message=(
            f"λ = {best['lam']:g} fixes the regions: region-validation accuracy "
            f"{pts(reg)}, validation accuracy {pts(val)}, {loss}."))
    why = ("its region-validation change is not significantly above zero"
           if keeps else "its validation loss is significant" if tolerance is None
           else "its validation loss exceeds the allowed drop")
    return dict(corrected=False, message=(
        f"No λ fixes the regions without a significant validation loss. The best "
        f"candidate, λ = {best['lam']:g}, changes region-validation accuracy by {pts(reg)} "
        f"and validation accuracy by {pts(val)}: {why}. The model is not saved as "
        f"corrected; pick a λ by hand if the trade-off is worth it to you."))
