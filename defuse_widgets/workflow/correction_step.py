"""Correction in a session: D_f, the baseline set and the arms' λ sweeps, saved.

The correction half of :class:`~defuse_widgets.workflow.Session`; the arms
themselves are :func:`~defuse_widgets.stages.correction.arms.run_arms`, the
one definition the widgets and benchmarks use too. This module imports no UI code.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from defuse_widgets.callbacks import ProgressCallback, StageProgress
from defuse_widgets.stages.correction.arms import default_arms, run_arms

__all__ = ["SessionCorrection"]


class SessionCorrection:
    """Correction methods of :class:`~defuse_widgets.workflow.Session`."""

    def correction_data(self) -> dict:
        """As :meth:`failure_data`, without saving anything (to show a saved sweep)."""
        from defuse_widgets.workflow.shared_steps import correction_data

        return correction_data(self)

    def failure_data(self) -> dict:
        """D_f, the eval sets and the baseline set of the saved decisions; saves D_f.

        Returns
        -------
        dict
            ``X_f`` (n_f, C, H, W), ``y_f`` (n_f,), ``eval_sets`` (name -> (X, y)),
            ``X_adv``, ``y_adv`` (the baseline set, or None; see :meth:`baseline_set`).
        """
        out = self.correction_data()
        self._save_failure_data(out["X_f"], out["y_f"])
        return out

    def export_failure_data(self, decisions=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Build and save D_f (``failure_data.npz``) of ``decisions`` (default: :meth:`decide`).

        Returns
        -------
        X_f : Tensor of shape (n_f, C, H, W)
        y_f : Tensor of shape (n_f,)
        """
        from defuse_widgets.stages.failure_data import build_failure_sets

        c = self.config
        decisions = self.decide() if decisions is None else decisions
        sets = build_failure_sets(self._require_regions(), decisions, self.vae,
                                  n_finetune=c.n_finetune, tau=c.tau, seed=c.seed,
                                  sets=("finetune",))
        if not sets:
            raise ValueError("decisions must accept at least one misclassification region; "
                             "none does.")
        X_f, y_f = sets["finetune"]
        self._save_failure_data(X_f, y_f)
        return X_f, y_f

    def _save_failure_data(self, X_f, y_f) -> None:
        self.folder.save("failure_data.npz", {"X_f": X_f.numpy().astype(np.float32),
                                              "y_f": y_f.numpy().astype(np.int64)},
                         kind="failure_data")

    def baseline_set(self, n: int):
        """The paper's baseline set (see
        :func:`~defuse_widgets.workflow.shared_steps.baseline_set`).
        """
        from defuse_widgets.workflow.shared_steps import baseline_set

        return baseline_set(self, n)

    def correct(self, *, callbacks=(), callback: ProgressCallback | None = None,
                on_start=None, stop_event: threading.Event | None = None, executor=None,
                progress: bool = False, extra_arms: dict | None = None,
                extra_eval_sets: dict | None = None, sets: dict | None = None) -> dict:
        """Correction: the λ sweep of every arm; saves ``correction.json`` and the best model.

        Parameters
        ----------
        callbacks : sequence of Callback, or callable(arm name) -> sequence
        callback : ProgressCallback, optional
            Reports steps; a True return stops the sweep within one batch.
        on_start, stop_event, executor, progress
            As in :func:`~defuse_widgets.stages.correction.arms.run_arms`.
        extra_arms : dict of str -> (X_f, y_f) or dict, optional
            More arms after Defuse, the baseline and label review (``"review"``,
            with ``config.label_review`` and at least one changed label); see
            :func:`~defuse_widgets.stages.correction.arms.run_arms`.
        extra_eval_sets : dict of str -> (X, y), optional
            More sets every arm is evaluated on (e.g. held-out images of a bug).
        sets : dict, optional
            The result of :meth:`failure_data`, when the caller already has it.

        Returns
        -------
        dict of str -> Corrector
        """
        c = self.config
        sets = self.failure_data() if sets is None else sets
        review = self.label_review_arm(sets["X_f"], sets["y_f"]) if c.label_review else None
        arms = {**default_arms(sets["X_f"], sets["y_f"], sets["X_adv"], sets["y_adv"], review),
                **(extra_arms or {})}

        def cb_list(name):
            return [*(callbacks(name) if callable(callbacks) else callbacks),
                    *([StageProgress(callback)] if callback else [])]

        sweeps = run_arms(self.classifier, self.data.X_train, self.data.y_train, arms,
                          eval_sets={**sets["eval_sets"], **(extra_eval_sets or {})},
                          lams=c.lams, epochs=c.epochs,
                          batch_size=c.batch_size, selection=c.selection,
                          tolerance=c.tolerance, confidence=c.confidence,
                          device=self.device, seed=c.seed,
                          schedule=c.schedule, precision=c.precision,
                          checkpoint_dir=self.folder.checkpoint_dir(), executor=executor,
                          progress=progress, callbacks=cb_list, on_start=on_start,
                          stop_event=stop_event)
        self.save_correction(sweeps)
        return sweeps

    def save_correction(self, sweeps: dict) -> None:
        """Save the arms' results as ``correction.json``, and the corrected model.

        The corrected model is the selected λ of the ``"review"`` arm when
        label review ran, else of Defuse; it is saved as
        ``corrected_classifier.pt`` only when the rule's verdict is that it
        fixes the regions (:func:`~defuse_widgets.stages.correction.lambda_rule.verdict`).
        An earlier λ choice by hand (:meth:`choose_lam`) no longer applies and
        moves to ``archive/``.
        """
        record = {}
        for name, corr in sweeps.items():
            results = list(corr.results_)
            best = next((i for i, r in enumerate(results) if r is corr.best_), None)
            record[name] = {"params": corr.sweep_params(), "before": corr.before_,
                            "history": list(corr.history_), "results": results,
                            "best_index": best, "cancelled": corr.cancelled_,
                            "corrected": corr.corrected_, "verdict": corr.verdict_}
        self.folder.save("correction.json", record, kind="correction")
        self.folder.archive(["lam_choice.json"])   # moved to archive/, never deleted
        arm = corrected_arm(sweeps)
        if arm is not None and sweeps[arm].corrected_ is not False:
            self.folder.save("corrected_classifier.pt", sweeps[arm].best_model_.state_dict(),
                             kind="model")
        else:
            self.folder.archive(["corrected_classifier.pt"])

    def choose_lam(self, lam: float, *, by: str, arm: str | None = None) -> dict:
        """Keep λ = ``lam`` of ``arm`` as the corrected model instead of the rule's choice.

        Parameters
        ----------
        lam : float
            One of the arm's finished λs.
        by : str
            Who chose (a person's name); saved with the choice.
        arm : str, optional
            Default: the arm whose model is the corrected one (``"review"``
            after label review, else ``"defuse"``).

        Returns
        -------
        dict
            The choice as saved in ``lam_choice.json``: ``arm``, ``lam``,
            ``by``, ``at`` (Unix time), ``rule_lam`` and the λ's ``record``.
        """
        import time

        from defuse_widgets._validation import check_number
        from defuse_widgets.storage.annotations import check_annotator

        by = check_annotator(by)
        lam = check_number("lam", lam, low=0)
        saved = self.load_correction()
        if saved is None:
            raise ValueError(f"session {str(self.path)!r} must hold a correction before a λ "
                             f"is chosen; it has none (run correction first).")
        arm = corrected_arm(saved) if arm is None else arm
        if arm not in saved:
            raise ValueError(f"arm must be one of {sorted(saved)}; got {arm!r}.")
        lams = [r["lam"] for r in saved[arm]["results"]]
        if lam not in lams:
            raise ValueError(f"lam must be a finished λ of arm {arm!r}, one of "
                             f"{[float(v) for v in lams]}; got {lam!r}.")
        index = list(saved[arm]["params"]["lams"]).index(lam)
        state = torch.load(self.folder.checkpoint_dir() / f"{arm}_lam_{index}.pt",
                           weights_only=True)
        best = saved[arm]["best"]
        choice = dict(arm=arm, lam=float(lam), by=by, at=time.time(),
                      rule_lam=None if best is None else best["lam"],
                      record=saved[arm]["results"][lams.index(lam)])
        self.folder.save("corrected_classifier.pt", state, kind="model")
        self.folder.save("lam_choice.json", choice)
        return choice

    def load_lam_choice(self) -> dict | None:
        """The λ chosen by hand (see :meth:`choose_lam`), or None."""
        return self.folder.load("lam_choice.json")


def corrected_arm(arms) -> str | None:
    """The arm whose selected model is the corrected one: label review, else Defuse."""
    return next((a for a in ("review", "defuse") if a in arms), None)
