"""What a session folder holds, as the ``status`` and ``report`` commands print it.

:func:`status` lists the stages done, votes per annotator, decisions and the
selected λ; :func:`report` builds the paper's Figure 4 rows (and the novelty
check of §4.3) from the saved results and writes ``results.json``. Both only
read the session, except that :func:`report` saves ``results.json`` through it
(and ``grounding.json`` when the session has regions that are not grounded yet)
unless the session is read-only.
This module imports no UI code.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from defuse_widgets.workflow.config import STAGES

__all__ = ["figure4_table", "report", "status", "status_text"]

_ROWS = (("Before finetuning", "before"), ("Unrestricted adversarial examples", "baseline"),
         ("Defuse", "defuse"), ("Defuse + label review", "review"))


def status(session) -> dict:
    """Summarise a session: stages done, votes, decisions, selected λ.

    Returns
    -------
    dict
        ``stages`` (stage -> bool), ``n_adversarial``, ``n_regions``,
        ``votes`` (annotator -> count), ``n_accepted``, ``selected_lam``
        (arm -> λ or None), ``config`` (the settings).
    """
    out = {"path": str(session.path), "stages": {s: session.done(s) for s in STAGES},
           "config": session.config.to_dict(), "data": _data_line(session)}
    from defuse_widgets.workflow.fidelity import fidelity_warning

    saved = session.folder.load("fidelity.json")   # read once; status never measures
    out["fidelity"] = None if saved is None else saved["report"]["fidelity"]
    out["fidelity_warning"] = None if saved is None else fidelity_warning(saved["report"])
    adv = session.load_adversarial()
    out["n_adversarial"] = None if adv is None else len(adv)
    regions = session.load_regions(adv) if adv is not None else None
    out["n_regions"] = None if regions is None else len(regions)
    votes = {}
    if session.folder.listed("annotations.sqlite"):
        for v in session.open_store().votes():
            votes[v.annotator] = votes.get(v.annotator, 0) + 1
    out["votes"] = votes
    decisions = session.load_decisions()
    out["n_accepted"] = (None if decisions is None else
                         sum(d.is_misclassification_region for d in decisions))
    correction = session.load_correction() or {}
    out["selected_lam"] = {name: (arm["best"] or {}).get("lam")
                           for name, arm in correction.items()}
    return out


def status_text(info: dict) -> str:
    """:func:`status` as the lines ``defuse-widgets status`` prints."""
    lines = [f"session {info['path']}"]
    if info.get("data"):
        lines.append(f"  data: {info['data']}")
    if info.get("fidelity") is not None:
        lines.append(f"  generator fidelity: {info['fidelity']:.3f}")
    if info.get("fidelity_warning"):
        lines.append(f"  WARNING: {info['fidelity_warning']}")
    for stage, done in info["stages"].items():
        lines.append(f"  {'[x]' if done else '[ ]'} {stage}")
    if info["n_adversarial"] is not None:
        lines.append(f"  adversarial examples: {info['n_adversarial']}")
    if info["n_regions"] is not None:
        lines.append(f"  candidate regions: {info['n_regions']}")
    if info["votes"]:
        lines.append("  votes: " + ", ".join(f"{a} {n}" for a, n in sorted(info["votes"].items())))
    if info["n_accepted"] is not None:
        lines.append(f"  misclassification regions accepted: {info['n_accepted']}")
    for arm, lam in info["selected_lam"].items():
        lines.append(f"  selected λ ({arm}): {'none' if lam is None else f'{lam:g}'}")
    return "\n".join(lines)


def _data_line(session) -> str:
    """The session's images and classes in one line, from its record when it has one."""
    inputs = session.inputs
    rec = (session.to_record_inputs() or {}).get("data") if inputs is not None else None
    if rec and rec.get("class_names"):
        names = rec["class_names"]
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} classes)" if len(names) > 10
                                         else "")
        sizes = "/".join(str(n) for n in rec.get("sizes", []))
        return (f"{rec.get('name')} from {rec['path']} ({'x'.join(map(str, rec['image_shape']))}"
                f"; train/val/test {sizes}); classes: {shown}")
    return f"{session.config.dataset} (embedded or registered dataset)"


def _row(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("validation", "test", "region_test")} | {
        "lam": rec.get("lam")}


