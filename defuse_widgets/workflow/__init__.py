"""The one Defuse workflow: settings, the session folder and its stages."""
from defuse_widgets.workflow.config import STAGES, DefuseConfig
from defuse_widgets.workflow.fidelity import FidelityError
from defuse_widgets.workflow.inputs import SessionInputs
from defuse_widgets.workflow.pipeline import run_defuse
from defuse_widgets.workflow.report import figure4_table, report, status
from defuse_widgets.workflow.session import Session, SessionMismatchError

__all__ = ["STAGES", "DefuseConfig", "FidelityError", "Session", "SessionInputs",
           "SessionMismatchError", "figure4_table", "report", "run_defuse", "status"]
