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
    "<code>Backspace</code> undo, <code>←</code>/<code>→</code> previous/next sample.")


def sample_html(region: int, n_regions: int, sample: int, review_size: int, predicted: str,
                vote: str, grounding=None) -> str:
    """The shown sample: region, position, the classifier's prediction, the vote, and the
    region's real images when ``grounding`` (a RegionGrounding) is given."""
    pred, vote = html.escape(predicted), html.escape(vote)
    return (f"<b>Region {region}</b> (of {n_regions}), sample {sample + 1} of {review_size}"
            f"<br>classifier predicts <b style='color:#dc0000'>{pred}</b><br>your vote: "
            f"<b>{vote}</b>" + grounding_html(grounding, region))


def agreement_html(names, matrix, predicted, region: int, rho: float, class_names) -> str:
    """Who voted on ``region``, how much they agree, and the ρ decision, as HTML."""
    if len(names) < 2:
        return (f"<i>{len(names)} annotator(s) so far; agreement and decision appear "
                "once two have voted.</i>")
    d = decide_region(matrix, predicted, region=region, rho=rho)
    verdict = (f"<b style='color:#dc0000'>misclassification region</b>, label <b>"
               f"{html.escape(class_names[d.label])}</b>"
               if d.is_misclassification_region else "<b>not a misclassification region</b>")
    return (f"{len(names)} annotators ({html.escape(', '.join(names))})<br>agreement "
            f"{d.agreement:.0%}, disagreement with the classifier {d.disagreement:.0%} "
            f"(ρ = {rho:g})<br>decision: {verdict}")
