"""Images for the widgets: tensors to PNG, with the classifier's prediction in red.

Rendering lives here so every widget draws images the same way (paper Fig. 1:
"the red digit in the upper right hand corner is the classifier's prediction").
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=1)
def _font():
    # Pillow's default font, loaded once: ImageDraw loads it again for every new
    # drawing otherwise, 85 % of the time a labelled tile takes
    return ImageFont.load_default()


def to_pil(image, *, size: int = 96, label: str | None = None) -> Image.Image:
    """Convert one image to an RGB PIL image, upscaled, with ``label`` in red top-right.

    Parameters
    ----------
    image : Tensor or ndarray of shape (C, H, W), values in [0, 1]
    size : int, default=96
        Output side in pixels (nearest-neighbour upscaling keeps pixels crisp).
    label : str, optional
        Drawn in red in the upper right corner.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = np.clip(arr / 255.0 if arr.dtype == np.uint8 else arr, 0, 1)
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    pil = Image.fromarray((arr.transpose(1, 2, 0) * 255).astype(np.uint8), "RGB")
    pil = pil.resize((size, size), Image.NEAREST)
    if label is not None:
        draw = ImageDraw.Draw(pil)
        text = str(label)
        w = draw.textlength(text, font=_font())
        draw.rectangle([size - w - 6, 0, size, 14], fill=(255, 255, 255))
        draw.text((size - w - 3, 1), text, fill=(220, 0, 0), font=_font())
    return pil


def to_png(image, *, size: int = 96, label: str | None = None) -> bytes:
    """PNG bytes of one image (see :func:`to_pil`)."""
    buf = io.BytesIO()
    to_pil(image, size=size, label=label).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(images, labels=None, *, ncols: int = 8, size: int = 64, pad: int = 2) -> bytes:
    """PNG bytes of a grid of images, each with its label in red.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
    labels : sequence of str of length n, optional
    ncols : int, default=8
    size : int, default=64
        Side of each tile in pixels.
    pad : int, default=2
    """
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    canvas = Image.new("RGB", (ncols * (size + pad) + pad, nrows * (size + pad) + pad),
                       (230, 230, 230))
    for i in range(n):
        tile = to_pil(images[i], size=size, label=None if labels is None else labels[i])
        canvas.paste(tile, (pad + (i % ncols) * (size + pad), pad + (i // ncols) * (size + pad)))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def class_labels(class_names, n_classes: int) -> list:
    """Return one display name per class, checking ``class_names`` if given."""
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    names = [str(c) for c in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names must name all {n_classes} classes; got {len(names)}.")
    return names


def saliency_overlay(images, maps) -> np.ndarray:
    """Images with their saliency as a heat overlay (SmoothGrad, paper Bayes-TrEx Fig. 2).

    Each map is scaled to its own 99th percentile; a pixel's heat runs from
    transparent (no saliency, the grey image shows) through red to yellow.

    Parameters
    ----------
    images : Tensor or ndarray of shape (n, C, H, W), values in [0, 1]
    maps : ndarray of shape (n, H, W), non-negative
        From :func:`defuse_widgets.models.saliency.smoothgrad`.

    Returns
    -------
    ndarray of shape (n, 3, H, W), float32 in [0, 1]
    """
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    arr = arr / 255.0 if arr.dtype == np.uint8 else arr
    gray = np.clip(arr, 0, 1).mean(axis=1, keepdims=True).astype(np.float32)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (arr.shape[0], *arr.shape[2:]):
        raise ValueError(f"maps must have shape {(arr.shape[0], *arr.shape[2:])}; got "
                         f"{maps.shape}.")
    top = np.percentile(maps.reshape(len(maps), -1), 99, axis=1).reshape(-1, 1, 1)
    m = np.clip(maps / np.maximum(top, 1e-12), 0, 1)[:, None]
    heat = np.concatenate([np.clip(2 * m, 0, 1), np.clip(2 * m - 1, 0, 1), np.zeros_like(m)], 1)
    return ((1 - m) * 0.8 * gray + m * heat).astype(np.float32)
