"""Numeric precision of forward and backward passes: bf16 autocast or fp32.

bf16 autocast roughly doubles the throughput of the decoder and classifier on
CPUs with AVX-512 BF16 or AMX units (and on recent GPUs) at almost no cost in
decisions (docs: "Speed"). ``"auto"`` picks bf16 where the
hardware has such units and fp32 elsewhere; ``"fp32"`` keeps full precision.
Weights, codes and results always stay fp32: only the matrix products run
in bf16. Decisions that bf16 could get wrong are made again in fp32
(:func:`guarded_argmax`), so a bf16 run takes the same decisions as an fp32
one.
"""
from __future__ import annotations

import contextlib

import torch

from defuse_widgets._validation import check_choice

__all__ = ["GUARD", "PRECISIONS", "autocast", "bf16_native", "guarded_argmax",
           "resolve_precision"]

#: Accepted values of every ``precision`` parameter.
PRECISIONS = ("auto", "bf16", "fp32")

#: Logit margin (top-1 minus top-2) under which a bf16 argmax is computed again
#: in fp32. Measured on the shipped decoder and classifier (35,000 decodes) and
#: on a sweep's evaluation sets (9,180 images): no single logit moved by more
#: than 0.094 under bf16, so a decision can flip only when the two logits'
#: errors add up to more than the margin, and 0.25 leaves 1.3x headroom over
#: the worst pair seen. About 1 % of decodes and a tenth of the near-boundary
#: region sets fall under it (docs: "Speed").
GUARD = 0.25


def bf16_native(device: torch.device | str = "cpu") -> bool:
    """True when ``device`` runs bf16 matrix products in hardware.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: AVX-512 BF16 or AMX tiles
    (elsewhere bf16 on the CPU is emulated and slower than fp32).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """Return ``"bf16"`` or ``"fp32"`` for ``precision`` on ``device``.

    Parameters
    ----------
    precision : {"auto", "bf16", "fp32"}
        ``"auto"`` is bf16 where :func:`bf16_native` holds.
    device : torch.device or str

    Raises
    ------
    ValueError
        When ``precision`` is not one of :data:`PRECISIONS`.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device | str = "cpu"):
    """A context manager running ops in bf16 when ``precision`` resolves to it.

    Parameters
    ----------
    precision : {"auto", "bf16", "fp32"}
    device : torch.device or str
    """
    device = torch.device(device)
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def guarded_argmax(fast, exact, inputs: torch.Tensor, *, batch_size: int,
                   guard: float = GUARD) -> tuple[torch.Tensor, int]:
    """Argmax of logits computed by ``fast``, with close calls re-made by ``exact``.

    Parameters
    ----------
    fast : callable
        Maps a batch of ``inputs`` to logits (m, n_classes), e.g. under bf16
        autocast.
    exact : callable
        The same map in fp32; it sees only the rows whose ``fast`` margin
        between the two largest logits is below ``guard``.
    inputs : Tensor of shape (n, ...)
    batch_size : int
        Rows per call of ``fast`` and of ``exact``.
    guard : float, default=GUARD
        0 trusts ``fast`` everywhere; ``inf`` re-makes every decision.

    Returns
    -------
    pred : Tensor of shape (n,), int64, on the CPU
    n_rechecked : int
        Rows that went through ``exact``.
    """
    preds, close = [], []
    for i in range(0, len(inputs), batch_size):
        logits = fast(inputs[i:i + batch_size]).float()
        preds.append(logits.argmax(1).cpu())
        if guard > 0 and logits.shape[1] > 1:   # guard 0: no margins to compute
            top = logits.topk(2, dim=1).values
            close.append(((top[:, 0] - top[:, 1]) < guard).cpu())
    if not preds:
        return torch.zeros(0, dtype=torch.long), 0
    pred = torch.cat(preds)
    idx = torch.cat(close).nonzero()[:, 0] if close else torch.zeros(0, dtype=torch.long)
    for i in range(0, len(idx), batch_size):
        rows = idx[i:i + batch_size]
        pred[rows] = exact(inputs[rows.to(inputs.device)]).float().argmax(1).cpu()
    return pred, len(idx)
