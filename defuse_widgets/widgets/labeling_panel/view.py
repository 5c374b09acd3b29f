"""Pieces of the labeling panel's view: HTML, the region selector, and its key bindings."""
from __future__ import annotations

import html

import ipywidgets as widgets
import traitlets

from defuse_widgets.stages.labeling import decide_region
from defuse_widgets.widgets._grounding_view import grounding_html

__all__ = ["KEYS_HELP", "KEY_ALIASES", "QUEUE_FILTERS", "RegionSelector", "agreement_html",
           "decision_text", "done_html", "done_message", "queue_html", "region_option",
           "sample_html"]

#: Other keys that act as a shortcut key.
KEY_ALIASES = {",": "ArrowLeft", ".": "ArrowRight", "N": "n", "Enter": "]", "A": "a",
               "G": "g"}

#: The labeling queue's filters: value of ``LabelingPanel.queue_filter`` -> its label.
QUEUE_FILTERS = {"all": "all regions", "unlabelled": "only unlabelled",
                 "disagree": "only where annotators disagree"}

KEYS_HELP = (
    "<b>Keys</b> (click the key box first; JupyterLab's command-mode shortcuts such as "
    "<code>0 0</code> or <code>d d</code> do not fire inside it): "
    "<code>0</code>–<code>9</code> vote for that class, <code>n</code> none of the above, "
    "<code>Backspace</code> undo, <code>←</code>/<code>→</code> previous/next sample, "
    "<code>u</code> next sample without your vote, <code>]</code> or <code>Enter</code> "
    "next region of the queue, <code>[</code> previous one, <code>g</code> grid mode on/off, "
    "<code>a</code> select all samples in the grid (a digit then votes for every selected "
    "one).")


def sample_html(region: int, n_regions: int, sample: int, review_size: int, predicted: str,
                vote: str, grounding=None, *, confidence: float | None = None) -> str:
    """The shown sample: region, position, the classifier's prediction and its confidence
    (softmax probability), the vote, and the region's real images when ``grounding`` (a
    RegionGrounding) is given.
    """
    pred, vote = html.escape(predicted), html.escape(vote)
    conf = "" if confidence is None else f" with confidence {float(confidence):.0%}"
    return (f"<b>Region {region}</b> (of {n_regions}), sample {sample + 1} of {review_size}"
            f"<br>classifier predicts <b style='color:#dc0000'>{pred}</b>{conf}<br>your vote: "
            f"<b>{vote}</b>" + grounding_html(grounding, region))


def agreement_html(names, matrix, predicted, region: int, rho: float, class_names) -> str:
    """Who voted on ``region``, how much they agree, and the ρ decision, as HTML.

    A lone annotator sees the decision their own votes make (agreement needs
    a second one), and everyone sees the rule: more than ρ of the class votes
    must disagree with the classifier; "none of the above" counts neither way.
    """
    rule = (f"<br><small>Accepted when <i>more than</i> ρ = {rho:g} of the class votes "
            "disagree with the classifier; “None of the above” votes count neither way."
            "</small>")
    if not names:
        return "<i>No votes on this region yet.</i>" + rule
    d = decide_region(matrix, predicted, region=region, rho=rho, n_classes=len(class_names))
    if d.label is None:
        return (f"<i>{len(names)} annotator(s), only “None of the above” votes so far: no "
                "decision.</i>" + rule)
    verdict = (f"<b style='color:#dc0000'>misclassification region</b>, label <b>"
               f"{html.escape(class_names[d.label])}</b>"
               if d.is_misclassification_region else "<b>not a misclassification region</b>")
    who = (f"1 annotator ({html.escape(names[0])}); agreement between people appears once a "
           "second one votes" if len(names) == 1 else
           f"{len(names)} annotators ({html.escape(', '.join(names))})<br>agreement "
           f"{d.agreement:.0%}")
    return (f"{who}<br>disagreement with the classifier {d.disagreement:.0%} (ρ = {rho:g})"
            f"<br>decision so far: {verdict}" + rule)


