"""Failure data: review sets to label, and D_f built from the accepted regions (paper §3.3).

Annotators judge each distilled region from a small *review set* sampled from
N(μ_k, τΣ_k) and decoded (paper §4.1: 10 samples per region). Once a region is
accepted as a misclassification region, Q more samples of it, all carrying the
region's majority label, form its part of the failure data D_f; further
samples of it make the region validation and region test sets that measure
correction (paper Fig. 4 and 5).

Every sample is drawn with a seed derived from ``seed`` and the region index,
so the same arguments always give the same images, in any process.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from defuse_widgets._validation import (
    check_int,
    check_module,
    check_number,
    check_seed,
    describe,
    resolve_device,
)
from defuse_widgets.models.inference import predict
from defuse_widgets.stages.labeling import RegionDecision
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.persistence import SessionFormatError, load_npz, save_npz

__all__ = ["FAILURE_SETS", "build_failure_sets", "export_failure_data", "load_failure_data",
           "review_seed", "review_set"]

#: Names of the sets :func:`build_failure_sets` returns, in the order their seeds are derived.
FAILURE_SETS = ("finetune", "region_validation", "region_test")


def review_seed(region: int, seed: int = 0) -> int:
    """Seed of region ``region``'s review set; the failure sets use the next three seeds."""
    return int(seed) * 1000 + 10 * int(region)


def _device_of(module: nn.Module, device: Any) -> torch.device:
    """``device`` resolved, or the device of ``module``'s parameters when None."""
    if device is not None:
        return resolve_device(device)
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _check_regions(regions: Any) -> Regions:
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions object (from distillation); "
                        f"got {describe(regions)}.")
    return regions


def review_set(regions: Regions, region: int, decoder: nn.Module, classifier: nn.Module, *,
               size: int = 10, tau: float = 0.5, seed: int = 0,
               device: Any = None) -> tuple[torch.Tensor, np.ndarray]:
    """Decode a region's review set and predict it with the classifier.

    Parameters
    ----------
    regions : Regions
    region : int
        Region index in ``[0, len(regions))``.
    decoder : BetaVAE or any module with ``decode(z)``
    classifier : nn.Module
    size : int, default=10
        Review samples per region (paper: 10).
    tau : float, default=0.5
        Sample diversity τ of N(μ, τΣ).
    seed : int, default=0
        Base seed; the region's own seed is :func:`review_seed` ``(region, seed)``.
    device : str or torch.device, optional
        Where to decode and predict; by default the decoder's device.

    Returns
    -------
    images : Tensor of shape (size, C, H, W), on CPU
    predicted : ndarray of shape (size,), int64
        The classifier's prediction on each review sample.

    Examples
    --------
    >>> images, predicted = review_set(regions, 0, vae, clf)  # doctest: +SKIP
    >>> store.set_review_set(0, predicted)  # doctest: +SKIP
    """
    regions = _check_regions(regions)
    size = check_int("size", size, low=1)
    check_seed("seed", seed)
    dev = _device_of(decoder, device)
    _, images = regions.decode(region, size, decoder, tau=tau, seed=review_seed(region, seed),
                               device=dev)
    predicted = predict(classifier, images, device=dev).numpy().astype(np.int64)
    return images, predicted


def _accepted(regions: Regions, decisions: Iterable[RegionDecision]) -> list[RegionDecision]:
    if isinstance(decisions, (str, bytes, dict)) or not hasattr(decisions, "__iter__"):
        raise TypeError(f"decisions must be a list of RegionDecision objects (from "
                        f"labeling.decide); got {describe(decisions)}.")
    out = []
    for d in decisions:
        if not isinstance(d, RegionDecision):
            raise TypeError(f"decisions must hold RegionDecision objects (from "
                            f"labeling.decide); got {describe(d)}.")
        if not d.is_misclassification_region:
            continue
        if not 0 <= d.region < len(regions):
            raise ValueError(f"decisions must name regions in [0, {len(regions) - 1}]; "
                             f"got region {d.region}.")
        if d.label is None or not 0 <= d.label < regions.n_classes:
            raise ValueError(f"decisions must give every accepted region a class label in "
                             f"[0, {regions.n_classes - 1}]; region {d.region} has {d.label}.")
        out.append(d)
    return out


