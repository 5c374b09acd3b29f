"""Numeric precision of forward and backward passes: bf16 autocast or fp32.

bf16 autocast roughly doubles the throughput of the decoder and classifier on
CPUs with AVX-512 BF16 or AMX units (and on recent GPUs) at almost no cost in
decisions (see the README's benchmarks). ``"auto"`` picks bf16 where the
hardware has such units and fp32 elsewhere; ``"fp32"`` keeps full precision.
Weights, codes and results always stay fp32: only the matrix products run
in bf16.
"""
from __future__ import annotations

import contextlib

import torch

from defuse_widgets._validation import check_choice

__all__ = ["PRECISIONS", "autocast", "bf16_native", "resolve_precision"]

#: Accepted values of every ``precision`` parameter.
PRECISIONS = ("auto", "bf16", "fp32")


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
