"""Pieces of the dashboard's tabs: region widgets, the correction plot, label review, texts.

Each builds widgets on a :class:`~defuse_widgets.workflow.Session` and returns
them; the dashboard decides when. Everything that is saved goes through the
session (its ``correct``, ``choose_lam`` and vote store).
"""
from __future__ import annotations

import html
from typing import Callable

import ipywidgets as W
import numpy as np
import traitlets

from defuse_widgets.stages.region_summary import region_rows
from defuse_widgets.widgets._background import red
from defuse_widgets.widgets._grounding_view import session_grounding
from defuse_widgets.widgets.label_review_panel import LabelReviewPanel
from defuse_widgets.widgets.labeling_panel import LabelingPanel
from defuse_widgets.widgets.region_gallery import RegionGallery
from defuse_widgets.widgets.region_table import RegionTable
from defuse_widgets.widgets.tradeoff_plot import TradeoffPlot
from defuse_widgets.workflow.config import STAGES
from defuse_widgets.workflow.fidelity import fidelity_warning

__all__ = ["LABEL_REVIEW_OFF", "correction_plot", "damage_note", "decisions_html", "export_slice",
           "map_slices", "open_region", "region_widgets", "rerun_warning", "resume_status",
           "label_review_tab", "save_slice", "send_selection", "sweep_status", "table_rows"]

#: The label-review tab while label review is off: how to turn it on.
LABEL_REVIEW_OFF = (
    "<b>Label review is off.</b> It shows annotators the training and validation images "
    "nearest each accepted region whose label differs from the region's, to check the "
    "labels (not in the paper); the answers give the λ sweep a <code>review</code> arm "
    "fine-tuned on the reviewed labels.<br>Turn it on for a new session with "
    "<code>DefuseConfig(label_review=50)</code> (50 images per region) or "
    "<code>defuse-widgets run --label-review 50</code>; on this session with "
    "<code>dash.session.configure(label_review=50)</code> (the saved correction moves to "
    "<code>archive/</code>), then press <i>Build failure data</i> in tab 4.")


def rerun_warning(session, stage: str) -> str | None:
    """What running ``stage`` again would move to ``archive/`` (``Session.rerun_effects``), as
    the sentence the dashboard asks with; None when nothing would move.
    """
    parts = session.rerun_effects(stage)
    if not parts:
        return None
    return (f"Running {stage} again moves {', '.join(parts)} to archive/ (kept, never "
            f"deleted, but no longer used). Click the button again to confirm.")


def region_widgets(session, regions, annotator: str) -> tuple:
    """The regions' widgets on ``session``: the gallery (tab 2), the labeling panel (tab 3)
    and the region table shown above them and below the λ sweep (tabs 2–4).
    """
    names, c, g = session.data.class_names, session.config, session_grounding(session, regions)
    gallery = RegionGallery(regions, session.vae, session.classifier, names, tau=c.tau,
                            grounding=g, precision=c.precision)
    panel = LabelingPanel(session.open_store(), regions, session.vae, session.classifier,
                          class_names=names, annotator=annotator, review_size=c.review_size,
                          tau=c.tau, seed=c.seed, rho=c.rho, n_finetune=c.n_finetune,
                          on_export=session.export_failure_data, grounding=g)
    table = RegionTable(table_rows(session, regions, g, c.rho))
    return gallery, panel, table


def table_rows(session, regions, grounding, rho: float) -> list:
    """The region table's rows: ``region_rows`` on the session's votes and grounding."""
    return region_rows(regions, store=session.open_store(), grounding=grounding,
                       class_names=session.data.class_names, rho=rho)


def open_region(dashboard, k: int) -> None:
    """Show region ``k`` in the gallery and the labeling panel (a click on its table row)."""
    try:
        dashboard.gallery.mode = "single"
        dashboard.gallery.region = int(k)
        dashboard.labeling_panel.goto(int(k), 0)
    except Exception as exc:   # a row click's error shows in the status line, not a log
        dashboard.say(dashboard.stage, red(f"Opening region {k} failed: "
                                            f"{type(exc).__name__}: {exc}"))
        return
    dashboard.say(dashboard.stage, f"Region {int(k)} is shown in the gallery (tab 2) and "
                   "the labeling panel (tab 3).")


