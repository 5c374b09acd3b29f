"""Correction (paper §3.3): fine-tune on L(D) + λ·L(D_f), sweeping λ, and keep the best λ.

* :mod:`~defuse_widgets.stages.correction.corrector`: the :class:`Corrector`
  estimator, one λ sweep of one arm;
* :mod:`~defuse_widgets.stages.correction.sweep`: the schedule of a sweep
  (every λ, or successive halving), each λ a :class:`~.sweep.Run`;
* :mod:`~defuse_widgets.stages.correction.parked_runs`: paused runs kept on disk;
* :mod:`~defuse_widgets.stages.correction.lambda_rule`: the rule that selects λ
  and its verdict;
* :mod:`~defuse_widgets.stages.correction.arms`: the arms a session sweeps
  (Defuse, the baseline, label review) and the run of all of them.

This package imports no UI code.
"""
from defuse_widgets.stages.correction.arms import ARM_NAMES, default_arms, run_arms
from defuse_widgets.stages.correction.corrector import PAPER_LAMS, Corrector
from defuse_widgets.stages.correction.lambda_rule import SELECTIONS, verdict
from defuse_widgets.stages.correction.sweep import SCHEDULES

__all__ = ["ARM_NAMES", "PAPER_LAMS", "SCHEDULES", "SELECTIONS", "Corrector", "default_arms",
           "run_arms", "verdict"]
