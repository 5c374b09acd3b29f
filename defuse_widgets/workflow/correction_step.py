"""Correction in a session: D_f, the baseline set and the arms' λ sweeps, saved.

The correction half of :class:`~defuse_widgets.workflow.Session`; the arms
themselves are :func:`~defuse_widgets.stages.correction_arms.run_arms`, the
one definition the widgets and benchmarks use too. This module imports no UI code.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from defuse_widgets.callbacks import ProgressCallback, StageProgress
from defuse_widgets.stages.correction_arms import run_arms

__all__ = ["SessionCorrection"]


class SessionCorrection:
    """Correction methods of :class:`~defuse_widgets.workflow.Session`."""

    def failure_data(self) -> dict:
        """D_f, the eval sets and the baseline set of the saved decisions; saves D_f.

        Returns
        -------
        dict
            ``X_f`` (n_f, C, H, W), ``y_f`` (n_f,), ``eval_sets`` (name -> (X, y)),
            ``X_adv``, ``y_adv`` (the baseline set, or None; see :meth:`baseline_set`).
        """
        from defuse_widgets.workflow.shared_steps import correction_data

        out = correction_data(self)
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
        """The paper's baseline set (see :func:`~defuse_widgets.workflow.shared_steps.baseline_set`)."""
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
            As in :func:`~defuse_widgets.stages.correction_arms.run_arms`.
        extra_arms : dict of str -> (X_f, y_f) or dict, optional
            More arms after Defuse and the baseline (e.g. label review); see
            :func:`~defuse_widgets.stages.correction_arms.run_arms`.
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
        arms = {"defuse": (sets["X_f"], sets["y_f"])}
        if sets["X_adv"] is not None:
            arms["baseline"] = (sets["X_adv"], sets["y_adv"])
        arms.update(extra_arms or {})
        cb_list = (lambda name: [*(callbacks(name) if callable(callbacks) else callbacks),
                                 *([StageProgress(callback)] if callback else [])])
        sweeps = run_arms(self.classifier, self.data.X_train, self.data.y_train, arms,
                          eval_sets={**sets["eval_sets"], **(extra_eval_sets or {})}, lams=c.lams, epochs=c.epochs,
                          batch_size=c.batch_size, selection=c.selection,
                          tolerance=c.tolerance, device=self.device, seed=c.seed,
                          schedule=c.schedule, precision=c.precision,
                          checkpoint_dir=self.folder.checkpoint_dir(), executor=executor,
                          progress=progress, callbacks=cb_list, on_start=on_start,
                          stop_event=stop_event)
        self.save_correction(sweeps)
        return sweeps

    def save_correction(self, sweeps: dict) -> None:
        """Save the arms' results as ``correction.json`` and Defuse's best model."""
        record = {}
        for name, corr in sweeps.items():
            results = list(corr.results_)
            best = next((i for i, r in enumerate(results) if r is corr.best_), None)
            record[name] = {"params": corr.sweep_params(), "before": corr.before_,
                            "history": list(corr.history_), "results": results,
                            "best_index": best, "cancelled": corr.cancelled_}
        self.folder.save("correction.json", record, kind="correction")
        model = getattr(sweeps.get("defuse"), "best_model_", None)
        if model is not None:
            self.folder.save("corrected_classifier.pt", model.state_dict(), kind="model")
