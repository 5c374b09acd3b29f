"""The correction arms: one λ sweep per fine-tuning set, run the same way everywhere.

:func:`run_arms` is what :meth:`Session.correct <defuse_widgets.workflow.Session.correct>`,
the ``TradeoffPlot`` widget and the planted-bug benchmark all call, so the
Defuse arm (D_f, paper §3.3), the paper's baseline arm (individually labelled
adversarial examples) and any extra arm (for example label review) are
swept with one definition. This module imports no UI code.
"""
from __future__ import annotations

import threading
from typing import Callable, Mapping, Sequence

from torch import nn

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction.corrector import Corrector

__all__ = ["ARM_NAMES", "default_arms", "run_arms"]

#: Display names of the arms (the rows of the paper's Figure 4).
ARM_NAMES = {"defuse": "Defuse", "baseline": "Unrestricted adversarial examples"}


def default_arms(X_f, y_f, X_adv=None, y_adv=None, review=None) -> dict:
    """The correction's arms in their order: Defuse on D_f, the paper's baseline on the
    labelled adversarial examples (when there are any), label review (when given).

    Parameters
    ----------
    X_f : Tensor of shape (m, C, H, W)
    y_f : Tensor of shape (m,)
    X_adv, y_adv : Tensor of shape (k, C, H, W) and (k,), optional
    review : tuple or dict, optional
        The label-review arm, as :func:`run_arms` takes an arm.

    Returns
    -------
    dict of str -> arm
    """
    arms = {"defuse": (X_f, y_f)}
    if X_adv is not None:
        arms["baseline"] = (X_adv, y_adv)
    if review is not None:
        arms["review"] = review
    return arms


def run_arms(classifier: nn.Module, X, y, arms: Mapping[str, tuple], *, eval_sets: dict,
             lams: Sequence[float], epochs: int, batch_size: int = 256,
             selection: str = "interval", tolerance: float = 0.005,
             confidence: float = 0.95, device=None,
             seed: int = 0, checkpoint_dir=None, executor=None, progress: bool = False,
             schedule: str = "full", precision: str = "fp32",
             callbacks: Callable[[str], Sequence[Callback]] | Sequence[Callback] = (),
             on_start: Callable[[str, Corrector], None] | None = None,
             stop_event: threading.Event | None = None) -> dict[str, Corrector]:
    """Sweep λ for each arm, in order, and return the fitted correctors.

    Parameters
    ----------
    classifier : nn.Module
        Not modified; every λ fine-tunes a copy.
    X : Tensor of shape (n, C, H, W)
    y : Tensor of shape (n,)
        The training data D of every arm (an arm may bring its own: see ``arms``).
    arms : mapping of str -> (X_f, y_f) or dict
        Each arm's fine-tuning set, shapes (n_f, C, H, W) and (n_f,). A dict
        holds ``X_f`` and ``y_f`` and optionally ``X``, ``y`` (its own D, for
        example relabelled training data) and ``eval_sets`` (sets that replace
        those of the same name, for example a relabelled validation split).
    eval_sets : dict of str -> (X, y)
    lams, epochs, batch_size, selection, tolerance, confidence, device, seed, executor,
    progress, schedule, precision
        As in :class:`~defuse_widgets.stages.correction.Corrector`.
    checkpoint_dir : path, optional
        Each arm checkpoints there under its own name and resumes from it.
    callbacks : sequence of Callback, or callable(arm name) -> sequence
    on_start : callable(name, corrector), optional
        Called before each arm's sweep starts (a widget keeps it to stop it).
    stop_event : threading.Event, optional
        Set to skip the arms that have not started.

    Returns
    -------
    dict of str -> Corrector
        The arms that ran, in order; a stopped arm has ``cancelled_`` set and
        no later arm runs.
    """
    out = {}
    for name, arm in arms.items():
        if stop_event is not None and stop_event.is_set():
            break
        arm = dict(zip(("X_f", "y_f"), arm)) if isinstance(arm, (tuple, list)) else dict(arm)
        X_f, y_f, X_arm, y_arm = arm["X_f"], arm["y_f"], arm.get("X", X), arm.get("y", y)
        evals = {**eval_sets, **arm.get("eval_sets", {})}
        cbs = callbacks(name) if callable(callbacks) else callbacks
        corrector = Corrector(lams=lams, epochs=epochs, batch_size=batch_size,
                              selection=selection, tolerance=tolerance,
                              confidence=confidence, device=device,
                              seed=seed, name=name, checkpoint_dir=checkpoint_dir,
                              executor=executor, progress=progress, callbacks=list(cbs),
                              schedule=schedule, precision=precision)
        if on_start is not None:
            on_start(name, corrector)
        if stop_event is not None and stop_event.is_set():
            corrector.stop()
        corrector.fit(classifier, X_arm, y_arm, X_f, y_f, eval_sets=evals)
        out[name] = corrector
        if corrector.cancelled_:
            break
    return out
