"""The λ tradeoff plot's figure, its hover texts and the line under it (see TradeoffPlot).

Traces, in order: Defuse, baseline, before fine-tuning, the rule's λ (star),
label review, the λ chosen by hand (ring). Each λ point's hover shows its
change in validation and region-validation accuracy against the model before
fine-tuning, with the paired 95 % interval the ``"interval"`` rule uses
(:mod:`~defuse_widgets.stages.correction.lambda_rule`), e.g. "validation −1.3 pts [−2.8, +0.2]".
"""
from __future__ import annotations

import html

from defuse_widgets.widgets._plotly_shared import SharedFigureWidget

__all__ = ["CLICKABLE", "HIDDEN_WHEN_EMPTY", "TRACES", "change_text", "choice_html", "hover_text",
           "label_axes", "set_name", "tradeoff_figure"]

#: The figure's traces, in order.
TRACES = ("defuse", "baseline", "before", "rule", "review", "chosen")
#: Traces whose points a click chooses (the rule's star and the chosen ring lie on top of
#: their arm's point, so they take its clicks).
CLICKABLE = ("defuse", "rule", "review", "chosen")
#: Traces hidden while they have no point (the others always show in the legend).
HIDDEN_WHEN_EMPTY = ("review", "chosen")

_CHANGES = (("validation", "validation"), ("region_validation", "region validation"))


def change_text(record: dict, name: str, label: str | None = None) -> str:
    """``record``'s change on eval set ``name`` with its interval, in points ("" without one).

    Example: ``"validation −1.3 pts [−2.8, +0.2]"``.
    """
    if f"{name}_change" not in record:
        return ""
    c, low, high = (100 * record[f"{name}_change{s}"] for s in ("", "_low", "_high"))
    text = f"{label or name} {c:+.1f} pts [{low:+.1f}, {high:+.1f}]"
    return text.replace("-", "−")


def hover_text(record: dict) -> str:
    """The changes of one λ's record for its hover, each on a new line ("" without them)."""
    return "".join(f"<br>{t}" for t in (change_text(record, n, lab) for n, lab in _CHANGES)
                   if t)


#: How people read the eval sets' names.
SET_NAMES = {"test": "test", "validation": "validation", "region_test": "region-test",
             "region_validation": "region-validation"}


def set_name(key: str) -> str:
    """``"region_test"`` → ``"region-test"``: an eval set's name for people, not a Python key."""
    return SET_NAMES.get(key, key.replace("_", " "))


def tradeoff_figure(x: str = "test", y_key: str = "region_test") -> SharedFigureWidget:
    """The empty figure: accuracy on eval set ``x`` against ``y_key``, one trace per TRACES."""
    fig = SharedFigureWidget(layout=dict(
        title="Test vs misclassification-region accuracy over λ (paper Fig. 5)",
        hovermode="closest", height=420, width=640, margin=dict(l=60, r=20, t=50, b=50)))
    hover = "λ=%{customdata}<br>%{x:.3f}, %{y:.3f}%{text}"   # label_axes names the sets
    fig.add_scatter(name="Defuse", mode="lines+markers+text", hovertemplate=hover,
                    marker=dict(size=9, color="#1f77b4"), **_lam_labels("#1f77b4", "top right"))
    fig.add_scatter(name="Baseline (adversarial examples)", mode="lines+markers+text",
                    hovertemplate=hover, marker=dict(size=8, color="#ff7f0e"),
                    line=dict(dash="dot"), **_lam_labels("#ff7f0e", "bottom left"))
    fig.add_scatter(name="Before fine-tuning", mode="markers",
                    hovertemplate=hover.replace("λ=%{customdata}<br>", ""),
                    marker=dict(size=12, symbol="x", color="#555"))
    fig.add_scatter(name="Selected λ (rule)", mode="markers", hovertemplate=hover,
                    marker=dict(size=20, symbol="star", color="gold",
                                line=dict(width=1, color="black")))
    fig.add_scatter(name="Label review", mode="lines+markers+text", hovertemplate=hover,
                    marker=dict(size=9, color="#2ca02c"), visible=False,
                    **_lam_labels("#2ca02c", "bottom right"))
    fig.add_scatter(name="Chosen by hand", mode="markers", hovertemplate=hover, visible=False,
                    marker=dict(size=26, symbol="circle-open", color="#d62728",
                                line=dict(width=3, color="#d62728")))
    label_axes(fig, x, y_key)
    return fig


