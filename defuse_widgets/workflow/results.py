"""Reading a session's saved results: the load half of :class:`~defuse_widgets.workflow.Session`.

Each ``load_*`` method returns None before its stage ran and raises
:class:`~defuse_widgets.storage.persistence.SessionFormatError` naming the
file when the file is inconsistent. This module imports no UI code.
"""
from __future__ import annotations

from dataclasses import fields

import torch

from defuse_widgets.models.loading import copy_model
from defuse_widgets.stages.identification import AdversarialExamples
from defuse_widgets.stages.labeling import RegionDecision
from defuse_widgets.stages.latent_map import LatentMap
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.persistence import SessionFormatError

__all__ = ["SessionResults"]


class SessionResults:
    """Load methods shared by :class:`~defuse_widgets.workflow.Session` (needs ``folder``)."""

    # -------------------------------------------------------------- loads
    def load_adversarial(self) -> AdversarialExamples | None:
        """The saved adversarial examples, or None before identification."""
        return self.folder.build("adversarial.npz", AdversarialExamples.from_npz,
                                 AdversarialExamples.NPZ_KEYS)

    def load_regions(self, adversarial: AdversarialExamples | None = None) -> Regions | None:
        """The saved regions, or None before distillation.

        ``adversarial``, when the caller has already loaded it, saves reading
        ``adversarial.npz`` again for the consistency check.
        """
        regions = self.folder.build("regions.npz", Regions.from_npz,
                                    list(Regions.__dataclass_fields__))
        adv = adversarial if adversarial is not None or regions is None else \
            self.load_adversarial()
        if regions is not None and (adv is None or len(regions.assignment) != len(adv)):
            raise SessionFormatError(self.folder.file("regions.npz"), "file must hold regions "
                                     "of the session's adversarial examples; it does not.")
        return regions

    def load_decisions(self) -> list[RegionDecision] | None:
        """The saved ρ decisions, or None before any."""
        names = {f.name for f in fields(RegionDecision)}

        def build(data):
            return [RegionDecision(**{**d, "sample_agreement": tuple(d["sample_agreement"])})
                    for d in data["decisions"] if set(d) == names or _fail(d)]
        return self.folder.build("decisions.json", build)

    def load_correction(self) -> dict | None:
        """The saved arms (``{name: {params, before, history, results, best, ...}}``) or None."""
        def build(data):
            return {name: {**arm, "best": None if arm["best_index"] is None
                           else arm["results"][arm["best_index"]]} for name, arm in data.items()}
        return self.folder.build("correction.json", build)

    def load_corrected_classifier(self) -> torch.nn.Module | None:
        """The classifier with the selected λ's weights, or None before correction."""
        state = self.folder.load("corrected_classifier.pt")
        if state is None:
            return None
        model = copy_model(self.classifier)
        model.load_state_dict(state)
        return model.eval()

    def load_latent_map(self) -> LatentMap | None:
        """The saved latent map (a cache of the explorer's t-SNE), or None."""
        name = "latent_map.npz"
        if not self.folder.listed(name) or name in self.folder.problems:
            return None   # a damaged cache is fitted again (and replaced)
        return LatentMap.load(self.folder.file(name))

    def save_latent_map(self, latent_map: LatentMap) -> None:
        """Save a fitted latent map as ``latent_map.npz`` (not in a read-only session)."""
        if not self.folder.read_only:
            self.folder.save_with("latent_map.npz", latent_map.save, kind="latent_map")

    # ------------------------------------------------------------ helpers
    def _require_adversarial(self) -> AdversarialExamples:
        adv = self.load_adversarial()
        if adv is None:
            raise ValueError(f"session {str(self.path)!r} must hold adversarial examples "
                             "before this stage; it has none (run identification first).")
        return adv

    def _require_regions(self) -> Regions:
        regions = self.load_regions()
        if regions is None:
            raise ValueError(f"session {str(self.path)!r} must hold regions before this "
                             "stage; it has none (run distillation first).")
        return regions


def _fail(d):
    raise ValueError(f"decision keys must be RegionDecision fields; got {sorted(d)}")
