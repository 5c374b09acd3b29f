"""Grounding in a session: real validation and test images per region, saved.

The grounding half of :class:`~defuse_widgets.workflow.Session`; the method is
:func:`~defuse_widgets.stages.grounding.ground_regions`. ``grounding.json``
holds the result and a digest of the regions it was made for, so a grounding
of other regions is never shown as this session's. This module imports no UI code.
"""
from __future__ import annotations

import hashlib

import numpy as np

from defuse_widgets.stages.grounding import RegionGrounding, ground_regions
from defuse_widgets.stages.regions import Regions

__all__ = ["SessionGrounding"]

_FILE = "grounding.json"


class SessionGrounding:
    """Grounding methods of :class:`~defuse_widgets.workflow.Session`."""

    def ground_regions(self, regions: Regions | None = None, *,
                       alpha: float = 0.99) -> RegionGrounding:
        """Assign the validation and test images to ``regions``; saves ``grounding.json``.

        A read-only session computes it and saves nothing.

        Parameters
        ----------
        regions : Regions, optional
            Default: the session's (distillation must have run).
        alpha : float in (0, 1), default=0.99
            χ² level of :func:`~defuse_widgets.stages.grounding.assign_to_regions`.

        Returns
        -------
        RegionGrounding
            With splits "validation" and "test".
        """
        from defuse_widgets.models.inference import encode_mean, predict

        regions = self._require_regions() if regions is None else regions
        clf, vae = self.classifier, self.vae
        data = self.data
        splits = {name: (encode_mean(vae, X).numpy(), y, predict(clf, X))
                  for name, X, y in (("validation", data.X_val, data.y_val),
                                     ("test", data.X_test, data.y_test))}
        grounding = ground_regions(regions, splits, alpha=alpha)
        if self.folder.read_only:
            return grounding
        self.folder.save(_FILE, {"regions_digest": regions_digest(regions),
                                 "grounding": grounding.to_dict()}, kind="grounding")
        return grounding

    def load_grounding(self, regions: Regions | None = None) -> RegionGrounding | None:
        """The saved grounding of ``regions`` (default: the session's), or None.

        None before :meth:`ground_regions` ran, and when the saved one was
        made for other regions.
        """
        saved = self.folder.build(_FILE, _check)
        if saved is None:
            return None
        regions = self.load_regions() if regions is None else regions
        if regions is None or saved[0] != regions_digest(regions):
            return None
        return saved[1]


def regions_digest(regions: Regions) -> str:
    """SHA-256 of the regions' means, covariances and weights (which a grounding depends on)."""
    h = hashlib.sha256()
    for a in (regions.means, regions.covariances, regions.weights):
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(f"{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def _check(data) -> tuple:
    if not isinstance(data, dict) or set(data) != {"regions_digest", "grounding"}:
        raise ValueError("file must hold 'regions_digest' and 'grounding'")
    return str(data["regions_digest"]), RegionGrounding.from_dict(data["grounding"])