def label_axes(fig: SharedFigureWidget, x: str, y_key: str) -> None:
    """Name eval sets ``x`` and ``y_key`` on ``fig``'s axes and in its hovers (no message
    when they already do).
    """
    xn, yn = set_name(x), set_name(y_key)
    hover = (f"λ=%{{customdata}}<br>{xn} %{{x:.3f}}<br>{yn} %{{y:.3f}}%{{text}}"
             "<extra>%{fullData.name}</extra>")
    if fig.layout.xaxis.title.text == f"{xn} accuracy" and fig.data[0].hovertemplate == hover:
        return
    with fig.batch_update():
        fig.layout.xaxis.title.text, fig.layout.yaxis.title.text = (f"{xn} accuracy",
                                                                    f"{yn} accuracy")
        for trace in fig.data:
            trace.hovertemplate = (hover.replace("λ=%{customdata}<br>", "")
                                   if trace.name == "Before fine-tuning" else hover)


def _lam_labels(color: str, position: str) -> dict:
    """Each point labelled with its λ, as in the report's figure ("λ=0.1", small, the arm's
    colour; ``text`` stays the hover's).
    """
    return dict(texttemplate="λ=%{customdata}", textposition=position,
                textfont=dict(size=10, color=color))


def choice_html(*, best: dict, arm: str, verdict: str, corrected: bool | None, chosen: dict,
                saves: bool, can_choose: bool) -> str:
    """The lines under the plot: the rule's λ and its verdict, the λ chosen by hand, a hint.

    Parameters
    ----------
    best : dict
        The rule's record ({} before a sweep); ``arm`` is the arm it belongs to.
    verdict : str
        The rule's verdict sentence; ``corrected`` colours it (green, red, grey).
    chosen : dict
        The choice by hand ({} when none): ``lam``, ``arm``, ``by``.
    saves : bool
        Whether a choice is saved to a session.
    can_choose : bool
        Whether to show how to choose (some λ has finished and the sweep is idle).
    """
    lines = []
    if best:
        colour = {True: "#2a7d2a", False: "#dc0000"}.get(corrected, "#555")
        of = " of the label-review arm" if arm == "review" else ""
        lines.append(f"<b>Rule's choice</b> (★): λ = {best['lam']:g}{of}. <span style='color:"
                     f"{colour}'>{html.escape(verdict)}</span>")
    if chosen:
        who = f" by <b>{html.escape(chosen['by'])}</b>" if chosen.get("by") else ""
        where = ("saved as the session's corrected model" if saves
                 else "not saved (this plot has no session)")
        lines.append(f"<b>Chosen by hand</b> (red ring): λ = {chosen['lam']:g} of arm "
                     f"{html.escape(chosen['arm'])}{who}; {where}. It replaces the rule's "
                     "choice." + _cost_warning(chosen.get("record") or {}))
    if can_choose:
        lines.append("<i>Click a Defuse or label-review point to keep its λ as the corrected "
                     "model. Hover a point for its change in accuracy against the model "
                     "before fine-tuning, with the 95 % interval.</i>")
    return "<br>".join(lines)


def _cost_warning(record: dict) -> str:
    """A red sentence when a λ loses validation accuracy significantly, else ""."""
    high = record.get("validation_change_high")
    if high is None or not high < 0:
        return ""
    return (f" <span style='color:#dc0000'>It loses validation accuracy significantly: "
            f"{100 * record['validation_change']:+.1f} points (95 % interval "
            f"{100 * record['validation_change_low']:+.1f} to {100 * high:+.1f}).</span>")
