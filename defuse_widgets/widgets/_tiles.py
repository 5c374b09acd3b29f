"""Captioned image tiles: which are adversarial examples, which are training images.

A selection from the latent map mixes both kinds, so each tile says what it
is, its true label and the classifier's prediction on it, as text (readable
at any size and searchable in the page) under an undecorated decode. The
latent explorer's selection grid and the region gallery's selection view
draw the same tiles.
"""
from __future__ import annotations

import base64
import html

import numpy as np

from defuse_widgets.widgets._render import to_png

__all__ = ["KIND_NAMES", "spread_index", "tile_captions", "tiles_html", "tile_pngs"]

#: What each kind of point is called on a tile.
KIND_NAMES = {"adversarial": "adversarial", "train": "training"}
_BORDER = {"adversarial": "#e67e22", "train": "#4a7ab5"}   # orange diamonds, blue circles


def spread_index(n: int, k: int) -> np.ndarray:
    """Indices of ``min(n, k)`` of ``n`` ordered items, evenly spread from first to last.

    A selection lists adversarial examples first, so its first ``k`` would
    show one kind only; a spread shows both.
    """
    return np.linspace(0, n - 1, min(n, k)).round().astype(np.int64)


def tile_pngs(images, *, size: int = 64) -> list:
    """PNG bytes of each image (n, C, H, W), ``size`` pixels wide, without a label."""
    return [to_png(image, size=size) for image in images]


def tile_captions(kinds, true_labels, predicted, names) -> list:
    """One caption per tile: ``"adversarial · true 3 · pred 8"``.

    Parameters
    ----------
    kinds : sequence of {"adversarial", "train"}
    true_labels, predicted : sequence of int
        The source image's class; the classifier's prediction on the tile's decode.
    names : list of str
        Class names.
    """
    return [f"{KIND_NAMES[k]} · true {names[t]} · pred {names[p]}"
            for k, t, p in zip(kinds, true_labels, predicted)]


def tiles_html(pngs, kinds, true_labels, predicted, names, *, size: int = 64) -> str:
    """HTML of captioned tiles, one ``figure.defuse-tile`` per image.

    Each tile has the classes ``defuse-tile`` and ``defuse-tile-adversarial``
    or ``defuse-tile-train``, an orange or blue border, and a caption naming
    its kind, its true label and the prediction (in red).
    """
    tiles = []
    for png, kind, t, p, caption in zip(pngs, kinds, true_labels, predicted,
                                        tile_captions(kinds, true_labels, predicted, names)):
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        tiles.append(
            f"<figure class='defuse-tile defuse-tile-{kind}' title='{html.escape(caption)}' "
            f"style='margin:0;flex:0 0 auto;width:{max(size, 66)}px;border:3px solid "
            f"{_BORDER[kind]};padding:1px;font-size:10px;line-height:1.25;text-align:center;"
            "overflow-wrap:anywhere'>"
            f"<img src='{src}' width='{size}' height='{size}' alt='{html.escape(caption)}'>"
            f"<figcaption><b>{KIND_NAMES[kind]}</b><br>true {html.escape(names[t])}<br>"
            f"<span style='color:#c00'>pred {html.escape(names[p])}</span></figcaption>"
            "</figure>")
    legend = ("<div style='font-size:90%'><span style='color:#e67e22'>■</span> adversarial "
              "example &nbsp; <span style='color:#4a7ab5'>■</span> training image "
              "(decode of its code) &nbsp; true label · <span style='color:#c00'>"
              "classifier's prediction</span></div>")
    return (legend + "<div class='defuse-tiles' style='display:flex;flex-wrap:wrap;gap:4px'>"
            + "".join(tiles) + "</div>")
