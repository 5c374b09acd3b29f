"""The settings of a Defuse run: one dataclass, the single source of every default.

The CLI, the dashboard, the notebooks and the benchmarks all build a
:class:`DefuseConfig`; none of them has defaults of its own. The fields are
grouped by the stage that reads them (:data:`STAGE_FIELDS`), so a session can
tell which results a change of settings makes stale.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from defuse_widgets._validation import check_choice, check_int, check_number, check_seed
from defuse_widgets.models.precision import PRECISIONS
from defuse_widgets.stages.correction import PAPER_LAMS, SELECTIONS
from defuse_widgets.stages.correction.sweep import SCHEDULES

__all__ = ["STAGES", "STAGE_FIELDS", "DefuseConfig"]

#: The workflow's stages, in order.
STAGES = ("identification", "distillation", "labeling", "correction")

#: Which settings each stage reads. A stage's result depends on its own
#: settings and on those of every earlier stage.
STAGE_FIELDS = {
    "identification": ("dataset", "Q", "a", "b", "centered", "max_per_instance", "seed",
                       "precision"),
    "distillation": ("n_components", "eps", "max_samples"),
    "labeling": ("tau", "review_size", "rho", "n_workers", "error_rate"),
    "correction": ("n_finetune", "n_region_test", "lams", "epochs", "batch_size", "selection",
                   "tolerance", "confidence", "baseline", "schedule", "label_review"),
}
#: The values of settings added since the first session format, for a
#: ``session.json`` written before them: what those sessions actually ran.
LEGACY_VALUES = {"precision": "fp32", "schedule": "full", "label_review": 0}
#: ``dataset`` of a session on the user's own images (see
#: :class:`~defuse_widgets.workflow.inputs.SessionInputs`).
OWN_DATA = "own"
#: Settings that change how results are shown, never the results themselves.
VIEW_FIELDS = ("map_size", "tsne_iter")


@dataclass(frozen=True)
class DefuseConfig:
    """Settings of a Defuse run; defaults are the paper's MNIST settings on MNIST-5k.

    Parameters
    ----------
    dataset : str, default="mnist5k"
        A name of :data:`~defuse_widgets.data.DATASETS`, or ``"own"`` for a
        session on the user's images and models (recorded as its inputs).
    Q, a, b, centered, max_per_instance
        Identification (Algorithm 1): Q perturbations per training image of
        Beta(a, b) noise (centred on 0 unless ``centered=False``, the paper's
        literal noise), at most ``max_per_instance`` kept per image.
    n_components, eps, max_samples
        Distillation: K, the weight threshold ε, the codes the mixture is fit on.
    tau, review_size, rho
        Labeling: sample diversity τ of N(μ, τΣ), samples per review set, and
        the disagreement share ρ above which a region is a misclassification region.
    n_workers, error_rate
        The simulated annotator (an oracle CNN standing in for people).
    n_finetune, n_region_test, lams, epochs, batch_size, selection, tolerance, confidence
        Correction: samples per accepted region in D_f and in the region test
        set, the λ sweep and its model-selection rule (see
        :class:`~defuse_widgets.stages.correction.Corrector` and
        :mod:`~defuse_widgets.stages.correction.lambda_rule`).
    label_review : int, default=0
        Label review (not in the paper; see :mod:`~defuse_widgets.stages.label_review`):
        the training and validation images nearest each accepted or
        label-error region whose labels a reviewer checks, per region; their
        answers relabel D and the correction gets an arm ``"review"``. 0 turns
        it off.
    baseline : bool, default=True
        Also sweep the paper's baseline: fine-tuning on individually labelled
        adversarial examples (needs an annotator that labels single images).
    seed : int, default=0
        Seed of every stage.
    precision : {"auto", "bf16", "fp32"}, default="auto"
        bf16 autocast of identification's decodes and of correction's
        fine-tuning and evaluation; ``"auto"`` is bf16 where the hardware runs
        it natively (see :mod:`~defuse_widgets.models.precision`). It belongs to
        identification's settings, so changing it makes every result stale.
    schedule : {"halving", "full"}, default="halving"
        The λ sweep: successive halving or every λ for every epoch (see
        :mod:`~defuse_widgets.stages.correction.sweep`).
    map_size, tsne_iter
        The latent map: training images shown (None for all), t-SNE iterations.

    Examples
    --------
    >>> DefuseConfig.quick().Q
    20
    >>> DefuseConfig(K=3)  # doctest: +SKIP
    Traceback (most recent call last):
    TypeError: ...
    """

    dataset: str = "mnist5k"
    Q: int = 100
    a: float = 50.0
    b: float = 50.0
    centered: bool = True
    max_per_instance: int = 100
    n_components: int = 100
    eps: float = 0.01
    max_samples: int = 10000
    tau: float = 0.5
    review_size: int = 10
    rho: float = 0.5
    n_workers: int = 5
    error_rate: float = 0.0
    n_finetune: int = 256
    n_region_test: int = 256
    lams: tuple = PAPER_LAMS
    epochs: int = 3
    batch_size: int = 256
    selection: str = "interval"
    tolerance: float = 0.005
    confidence: float = 0.95
    baseline: bool = True
    seed: int = 0
    precision: str = "auto"
    schedule: str = "halving"
    label_review: int = 0
    map_size: int | None = 2000
    tsne_iter: int = 500

    def __post_init__(self):
        from defuse_widgets.data.registry import DATASETS

        check_choice("dataset", self.dataset, (*DATASETS, OWN_DATA))
        check_choice("selection", self.selection, SELECTIONS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_seed("seed", self.seed)
        for name in ("centered", "baseline"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}.")
        for name in ("Q", "max_per_instance", "n_components", "max_samples", "review_size",
                     "n_workers", "n_finetune", "n_region_test", "epochs", "batch_size",
                     "tsne_iter"):
            check_int(name, getattr(self, name), low=1)
        if self.map_size is not None:
            check_int("map_size", self.map_size, low=2)
        check_number("a", self.a, low=0, low_inclusive=False)
        check_number("b", self.b, low=0, low_inclusive=False)
        check_number("tau", self.tau, low=0, low_inclusive=False)
        check_number("eps", self.eps, low=0, high=1, high_inclusive=False)
        check_number("rho", self.rho, low=0, high=1, high_inclusive=False)
        check_number("error_rate", self.error_rate, low=0, high=1)
        check_number("tolerance", self.tolerance, low=0, high=1)
        check_number("confidence", self.confidence, low=0, high=1, low_inclusive=False,
                     high_inclusive=False)
        check_int("label_review", self.label_review, low=0)
        if isinstance(self.lams, (str, bytes)) or not hasattr(self.lams, "__iter__"):
            raise TypeError(f"lams must be a sequence of numbers; got {self.lams!r}.")
        lams = tuple(check_number(f"lams[{i}]", v, low=0) for i, v in enumerate(self.lams))
        if not lams:
            raise ValueError("lams must hold at least one λ value; got an empty sequence.")
        object.__setattr__(self, "lams", lams)
        for name in ("a", "b", "tau", "eps", "rho", "error_rate", "tolerance",
                     "confidence"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def quick(cls, **changes: Any) -> "DefuseConfig":
        """A CI-sized run: Q=20, K=30, 3,000 codes, λ in (0.01, 0.1, 1), 2 epochs each."""
        base = dict(Q=20, n_components=30, max_samples=3000, lams=(0.01, 0.1, 1.0),
                    epochs=2, n_finetune=128, n_region_test=128)
        return cls(**{**base, **changes})

    @classmethod
    def from_dict(cls, data: dict) -> "DefuseConfig":
        """Rebuild a config saved with :meth:`to_dict`; unknown keys raise TypeError.

        Settings missing from ``data`` (a session written before they existed)
        take :data:`LEGACY_VALUES`, what such a session ran, not today's defaults.
        """
        if not isinstance(data, dict):
            raise TypeError(f"config must be a dict of settings; got {type(data).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TypeError(f"config must hold only DefuseConfig settings; got unknown "
                            f"{unknown}.")
        return cls(**{**{k: v for k, v in LEGACY_VALUES.items() if k in names}, **data})

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (``lams`` as a list)."""
        d = asdict(self)
        d["lams"] = list(self.lams)
        return d

    def replace(self, **changes: Any) -> "DefuseConfig":
        """A copy with ``changes`` applied (and validated)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"changes must name DefuseConfig settings; got unknown {unknown}.")
        return dataclasses.replace(self, **changes)

    def first_changed_stage(self, other: "DefuseConfig") -> str | None:
        """The earliest stage whose settings differ from ``other``'s (None if none does)."""
        for stage in STAGES:
            if any(getattr(self, f) != getattr(other, f) for f in STAGE_FIELDS[stage]):
                return stage
        return None

    def changed(self, other: "DefuseConfig") -> dict:
        """``{name: (other's value, this value)}`` for every setting that differs."""
        return {f.name: (getattr(other, f.name), getattr(self, f.name))
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}
