"""What a region looks like: samples of N(μ, τΣ) decoded and classified (paper §4.1).

The region gallery shows these; the core computes them, so a script, a report
or a test gets the same samples for the same (region, τ, resample count).
This module imports no UI code.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from defuse_widgets.models.inference import decode, predict
from defuse_widgets.models.precision import autocast
from defuse_widgets.models.saliency import smoothgrad
from defuse_widgets.stages.regions import Regions

__all__ = ["RegionPreview", "SALIENCY_COPIES", "decode_and_predict", "preview_regions",
           "sample_seed"]

#: Noisy copies SmoothGrad averages per sample in a preview: eight keep saliency on
#: all 19 regions of the quickstart (304 samples) near a second on a 2-core CPU
#: (docs/benchmarks/browser.md); maps of 8 and 16 copies correlate at about 0.97.
SALIENCY_COPIES = 8


def sample_seed(region: int, tau: float, resample_count: int) -> int:
    """Seed of the samples shown for ``(region, tau, resample_count)``.

    Deterministic across sessions (``zlib.crc32``, not Python's salted
    ``hash``), so moving the τ slider back to a position shows the same images.

    Examples
    --------
    >>> sample_seed(0, 0.5, 0) == sample_seed(0, 0.5, 0) != sample_seed(0, 0.5, 1)
    True
    """
    return zlib.crc32(f"{int(region)}|{float(tau)!r}|{int(resample_count)}".encode())


@dataclass(frozen=True)
class RegionPreview:
    """Decoded samples of one region.

    Attributes
    ----------
    region : int
    images : Tensor of shape (n, C, H, W)
        Decodes, values in [0, 1].
    predicted : list of int, length n
        The classifier's class for each.
    saliency : ndarray of shape (n, H, W) or None
        SmoothGrad of each image for its predicted class, when asked for.
    """

    region: int
    images: torch.Tensor
    predicted: list
    saliency: np.ndarray | None = None


def decode_and_predict(vae, classifier, codes, *, precision: str = "fp32",
                       batch_size: int = 64) -> tuple:
    """Decode ``codes`` (n, n_latent) and classify the decodes: ``(images, predicted)``.

    One decoder pass for all codes; small classifier batches (64 run faster than
    320 on a CPU).
    """
    images = decode(vae, torch.as_tensor(codes, dtype=torch.float32))
    with autocast(precision):
        predicted = predict(classifier, images, batch_size=batch_size).tolist()
    return images, predicted


def preview_regions(regions: Regions, vae, classifier, ks: Sequence[int], *, n: int,
                    tau: float, resample_count: int = 0, saliency: bool = False,
                    precision: str = "fp32") -> list[RegionPreview]:
    """``n`` decoded samples of each region in ``ks``, seeded by :func:`sample_seed`.

    Parameters
    ----------
    regions : Regions
    vae : BetaVAE or any module with ``decode(z)``
    classifier : nn.Module
    ks : sequence of int
        The regions, in the order returned.
    n : int
        Samples per region.
    tau : float
        Sample diversity τ of N(μ, τΣ).
    resample_count : int, default=0
        Another draw of the same (region, τ) for each count.
    saliency : bool, default=False
        Also SmoothGrad each sample for its predicted class
        (:data:`SALIENCY_COPIES` noisy copies, in ``precision``).
    precision : {"auto", "fp32", "bf16"}, default="fp32"
        The classifier's precision.

    Returns
    -------
    list of RegionPreview
    """
    ks = list(ks)
    codes = np.concatenate([regions.sample(k, n, tau=tau, seed=sample_seed(k, tau,
                                                                          resample_count))
                            for k in ks])
    images, predicted = decode_and_predict(vae, classifier, codes, precision=precision)
    maps = None
    if saliency:
        with autocast(precision):
            maps = smoothgrad(classifier, images, target=predicted, n_samples=SALIENCY_COPIES,
                              batch_size=128)
    return [RegionPreview(k, images[i * n:(i + 1) * n], predicted[i * n:(i + 1) * n],
                          None if maps is None else maps[i * n:(i + 1) * n])
            for i, k in enumerate(ks)]
