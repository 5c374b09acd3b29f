"""defuse_widgets: Defuse (Slack, Rauschmayr and Kenthapadi) as a tested library and widgets.

One import line reaches the main API::

    import defuse_widgets as dw
    session = dw.Session("runs/demo", dw.DefuseConfig.quick())

The widgets live in :mod:`defuse_widgets.widgets` (the core never imports them).
"""
from defuse_widgets._version import __version__
from defuse_widgets.bayes_trex import DomainShiftCheck, LevelSetSampler, Target
from defuse_widgets.callbacks import Callback, History, ProgressCallback, ProgressLine
from defuse_widgets.data import DataSplits, load_dataset, load_images, load_mnist5k
from defuse_widgets.models.loading import ModelSpec, load_model
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.models.saliency import smoothgrad
from defuse_widgets.stages.annotators import SimulatedAnnotator
from defuse_widgets.stages.correction import PAPER_LAMS, Corrector
from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.failure_data import build_failure_sets, review_set
from defuse_widgets.stages.identification import AdversarialExamples, identify
from defuse_widgets.stages.labeling import RegionDecision, decide
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.annotations import AnnotationStore
from defuse_widgets.storage.persistence import SessionFormatError, UnsafeFileError
from defuse_widgets.workflow import (
    DefuseConfig,
    FidelityError,
    Session,
    SessionInputs,
    SessionMismatchError,
    figure4_table,
    run_defuse,
)

__all__ = ["AdversarialExamples", "AnnotationStore", "Callback", "Corrector", "DataSplits",
           "DefuseConfig", "Distiller", "DomainShiftCheck", "FidelityError", "History",
           "LevelSetSampler", "ModelSpec", "PAPER_LAMS", "ProgressCallback", "ProgressLine",
           "RegionDecision", "Regions", "Session", "SessionFormatError", "SessionInputs",
           "SessionMismatchError", "SimulatedAnnotator", "Target", "UnsafeFileError",
           "__version__", "build_failure_sets", "decide", "figure4_table", "identify",
           "load_dataset", "load_images", "load_mnist5k", "load_model", "load_pretrained",
           "review_set", "run_defuse", "smoothgrad"]
