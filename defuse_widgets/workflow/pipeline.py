"""All four Defuse stages, headless: a short loop over the :class:`Session`'s stages.

:func:`run_defuse` is what ``defuse-widgets run`` calls; the per-stage
subcommands call the same :class:`~defuse_widgets.workflow.session.Session`
methods one at a time. This module imports no UI code.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from defuse_widgets.callbacks import PrintProgress
from defuse_widgets.seeding import seed_everything
from defuse_widgets.workflow.config import DefuseConfig
from defuse_widgets.workflow.report import figure4_table, report
from defuse_widgets.workflow.session import Session

__all__ = ["run_defuse"]


def run_defuse(config: DefuseConfig | None = None, *, out: str | os.PathLike = "runs/defuse",
               overwrite: bool = False, device=None, classifier=None, vae=None, oracle=None,
               data=None, annotator=None, extra_eval_sets: dict | None = None,
               progress: bool = True, log=print, inputs=None,
               min_fidelity: float | None = None) -> dict:
    """Run identification, distillation, labeling (simulated annotator) and correction.

    Parameters
    ----------
    config : DefuseConfig, optional
        None takes the session's own settings (defaults for a new folder).
    out : str or os.PathLike, default="runs/defuse"
        The session folder; a stage whose result is already there is not run
        again (a run that was killed resumes).
    overwrite : bool, default=False
        Accept settings that differ from the folder's, archiving stale results.
    device : str, optional
    classifier, vae, oracle : nn.Module, optional
        Default to the shipped weights; ``oracle`` backs the simulated
        annotator, which stands in for people.
    data : DataSplits, optional
    annotator : SimulatedAnnotator or alike, optional
        Replaces the default simulated annotator around ``oracle``.
    extra_eval_sets : dict of str -> (X, y), optional
        More sets every correction arm is evaluated on, for measurement
        only (the selection rule never looks at them): the planted-bug
        benchmark's held-out images of each bug.
    progress : bool, default=True
    log : callable
    inputs : SessionInputs, optional
        The user's images and model specs (see
        :class:`~defuse_widgets.workflow.inputs.SessionInputs`).
    min_fidelity : float, optional
        Stop with :class:`~defuse_widgets.workflow.fidelity.FidelityError`
        before identification when the generator's fidelity is lower.
        Without a simulated annotator the run stops after distillation and
        says how people vote.

    Returns
    -------
    dict
        The results (see :func:`~defuse_widgets.workflow.report.report`), also
        written to ``<out>/results.json``, plus ``fidelity``, ``novelty``
        and ``timings``.
    """
    session = Session(out, config, classifier=classifier, vae=vae, oracle=oracle, data=data,
                      annotator=annotator, device=device, overwrite=overwrite, inputs=inputs)
    seed_everything(session.config.seed)
    t_start, timings = time.perf_counter(), {}
    extra = {"device": str(session.device), "torch": torch.__version__}
    try:
        for stage, step in stage_steps(session, progress, log, extra_eval_sets,
                                       min_fidelity=min_fidelity):
            t = time.perf_counter()
            if step() is False:
                break
            timings[stage] = time.perf_counter() - t
        if session.done("correction"):
            extra["novelty"] = _novelty(session)
        extra["timings"] = {**timings, "total": time.perf_counter() - t_start}
        res = report(session, extra=extra)
    finally:
        session.close()
    if "figure4" in res:
        log("\n" + figure4_table(res))
    log(f"\nsession written to {session.path} ({extra['timings']['total']:.0f}s total)")
    return res


def no_annotator_steps(session: Session) -> str:
    """What to do when a session has no simulated annotator: people vote, then ``correct``."""
    return (f"labeling: session {str(session.path)!r} has no oracle, so no simulated annotator "
            "votes; people do. Open the dashboard on the folder (in a notebook: "
            f"DefuseDashboard.open({str(session.path)!r})) and vote in its Labeling tab, then "
            f"run `defuse-widgets correct --session {session.path}`. For simulated votes "
            "instead, train an oracle (`defuse-widgets train-oracle --data DATA --out "
            "oracle.pt`) and pass --oracle oracle.pt.")


def stage_steps(session: Session, progress: bool, log, extra_eval_sets: dict | None = None,
                *, min_fidelity: float | None = None):
    """(stage, callable) pairs; a stage whose result exists is reported, not rerun.

    Identification first measures the generator's fidelity, warns below
    :data:`~defuse_widgets.workflow.fidelity.FIDELITY_WARNING` and stops
    (:class:`~defuse_widgets.workflow.fidelity.FidelityError`) below ``min_fidelity``.
    """
    def identification():
        if session.done("identification"):
            adv = session.load_adversarial()
            log(f"[identify] resumed: {len(adv)} adversarial examples in the session")
            return
        _gate(session, log, min_fidelity)
        adv = session.identify(callback=_printer(progress))
        log(f"[identify] {adv.n_decoded} decodes, {adv.rate:.1%} misclassified, "
            f"{len(adv)} kept")

    def distillation():
        if not session.done("distillation"):
            adv = session.load_adversarial()
            if len(adv) < 2:
                log("[distill] fewer than two adversarial examples; nothing to distill.")
                return False
            session.distill()
        log(f"[distill] {len(session.load_regions())} candidate regions")

    def labeling():
        decisions = session.load_decisions()
        if decisions is None and session.simulated_annotator() is None:
            log(f"[label] {no_annotator_steps(session)}")
            return False
        if decisions is None:
            decisions = session.label_simulated()
        accepted = sum(d.is_misclassification_region for d in decisions)
        log(f"[label] {accepted} of {len(decisions)} regions accepted as misclassification "
            f"regions by the simulated annotator (rho={session.config.rho})")
        if not accepted:
            log("[correct] no misclassification region was accepted; nothing to correct.")
            return False
        if session.config.label_review and not session.done("correction"):
            for split, r in session.review_labels_simulated().items():
                log(f"[label review] {split}: the simulated reviewer contested "
                    f"{r['n_contested']} of {r['n_reviewed']} labels")

    def correction():
        if session.done("correction"):
            log("[correct] resumed: the session holds a finished correction")
            return
        sweeps = session.correct(callbacks=[PrintProgress()] if progress else [],
                                 extra_eval_sets=extra_eval_sets)
        for name, corr in sweeps.items():
            log(f"[correct] {name}: {corr.verdict_}")

    return [("identification", identification), ("distillation", distillation),
            ("labeling", labeling), ("correction", correction)]


def _printer(progress: bool):
    if not progress:
        return None
    last = [0.0]

    def callback(stage, done, total):
        now = time.perf_counter()
        if done >= total or now - last[0] > 5:
            last[0] = now
            print(f"  [{stage}] {done}/{total}", flush=True)
    return callback


def _gate(session: Session, log, min_fidelity: float | None) -> dict:
    """Measure and log the generator's fidelity; warn, or stop below ``min_fidelity``."""
    from defuse_widgets.workflow.fidelity import check_fidelity, fidelity_warning

    fid = session.fidelity()
    log(f"[data] {session.data}; classifier {fid['split']} accuracy "
        f"{fid['accuracy_images']:.3f}, on β-VAE reconstructions "
        f"{fid['accuracy_reconstructions']:.3f} (fidelity {fid['fidelity']:.3f})")
    warning = fidelity_warning(fid)
    if warning:
        log(f"[fidelity] WARNING: {warning}")
    check_fidelity(fid, min_fidelity)
    return fid


def _novelty(session: Session) -> dict:
    """Paper §4.3: each region sample's nearest misclassified training image."""
    from defuse_widgets.stages.failure_data import build_failure_sets
    from defuse_widgets.stages.novelty import nearest_misclassified

    c = session.config   # the region test set of Session.failure_data, built alone
    X_rt = build_failure_sets(session.load_regions(), session.load_decisions(), session.vae,
                              n_finetune=c.n_finetune, n_region_test=c.n_region_test,
                              tau=c.tau, seed=c.seed, device="cpu",
                              sets=("region_test",))["region_test"][0]
    n, per = c.n_region_test, 10
    idx = np.concatenate([np.arange(i, min(i + per, len(X_rt))) for i in range(0, len(X_rt), n)])
    return nearest_misclassified(X_rt[idx], session.classifier, session.data.X_train,
                                 session.data.y_train).summary()