def build_failure_sets(regions: Regions, decisions: Iterable[RegionDecision],
                       vae: nn.Module, *, n_finetune: int = 256, n_region_test: int = 256,
                       tau: float = 0.5, seed: int = 0, device: Any = None,
                       sets: Sequence[str] = FAILURE_SETS) -> dict:
    """Decode D_f and the region validation / test sets of the accepted regions.

    Parameters
    ----------
    regions : Regions
    decisions : iterable of RegionDecision
        As from :func:`~defuse_widgets.stages.labeling.decide`; only regions with
        ``is_misclassification_region`` contribute, labelled with ``label``.
    vae : BetaVAE or any module with ``decode(z)``
    n_finetune : int, default=256
        Samples per accepted region in D_f (Q in paper §3.3).
    n_region_test : int, default=256
        Samples per accepted region in each of region validation and region test.
    tau : float, default=0.5
    seed : int, default=0
        Base seed; set ``j`` of region ``k`` uses ``review_seed(k, seed) + j + 1``,
        so no set shares samples with the review set or another set.
    device : str or torch.device, optional
        Where to decode; by default the VAE's device.
    sets : sequence of str, default=FAILURE_SETS
        Which of ``"finetune"``, ``"region_validation"``, ``"region_test"`` to build.

    Returns
    -------
    dict of str -> (Tensor of shape (n, C, H, W), Tensor of shape (n,))
        One ``(X, y)`` pair per requested set, on CPU, regions in the order of
        ``decisions``; empty when no region is accepted.

    Examples
    --------
    >>> sets = build_failure_sets(regions, decide(store), vae)  # doctest: +SKIP
    >>> X_f, y_f = sets["finetune"]  # doctest: +SKIP
    """
    regions = _check_regions(regions)
    n_finetune = check_int("n_finetune", n_finetune, low=1)
    n_region_test = check_int("n_region_test", n_region_test, low=1)
    check_number("tau", tau, low=0, low_inclusive=False)
    check_seed("seed", seed)
    check_module("vae", vae)
    if isinstance(sets, str) or not isinstance(sets, (list, tuple)):
        raise TypeError(f"sets must be a list or tuple of set names; got {describe(sets)}.")
    unknown = [s for s in sets if s not in FAILURE_SETS]
    if unknown or not sets:
        raise ValueError(f"sets must name some of {list(FAILURE_SETS)}; got {list(sets)}.")
    accepted = _accepted(regions, decisions)
    dev = _device_of(vae, device)
    out = {}
    for j, name in enumerate(FAILURE_SETS):
        if name not in sets or not accepted:
            continue
        n = n_finetune if name == "finetune" else n_region_test
        xs, ys = [], []
        for d in accepted:
            _, images = regions.decode(d.region, n, vae, tau=tau,
                                       seed=review_seed(d.region, seed) + j + 1, device=dev)
            xs.append(images)
            ys.append(torch.full((n,), d.label, dtype=torch.long))
        out[name] = (torch.cat(xs), torch.cat(ys))
    return out


def export_failure_data(path: str | os.PathLike, regions: Regions,
                        decisions: Iterable[RegionDecision], vae: nn.Module, *,
                        n_finetune: int = 256, tau: float = 0.5, seed: int = 0,
                        device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Build D_f of the accepted regions and save it as an ``.npz`` file.

    The file is written to a temporary name next to ``path`` and then renamed,
    so a reader never sees a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination, conventionally ending in ``.npz``; its folder is created.
    regions, decisions, vae, n_finetune, tau, seed, device
        As in :func:`build_failure_sets`.

    Returns
    -------
    X_f : Tensor of shape (n_accepted * n_finetune, C, H, W)
    y_f : Tensor of shape (n_accepted * n_finetune,)
        Also saved as arrays ``X_f`` (float32), ``y_f`` (int64) and ``region``
        (int64, the region of each sample).

    Raises
    ------
    ValueError
        When no region is accepted as a misclassification region.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming an .npz file; "
                        f"got {describe(path)}.")
    decisions = list(decisions)
    sets = build_failure_sets(regions, decisions, vae, n_finetune=n_finetune, tau=tau,
                              seed=seed, device=device, sets=("finetune",))
    if not sets:
        raise ValueError("decisions must accept at least one misclassification region to "
                         f"export D_f; none of the {len(decisions)} decisions does.")
    X_f, y_f = sets["finetune"]
    region = np.repeat([d.region for d in _accepted(regions, decisions)], n_finetune)
    save_npz(path, dict(X_f=X_f.numpy().astype(np.float32), y_f=y_f.numpy().astype(np.int64),
                        region=region.astype(np.int64)))
    return X_f, y_f


def load_failure_data(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``(X_f, y_f)`` saved by :func:`export_failure_data` as tensors.

    Returns
    -------
    X_f : Tensor of shape (n_f, C, H, W), float32
    y_f : Tensor of shape (n_f,), int64

    Raises
    ------
    SessionFormatError
        When the file is missing, truncated, holds pickles or inconsistent arrays.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming an .npz file; "
                        f"got {describe(path)}.")
    data = load_npz(path, required=("X_f", "y_f"))
    X_f, y_f = data["X_f"], data["y_f"]
    if (X_f.ndim != 4 or X_f.dtype != np.float32 or y_f.shape != (len(X_f),)
            or y_f.dtype != np.int64):
        raise SessionFormatError(path, f"file must hold X_f of shape (n, C, H, W), float32, "
                                 f"and y_f of shape (n,), int64; got {describe(X_f)} and "
                                 f"{describe(y_f)}.")
    return torch.from_numpy(X_f), torch.from_numpy(y_f)