def send_selection(dashboard, selection: dict) -> None:
    """Show a latent-map selection in the distillation tab's gallery, and go to that tab.

    The latent explorer's "Show selection in gallery" calls it with
    :meth:`LatentExplorer.selected_examples`.
    """
    if dashboard.gallery is None:
        raise ValueError("the gallery shows the selection next to the regions: run "
                         "distillation first.")
    dashboard.gallery.show_selection(**selection)
    dashboard.stage = "distillation"


def map_slices(session, map_index) -> dict:
    """The session's saved slices in the map's rows: ``{name: {"train", "adversarial"}}``.

    ``map_index`` (sorted, int) holds the training images the map shows; a slice's
    training images outside it are not drawn.
    """
    out = {}
    for s in session.load_slices():
        pos = np.searchsorted(map_index, s["train"])
        pos = pos[(pos < len(map_index))]
        rows = pos[np.isin(map_index[pos], s["train"])]
        out[s["name"]] = {"train": rows, "adversarial": np.asarray(s["adversarial"], int)}
    return out


def save_slice(dashboard, map_index, name, train_rows, adversarial_rows) -> None:
    """Keep a map selection as slice ``name`` in the session, and list it on the map."""
    session = dashboard.session
    s = session.save_slice(name, train=map_index[np.asarray(train_rows, int)],
                           adversarial=adversarial_rows, by=dashboard.annotator_name())
    dashboard.explorer.slices = map_slices(session, map_index)
    dashboard.say("identification", html.escape(
        f"Slice {s['name']!r} saved in the session: {len(s['train'])} training images, "
        f"{len(s['adversarial'])} adversarial examples.", quote=False))


def export_slice(dashboard, name) -> None:
    """Write slice ``name``'s indices to a new CSV next to the session folder."""
    folder = dashboard.session.path
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    path = folder.parent / f"{folder.name}-slice-{safe}.csv"
    dashboard.session.export_slice(name, path)
    dashboard.say("identification", f"Slice {html.escape(repr(name), quote=False)} exported to "
                   f"<code>{html.escape(str(path))}</code> (kind, index, source_index, "
                   "true_label, predicted_label).")


def decisions_html(decisions: list, class_names) -> str:
    """The accepted regions of the ρ decisions, with their labels and disagreement, as HTML."""
    if not decisions:
        return ""
    accepted = [d for d in decisions if d.is_misclassification_region]
    return (f"{len(accepted)} of {len(decisions)} regions accepted:<ul>" + "".join(
        f"<li>region {d.region} → <b>{html.escape(class_names[d.label])}</b>: "
        f"{d.disagreement:.0%} of {d.n_votes} votes disagree with the classifier</li>"
        for d in accepted) + "</ul>")


def correction_plot(session, sets: dict, who: Callable[[], str],
                    plot: TradeoffPlot | None = None) -> TradeoffPlot:
    """The λ sweep's plot on ``session``: Start runs ``session.correct``, a click ``choose_lam``.

    Parameters
    ----------
    session : Session
    sets : dict
        ``session.failure_data()``.
    who : callable() -> str
        The annotator's name at the time of a click; saved with the chosen λ.
    plot : TradeoffPlot, optional
        A shown plot, not running, to load the sweep into (updated in place) instead of
        making a new one.

    Returns
    -------
    TradeoffPlot
        Showing the session's saved sweep and λ choice, if any.
    """
    c, data = session.config, session.data

    def runner(**kw):
        return session.correct(sets=sets, **kw)

    def chooser(lam, *, arm):
        by = who().strip()
        if not by:
            raise ValueError("annotator must be set before a λ is chosen (it is saved with "
                             "the choice); enter your name in the Labeling tab.")
        return session.choose_lam(lam, by=by, arm=arm)

    args = (session.classifier, data.X_train, data.y_train, sets["X_f"], sets["y_f"])
    kw = dict(eval_sets=sets["eval_sets"], lams=c.lams, epochs=c.epochs, X_adv=sets["X_adv"],
              y_adv=sets["y_adv"], runner=runner, chooser=chooser, schedule=c.schedule)
    if plot is None:
        plot = TradeoffPlot(*args, **kw)
    else:
        plot.load(*args, **kw)
    saved = session.load_correction()
    if saved and (saved.get("defuse") or {}).get("results"):
        plot.show_saved(saved, session.load_lam_choice())
    return plot