def report(session, *, extra: dict | None = None) -> dict:
    """Build the results of a session and save them as ``results.json``.

    A read-only session (``defuse-widgets report`` without ``--html``) builds
    them and saves nothing.

    Returns
    -------
    dict
        ``config``, ``status``, ``identification``, ``grounding`` (per region:
        real validation and test images, accuracy, verdict), ``labeling`` and, after
        correction, ``correction`` (per arm: tradeoff and best) and ``figure4``
        (``before``, ``baseline``, ``defuse`` rows: validation, test and
        region_test accuracy, λ, number of regions); ``extra`` is merged in
        (for example timings).
    """
    from defuse_widgets.stages.labeling import agreement_summary

    res = {"config": session.config.to_dict()}
    res["fidelity"] = session.fidelity()
    res["status"] = status(session)
    res["class_names"] = list(session.class_names)
    if session.inputs is not None:
        res["inputs"] = session.to_record_inputs()
    adv = session.load_adversarial()
    if adv is not None:
        res["identification"] = dict(n_decoded=adv.n_decoded, n_kept=len(adv), rate=adv.rate,
                                     n_misclassified=adv.params.get("n_misclassified"),
                                     precision=adv.params.get("precision", "fp32"),
                                     n_rechecked=adv.params.get("n_rechecked", 0),
                                     n_source_images=int(len(np.unique(adv.source_index))))
    grounding = _grounding(session, adv)
    if grounding is not None:
        res["grounding"] = grounding
    decisions = session.load_decisions()
    if decisions is not None:
        accepted = [d for d in decisions if d.is_misclassification_region]
        res["labeling"] = dict(n_candidates=len(decisions),
                               n_misclassification_regions=len(accepted),
                               decisions=[asdict(d) for d in decisions],
                               agreement=agreement_summary(decisions))
    correction = session.load_correction()
    if correction and "defuse" in correction and correction["defuse"]["best"] is not None:
        res["correction"] = {name: dict(tradeoff=arm["results"], best=arm["best"],
                                        cancelled=arm["cancelled"],
                                        corrected=arm.get("corrected"),
                                        verdict=arm.get("verdict"))
                             for name, arm in correction.items()}
        n_acc = res.get("labeling", {}).get("n_misclassification_regions")
        res["figure4"] = {"before": {**_row(correction["defuse"]["before"]), "n_regions": None}}
        for name, arm in correction.items():
            if arm["best"] is not None:
                res["figure4"][name] = {**_row(arm["best"]), "n_regions": n_acc
                                        if name in ("defuse", "review") else None}
        res["corrected_model"] = _corrected_model(session, correction, res["figure4"])
    res.update(extra or {})
    if not session.folder.read_only:
        session.folder.save("results.json", res, kind="results")
    return res


def _corrected_model(session, correction: dict, figure4: dict) -> dict:
    """Which λ of which arm is the corrected model, who chose it, and the rule's verdict.

    A λ chosen by hand replaces that arm's Figure 4 row (marked ``chosen_by``).
    """
    from defuse_widgets.workflow.correction_step import corrected_arm

    arm = corrected_arm(correction)
    rec = correction[arm]
    out = dict(arm=arm, lam=(rec["best"] or {}).get("lam"), chosen_by="rule",
               rule=rec["params"].get("selection"), corrected=rec.get("corrected"),
               verdict=rec.get("verdict"), saved=session.folder.listed("corrected_classifier.pt"))
    choice = session.load_lam_choice()
    if choice is not None:
        out.update(arm=choice["arm"], lam=choice["lam"], chosen_by=choice["by"],
                   chosen_at=choice["at"], rule_lam=choice["rule_lam"])
        figure4[choice["arm"]] = {**figure4.get(choice["arm"], {}), **_row(choice["record"]),
                                  "chosen_by": choice["by"]}
    return out


def _grounding(session, adv) -> list | None:
    """Per region: real images and accuracy per split, verdict and its sentence (or None).

    Grounds the regions first (saving ``grounding.json``) when the session has
    regions but no grounding of them yet.
    """
    regions = session.load_regions(adv) if adv is not None else None
    if regions is None:
        return None
    grounding = session.load_grounding(regions)
    if grounding is None:
        grounding = session.ground_regions(regions)
    return grounding.summary()


def figure4_table(results: dict) -> str:
    """Format the before / baseline / Defuse rows as the paper's Figure 4 (accuracies in %)."""
    head = f"{'':<34}{'# Regions':>10}{'Validation':>12}{'Test':>8}{'Misclass. region':>18}"
    lines = [head, "-" * len(head)]
    for label, key in _ROWS:
        r = results.get("figure4", {}).get(key)
        if r is None:
            continue
        n = str(r["n_regions"]) if r.get("n_regions") is not None else "-"
        lines.append(f"{label:<34}{n:>10}{100 * r['validation']:>12.1f}{100 * r['test']:>8.1f}"
                     f"{100 * r['region_test']:>18.1f}")
    model = results.get("corrected_model")
    if model is not None and model["lam"] is not None:
        who = ("the selection rule" if model["chosen_by"] == "rule"
               else f"{model['chosen_by']}, by hand")
        lines.append(f"\nCorrected model: arm {model['arm']!r}, λ = {model['lam']:g}, chosen by "
                     f"{who}.")
        if model.get("verdict"):
            lines.append(model["verdict"])
    return "\n".join(lines)
