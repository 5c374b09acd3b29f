"""What a model takes and returns, read off its layers and tried on zeros.

Bad input is named at the API boundary with both sides of a mismatch: the
images' shape against the shape a classifier or encoder takes, a region's
latent size against the one a decoder takes, logits against a tuple. These
helpers find the expected side for any ``nn.Module`` (TorchScript included):
an ``n_latent`` attribute where there is one, else the first ``Linear`` or
``Conv2d`` layer, and every guess is confirmed by a forward pass on zeros.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from defuse_widgets._validation import describe

__all__ = ["check_decoder_fit", "check_logits", "first_layer", "input_shape", "latent_size"]

#: Square image sizes tried when a first convolution fixes only the channels.
COMMON_SIZES = (8, 16, 28, 32, 64, 96, 128, 224, 256)


def first_layer(model: nn.Module) -> tuple[str, tuple, int] | None:
    """The first ``Linear`` or ``Conv2d`` registered in ``model``.

    Parameters
    ----------
    model : nn.Module
        Eager or TorchScript (scripted modules keep the layer's class name
        in ``original_name``).

    Returns
    -------
    tuple of (str, tuple of int, int) or None
        ``(kind, weight shape, groups)``; None when there is no such layer.
    """
    for m in model.modules():
        kind = getattr(m, "original_name", type(m).__name__)
        weight = getattr(m, "weight", None)
        if kind in ("Linear", "Conv2d") and isinstance(weight, torch.Tensor):
            return kind, tuple(weight.shape), int(getattr(m, "groups", 1))
    return None


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _runs(model: nn.Module, fn: Callable, x_shape: tuple) -> Any:
    """``fn`` on zeros of ``x_shape`` in eval and inference mode; None when it refuses them."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return fn(torch.zeros(x_shape, device=_device(model)))
    except (RuntimeError, ValueError, IndexError):
        return None
    finally:
        model.train(was)


def _decoder_fn(vae: nn.Module) -> Callable:
    return vae.decode if hasattr(vae, "decode") else vae


def latent_size(vae: nn.Module) -> int | None:
    """The latent size a VAE's (or bare decoder's) ``decode`` takes.

    Read from an integer ``n_latent`` on the module, its ``encoder`` or its
    ``decoder``; else from the decoder's first ``Linear`` layer, kept only
    when decoding one zero code of that size works.

    Parameters
    ----------
    vae : nn.Module
        A VAE with ``decode(z)``, or a decoder whose ``forward(z)`` decodes.

    Returns
    -------
    int or None
        None when neither tells.
    """
    for owner in (vae, getattr(vae, "encoder", None), getattr(vae, "decoder", None)):
        n = getattr(owner, "n_latent", None)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    decoder = getattr(vae, "decoder", vae)
    layer = first_layer(decoder) if isinstance(decoder, nn.Module) else None
    if layer is None or layer[0] != "Linear":
        return None
    n = layer[1][1]
    return n if _runs(vae, _decoder_fn(vae), (1, n)) is not None else None


def _candidates(layer: tuple | None, given: tuple) -> list[tuple]:
    """Input shapes (C, H, W) that fit a first layer, nearest to ``given`` first."""
    if layer is None or len(given) != 3:
        return []
    kind, shape, groups = layer
    c, h, w = given
    if kind == "Conv2d":
        cin = shape[1] * groups
        return [(cin, h, w)] + [(cin, s, s) for s in COMMON_SIZES if (s, s) != (h, w)]
    n_in, out = shape[1], []
    for cc in dict.fromkeys((c, 1, 3)):
        side = math.isqrt(n_in // cc)
        if n_in % cc == 0 and side * side * cc == n_in:
            out.append((cc, side, side))
    return out


def input_shape(model: nn.Module, given: tuple, *, encoder: bool = False) -> tuple | None:
    """The image shape (C, H, W) a classifier (or a VAE's encoder) takes.

    A VAE's decodes of a zero code show it, where its latent size is known
    (:func:`latent_size`). Otherwise shapes that fit the first ``Linear`` or
    ``Conv2d`` layer are tried on a zero image, the given shape's height and
    width first; the first one the model accepts is returned.

    Parameters
    ----------
    model : nn.Module
        A classifier (logits of shape (1, n_classes) count as accepted), or
        a VAE when ``encoder`` (its ``encode`` must run).
    given : tuple of int
        The (C, H, W) the model refused.
    encoder : bool, default=False

    Returns
    -------
    tuple of int or None
        None when no shape tried is accepted.
    """
    n_latent = latent_size(model) if encoder else None
    decoded = _runs(model, _decoder_fn(model), (1, n_latent)) if n_latent else None
    if isinstance(decoded, torch.Tensor) and decoded.ndim == 4:
        return tuple(decoded.shape[1:])
    part = getattr(model, "encoder", model) if encoder else model
    layer = first_layer(part) if isinstance(part, nn.Module) else None
    fn = model.encode if encoder else model
    for shape in _candidates(layer, tuple(given)):
        out = _runs(model, fn, (1, *shape))
        if out is not None and (encoder or (isinstance(out, torch.Tensor) and out.ndim == 2)):
            return shape
    return None


def check_logits(out: Any, *, name: str = "classifier") -> torch.Tensor:
    """Return a model's output when it is a tensor (its logits), else say what it returned.

    Parameters
    ----------
    out : Any
        What ``name`` returned for a batch of images.
    name : str, default="classifier"

    Returns
    -------
    Tensor

    Raises
    ------
    TypeError
        For a tuple such as ``(logits, features)``, a dict or anything else
        that is not a tensor, naming what it is and how to wrap the model.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        parts = ", ".join(describe(v) for v in out[:3]) + (", ..." if len(out) > 3 else "")
        got = f"a {type(out).__name__} of {len(out)} ({parts})"
    else:
        got = f"a {type(out).__name__}"
    raise TypeError(f"{name} must return a tensor of logits of shape (n, n_classes); got "
                    f"{got}. Wrap it in a module whose forward returns the logits alone "
                    f"(for a (logits, features) tuple: forward(x) = {name}(x)[0]).")


def check_decoder_fit(name: str, decoder: nn.Module, n_latent: int, *, source: str) -> None:
    """Check that ``decoder`` decodes codes of ``n_latent`` dimensions.

    Parameters
    ----------
    name : str
        Parameter name used in the message, e.g. ``"decoder"``.
    decoder : nn.Module
        A VAE with ``decode(z)`` or a bare decoder.
    n_latent : int
        Latent size of the codes it will decode.
    source : str
        Where ``n_latent`` comes from, e.g. ``"the regions' latent size"``.

    Raises
    ------
    ValueError
        Naming both latent sizes (the decoder's where it can be found),
        instead of torch's ``mat1 and mat2 shapes cannot be multiplied``.
    """
    if _runs(decoder, _decoder_fn(decoder), (1, n_latent)) is not None:
        return
    takes = latent_size(decoder)
    takes = f"{takes} latent dimensions" if takes else "another latent size"
    raise ValueError(f"{name} must decode codes of {n_latent} latent dimensions ({source}); "
                     f"it takes codes of {takes}.")