def damage_note(session, damaged: dict) -> str:
    """A red note naming the session's damaged files and the tabs that could not load, or ""."""
    files = sorted(session.folder.problems)
    if not files and not damaged:
        return ""
    tabs = [f"tab {1 + STAGES.index(s)}" for s in STAGES if s in damaged]
    what = f"damaged files: {', '.join(files)}" if files else "results that could not be loaded"
    more = f" ({', '.join(tabs)} {'say' if len(tabs) > 1 else 'says'} more)" if tabs else ""
    return "<br>" + red(f"This session has {what}{more}. What does not depend on them works. "
                        "Restore them, or reopen with overwrite=True to move them and the "
                        "results that depend on them to archive/; running their stage again "
                        "also moves them there.")


def resume_status(session, adv, regions) -> str:
    """The dashboard's status line after opening ``session``, as HTML.

    A low generator fidelity (measured now if the session has no record of
    it) leads the line, in red.
    """
    warning = fidelity_warning(session.fidelity())   # measured once, then read from the file
    lead = (f'<b style="color:#b42318">{html.escape(warning)}</b><br>' if warning else "")
    return lead + _resume_text(session, adv, regions)


def _resume_text(session, adv, regions) -> str:
    if adv is None:
        return html.escape(f"New session in {session.path}: start with identification.")
    n_votes = len(session.store.votes()) if session.store is not None else 0
    correction = session.load_correction() or {}
    best = (correction.get("defuse") or {}).get("best")
    done = (f"; a correction with selected λ={best['lam']:g} (test {best['test']:.3f}, "
            f"region test {best['region_test']:.3f})" if best else "")
    choice = session.load_lam_choice() if best else None
    if choice is not None:
        done += f", λ={choice['lam']:g} of {choice['arm']} chosen by {choice['by']}"
    return html.escape(f"Resumed {session.path}: {len(adv)} adversarial examples, "
                       f"{'no' if regions is None else len(regions)} regions, {n_votes} votes"
                       f"{done}.")


def sweep_status(session, plot: TradeoffPlot) -> str:
    """What the finished sweep saved, as HTML for the dashboard's status line."""
    where = f"Sweep results saved to {session.path}"
    if session.folder.listed("corrected_classifier.pt"):
        return html.escape(f"{where}, with the corrected classifier (λ={plot.best['lam']:g}).")
    return html.escape(f"{where}; no corrected classifier: the rule's λ does not fix the "
                       "regions (see under the plot). Click a λ in the plot to keep it by hand.")


def label_review_tab(session, annotator: str) -> tuple[list, list]:
    """The label-review tab's children and its panels (one per split with images to check).

    Answers go to the session's store under :meth:`~defuse_widgets.workflow.Session.review_keys`
    (validation images after the training images); the panels share one annotator name.
    """
    if not session.config.label_review:
        return [W.HTML(LABEL_REVIEW_OFF)], []
    try:
        sets = session.label_review_sets()
    except Exception as exc:   # shown in the tab, never lost in the kernel log
        return [W.HTML(red(f"Could not build the label-review sets: {type(exc).__name__}: "
                           f"{exc}"))], []
    if not sets:
        return [W.HTML("<i>Label review starts once regions are accepted: vote in tab 3, "
                       "then press <b>Build failure data</b> in tab 4.")], []
    d, names = session.data, session.data.class_names
    head = W.HTML(
        f"<b>Label review</b> ({session.config.label_review} images per region): is the "
        "label in the data right, or the label annotators gave the region nearby? Answers "
        "are saved at once; the next λ sweep (tab 4) adds a <code>review</code> arm when an "
        "answer changed a label. Unanswered images keep their label.")
    children, panels = [head], []
    for split, review in sets.items():
        X = d.X_train if split == "train" else d.X_val
        title = "Training images" if split == "train" else "Validation images"
        children.append(W.HTML(f"<h4>{title} ({len(review)})</h4>"))
        if not len(review):
            children.append(W.HTML("<i>None to check.</i>"))
            continue
        panel = LabelReviewPanel(session.open_store(), review, X, len(names),
                                 class_names=names, annotator=annotator,
                                 keys=session.review_keys(split, review))
        if panels:
            traitlets.link((panels[0], "annotator"), (panel, "annotator"))
        children.append(panel)
        panels.append(panel)
    return children, panels
