"""defuse_widgets: Defuse (Slack, Rauschmayr and Kenthapadi) as a tested library and Jupyter widgets.

One import line reaches the main API::

    import defuse_widgets as dw
    session = dw.Session("runs/demo", dw.DefuseConfig.quick())

The widgets live in :mod:`defuse_widgets.widgets` (the core never imports them).
"""
from defuse_widgets._version import __version__

from defuse_widgets.bayes_trex import DomainShiftCheck, LevelSetSampler, Target  # noqa: E402
from defuse_widgets.callbacks import (Callback, History, ProgressCallback,  # noqa: E402
                                      ProgressLine)
from defuse_widgets.data import DataSplits, load_dataset, load_images, load_mnist5k  # noqa: E402
from defuse_widgets.models.loading import ModelSpec, load_model  # noqa: E402
from defuse_widgets.models.pretrained import load_pretrained  # noqa: E402
from defuse_widgets.models.saliency import smoothgrad  # noqa: E402
from defuse_widgets.stages.annotators import SimulatedAnnotator  # noqa: E402
from defuse_widgets.stages.correction import PAPER_LAMS, Corrector  # noqa: E402
from defuse_widgets.stages.distillation import Distiller  # noqa: E402
from defuse_widgets.stages.failure_data import build_failure_sets, review_set  # noqa: E402
from defuse_widgets.stages.identification import AdversarialExamples, identify  # noqa: E402
from defuse_widgets.stages.labeling import RegionDecision, decide  # noqa: E402
from defuse_widgets.stages.regions import Regions  # noqa: E402
from defuse_widgets.storage.annotations import AnnotationStore  # noqa: E402
from defuse_widgets.storage.persistence import SessionFormatError, UnsafeFileError  # noqa: E402
from defuse_widgets.workflow import (DefuseConfig, FidelityError, Session,  # noqa: E402
                                     SessionInputs, SessionMismatchError, figure4_table,
                                     run_defuse)

__all__ = ["AdversarialExamples", "AnnotationStore", "Callback", "Corrector", "DataSplits",
           "DefuseConfig", "Distiller", "DomainShiftCheck", "FidelityError", "History",
           "LevelSetSampler", "ModelSpec", "PAPER_LAMS", "ProgressCallback", "ProgressLine",
           "RegionDecision", "Regions", "Session", "SessionFormatError", "SessionInputs",
           "SessionMismatchError", "SimulatedAnnotator", "Target", "UnsafeFileError",
           "__version__", "build_failure_sets", "decide", "figure4_table", "identify",
           "load_dataset", "load_images", "load_mnist5k", "load_model", "load_pretrained",
           "review_set", "run_defuse", "smoothgrad"]
