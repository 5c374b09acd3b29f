"""HTML pieces of the labeling panel's view, and its key bindings."""
from __future__ import annotations

import html

from defuse_widgets.stages.labeling import decide_region
from defuse_widgets.widgets._grounding_view import grounding_html

__all__ = ["KEYS_HELP", "KEY_ALIASES", "agreement_html", "sample_html"]

#: Other keys that act as a shortcut key.
KEY_ALIASES = {",": "ArrowLeft", ".": "ArrowRight", "N": "n"}

KEYS_HELP = (
    "<b>Keys</b> (click the key box first; JupyterLab's command-mode shortcuts such as "
    "<code>0 0</code> or <code>d d</code> do not fire inside it): "
    "<code>0</code>–<code>9</code> vote for that class, <code>n</code> none of the above, "
    "<code>Backspace</code> undo, <code>←</code>/<code>→</code> previous/next sample, "
    "<code>u</code> next sample without your vote.")


def sample_html(region: int, n_regions: int, sample: int, review_size: int, predicted: str,
                vote: str, grounding=None, *, confidence: float | None = None) -> str:
    """The shown sample: region, position, the classifier's prediction and its confidence
    (softmax probability), the vote, and the region's real images when ``grounding`` (a
    RegionGrounding) is given."""
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
