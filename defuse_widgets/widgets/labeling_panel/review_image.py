"""The labeling panel's review image, with zoom and contrast controls.

Low-contrast decodes (a faint stroke, a grey blob) are hard to judge at the
default size; the annotator can enlarge the image and stretch its contrast.
Neither changes what is stored: votes refer to the review sample, not to its
rendering.
"""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
import traitlets

from defuse_widgets.widgets._render import saliency_overlay, to_png

__all__ = ["ReviewImage", "stretch_contrast"]


def stretch_contrast(image, contrast: float) -> np.ndarray:
    """Scale pixel values about the image's mean by ``contrast``, clipped to [0, 1].

    Parameters
    ----------
    image : Tensor or ndarray of shape (C, H, W), values in [0, 1]
    contrast : float
        1 leaves the image as it is; 2 doubles each pixel's distance from the mean.

    Returns
    -------
    ndarray of shape (C, H, W), float32
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float32)
    mean = arr.mean()
    return np.clip((arr - mean) * float(contrast) + mean, 0.0, 1.0)


class ReviewImage(widgets.VBox):
    """One review image with a zoom slider (pixels), a contrast slider and, given
    ``saliency_map`` (images (1, C, H, W) -> maps (1, H, W)), a saliency toggle.

    Call :meth:`show` with the image and its red label; the controls re-render it.
    """

    zoom = traitlets.Int(192)
    contrast = traitlets.Float(1.0)
    saliency = traitlets.Bool(False)

    def __init__(self, *, zoom: int = 192, saliency_map=None):
        super().__init__()
        self._shown, self._saliency_map = None, saliency_map
        self._image = widgets.Image(format="png")
        self._image.add_class("defuse-review-image")
        wide = dict(style={"description_width": "60px"},
                    layout=widgets.Layout(width="240px", flex="0 0 auto"))
        self._zoom = widgets.IntSlider(value=zoom, min=96, max=480, step=48, description="Zoom",
                                       continuous_update=False, readout_format="d", **wide)
        self._contrast = widgets.FloatSlider(value=1.0, min=0.5, max=4.0, step=0.25,
                                             description="Contrast", continuous_update=False,
                                             **wide)
        self._saliency = widgets.Checkbox(description="SmoothGrad saliency", indent=False,
                                          layout=widgets.Layout(width="auto"))
        traitlets.link((self, "zoom"), (self._zoom, "value"))
        traitlets.link((self, "contrast"), (self._contrast, "value"))
        traitlets.link((self, "saliency"), (self._saliency, "value"))
        self.zoom = zoom
        self.layout.min_width = "250px"   # the sliders keep their tracks beside a small image
        self.children = [self._image, self._zoom, self._contrast,
                         *([self._saliency] if saliency_map is not None else [])]

    def show(self, image, label: str) -> None:
        """Show ``image`` (C, H, W) in [0, 1] with ``label`` in red, at the current zoom."""
        self._shown = (image, label)
        self._render()

    @property
    def value(self) -> bytes:
        """The PNG shown."""
        return self._image.value

    @traitlets.observe("zoom", "contrast", "saliency")
    def _render(self, change=None) -> None:
        if self._shown is None:
            return
        image, label = self._shown
        if self.contrast != 1.0:
            image = stretch_contrast(image, self.contrast)
        if self.saliency and self._saliency_map is not None:
            maps = self._saliency_map(torch.as_tensor(self._shown[0])[None])   # of the input
            shown = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            image = saliency_overlay(shown[None], maps)[0]   # over the image as displayed
        self._image.value = to_png(image, size=self.zoom, label=label)
        self._image.width = self._image.height = self.zoom
