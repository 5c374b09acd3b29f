"""HTML pieces of the labeling panel's view."""
from __future__ import annotations

import html

from defuse_widgets.stages.labeling import decide_region

__all__ = ["agreement_html"]


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