def decision_text(decision, class_names) -> str:
    """The ρ rule's verdict of a RegionDecision in words (plain text)."""
    if decision.label is None:
        return "no decision (only “None of the above” votes)"
    if decision.is_misclassification_region:
        return f"misclassification region, label {class_names[decision.label]}"
    return "not a misclassification region"


def done_message(state, class_names) -> str:
    """The status line's words (HTML-escaped) once the annotator voted all of a RegionState."""
    return html.escape(f" Region {state.region} is done: every sample has your vote; decision "
                       f"so far: {decision_text(state.decision, class_names)}. Next region: "
                       "] or Enter.")


def region_option(state, class_names, *, queued: bool = True) -> str:
    """The region selector's label of a RegionState: progress, or the decision once done.

    Examples: ``"3 · 4/10 voted"``, ``"3 · accepted 8"``, ``"3 · rejected · annotators
    disagree"``; ``queued=False`` adds that the queue filter leaves the region out.
    """
    d = state.decision
    if not state.complete:
        text = f"{state.n_mine}/{state.n_samples} voted"
    elif d is None or d.label is None:
        text = "voted, no decision"
    elif d.is_misclassification_region:
        text = f"accepted {class_names[d.label]}"
    else:
        text = "rejected"
    text = f"{state.region} · {text}" + (" · annotators disagree" if state.disagree else "")
    return text + ("" if queued else " (not in the queue)")


def queue_html(n_queued: int, n_regions: int, queue_filter: str) -> str:
    """How many regions the queue filter keeps; in red when it keeps none."""
    if n_queued:
        return f"<small>{n_queued} of {n_regions} regions in the queue</small>"
    return ("<b style='color:#dc0000'>No region matches “"
            f"{html.escape(QUEUE_FILTERS[queue_filter])}”</b>")


def done_html() -> str:
    """The banner shown once the annotator has voted every sample of the shown region."""
    return ("<div style='background:#e8f5e9;border-left:4px solid #2e7d32;padding:2px 8px'>"
            "✓ You have voted every sample here: the decision below is what your votes "
            "made. <b>Next region</b> (key <code>]</code> or <code>Enter</code>) moves on."
            "</div>")


class RegionSelector(widgets.HBox):
    """The labeling queue's controls: a region dropdown, the queue filter, and a count.

    Attributes
    ----------
    region : int or None
        The region picked or shown; it need not be listed (the dropdown then
        shows no selection until :meth:`show` lists it).
    queue_filter : str
        One of :data:`QUEUE_FILTERS`.
    """

    region = traitlets.Int(None, allow_none=True)
    queue_filter = traitlets.Unicode("all")

    def __init__(self, n_regions: int):
        super().__init__()
        self._options = [(str(k), k) for k in range(n_regions)]
        self._dropdown = widgets.Dropdown(description="Region", options=self._options,
                                          layout=widgets.Layout(width="300px"))
        self._link = traitlets.link((self, "region"), (self._dropdown, "value"), transform=(
            self._listed, lambda r: self.region if r is None else r))
        self._filter = widgets.Dropdown(description="Queue", layout=widgets.Layout(
            width="300px"), options=[(label, key) for key, label in QUEUE_FILTERS.items()])
        traitlets.link((self, "queue_filter"), (self._filter, "value"))
        self._info = widgets.HTML()
        self.children = [self._dropdown, self._filter, self._info]

    def _listed(self, region: int | None) -> int | None:
        return region if any(r == region for _, r in self._options) else None

    def show(self, options: list, info: str) -> None:
        """List ``options``, ``(label, region)`` pairs, and show ``info`` (HTML) beside them."""
        if options != self._options:
            self._options = options
            self._link.unlink()   # new options reset the dropdown's selection: not a pick
            self._dropdown.options = options
            self._link.link()
        self._info.value = info
