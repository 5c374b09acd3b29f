"""The latent explorer's plotly figure: one Scattergl per legend entry, and its events.

The traces follow the "Colour by" choice, so the legend is the colour key and a
click on an entry shows or hides its points, as plotly legends do:

* "true": training points per true class, adversarial examples one black trace
  (paper Fig. 2);
* "predicted": training points per predicted class, each class's adversarial
  examples as diamonds in its colour (one legend entry per class);
* "region": training points one grey trace, adversarial examples per region,
  and those of no region grey.

The last trace is always the region highlight.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from defuse_widgets.widgets._plotly_shared import SharedFigureWidget

__all__ = ["COLOR_BY", "MAP_WIDTH", "MapEvents", "MapGroup", "highlight", "map_figure",
           "map_groups", "map_traces", "replace_traces"]

#: The map's width in px: with its side column (at least 200 px) it fits beside the
#: map in JupyterLab at 1280 px with the file browser open (checked in a browser test).
MAP_WIDTH = 570

#: The map's "Colour by" choices: (label, value).
COLOR_BY = (("true class", "true"), ("predicted class", "predicted"), ("region", "region"))
_NONE = "#c8c8c8"   # training points when colouring by region; adversarial examples of no region
_LEGEND_TITLES = {"true": "true class (◆ adversarial)", "predicted": "predicted class (● "
                  "training, ◆ adversarial)", "region": "region (◆ adversarial)"}


@dataclass(frozen=True)
class MapGroup:
    """One trace of the map: ``kind`` ("train" or "adversarial") points ``idx`` drawn as one
    legend entry ``name`` (``legendgroup``: entries toggled together) in ``color``.
    """

    kind: str
    idx: np.ndarray
    name: str
    color: str
    legendgroup: str
    showlegend: bool = True


def _palette(n_names: int) -> list:
    return list(qualitative.Plotly if n_names <= 10 else qualitative.Alphabet)


def map_groups(color_by, names, *, train_labels, train_predicted, adversarial,
               assignment) -> list:
    """The map's traces for one "Colour by" choice, as :class:`MapGroup` (highlight not included).

    Parameters
    ----------
    color_by : {"true", "predicted", "region"}
    names : list of str
        One per class.
    train_labels : ndarray of shape (n_train,)
    train_predicted : ndarray of shape (n_train,) or None
        Needed for "predicted" only.
    adversarial : AdversarialExamples
    assignment : ndarray of shape (n_adv,) or None
        Region of each adversarial example (-1: none); needed for "region" only.
    """
    palette, n_adv = _palette(len(names)), len(adversarial)
    if color_by == "true":
        return [*_by_class("train", train_labels, names, palette),
                MapGroup("adversarial", np.arange(n_adv), "adversarial", "black", "adversarial")]
    if color_by == "predicted":
        train = _by_class("train", np.asarray(train_predicted), names, palette)
        adv = _by_class("adversarial", np.asarray(adversarial.predicted_label), names, palette)
        shown = {g.legendgroup for g in train}
        return train + [MapGroup(g.kind, g.idx, g.name, g.color, g.legendgroup,
                                 showlegend=g.legendgroup not in shown) for g in adv]
    return _by_region(np.asarray(assignment), len(train_labels))


def _by_class(kind, classes, names, palette) -> list:
    return [MapGroup(kind, np.flatnonzero(classes == c), names[c], palette[c % len(palette)],
                     f"class {c}") for c in np.unique(classes)]


def _by_region(assignment, n_train) -> list:
    colors = qualitative.Alphabet
    groups = [MapGroup("train", np.arange(n_train), "training images", _NONE, "train")]
    groups += [MapGroup("adversarial", np.flatnonzero(assignment == k), f"region {k}",
                        colors[k % len(colors)], f"region {k}")
               for k in np.unique(assignment[assignment >= 0])]
    if (assignment < 0).any():
        groups.append(MapGroup("adversarial", np.flatnonzero(assignment < 0), "no region",
                               _NONE, "no region"))
    return groups


def map_traces(groups, train_xy, adv_xy, adversarial, highlight_xy) -> list:
    """One Scattergl per group, then the region highlight (``highlight_xy``, (m, 2)).

    float32 coordinates and int32 indices travel as binary buffers (70k points: ~0.8 MB).
    """
    xy = {"train": np.asarray(train_xy, np.float32), "adversarial": np.asarray(adv_xy,
                                                                               np.float32)}
    a = adversarial
    adv_data = np.stack([np.arange(len(a)), a.true_label, a.predicted_label], 1).astype(np.int32)
    traces = []
    for g in groups:
        p = xy[g.kind][g.idx]
        common = dict(x=p[:, 0], y=p[:, 1], mode="markers", name=g.name,
                      legendgroup=g.legendgroup, showlegend=g.showlegend)
        if g.kind == "train":
            traces.append(go.Scattergl(**common, customdata=g.idx.astype(np.int32),
                                       marker=dict(size=4, opacity=0.5, color=g.color),
                                       hovertemplate="train %{customdata}<extra>"
                                                     "%{fullData.name}</extra>"))
        else:
            traces.append(go.Scattergl(
                **common, customdata=adv_data[g.idx],
                marker=dict(symbol="diamond", size=6, color=g.color,
                            line=dict(width=0.5, color="black")),
                hovertemplate="adv %{customdata[0]}: %{customdata[1]}→%{customdata[2]}"
                              "<extra></extra>"))
    h = np.asarray(highlight_xy, np.float32).reshape(-1, 2)
    traces.append(go.Scattergl(x=h[:, 0], y=h[:, 1], mode="markers", name="highlighted region",
                               hoverinfo="skip", showlegend=False,
                               marker=dict(symbol="diamond-open", size=11, color="red",
                                           line=dict(width=2))))
    return traces


def _legend_layout(traces, color_by: str) -> dict:
    """The legend (titled for ``color_by``) and margins: below the plot while its entries fit
    in a few rows, a scrolling column at the right beyond.
    """
    n = sum(bool(t.showlegend) for t in traces)
    title = dict(text=_LEGEND_TITLES[color_by], side="top")
    if n <= 12:
        return dict(legend=dict(itemsizing="constant", orientation="h", x=0, y=0,
                                yanchor="top", title=title),
                    margin=dict(l=10, r=10, t=30, b=50))
    return dict(legend=dict(itemsizing="constant", orientation="v", x=1.0, y=1,
                            xanchor="left", title=title),
                margin=dict(l=10, r=120, t=30, b=50))


def map_figure(traces, color_by: str) -> SharedFigureWidget:
    """The map's FigureWidget holding ``traces`` (from :func:`map_traces`)."""
    return SharedFigureWidget(data=traces, layout=dict(
        dragmode="lasso", width=MAP_WIDTH, height=560, xaxis=dict(visible=False),
        yaxis=dict(visible=False), title="t-SNE of the latent space",
        **_legend_layout(traces, color_by)))


def replace_traces(fig, traces, color_by: str) -> None:
    """Put ``traces`` in place of ``fig``'s traces, with the legend for ``color_by``.

    Each step is one redraw in the page; the layout changes while the figure is empty,
    so that only adding the traces draws the points.
    """
    fig.data = ()
    fig.update_layout(**_legend_layout(traces, color_by))
    fig.add_traces(traces)


def highlight(fig, xy, name: str) -> None:
    """Show the points ``xy`` (m, 2) in ``fig``'s last trace, the region highlight."""
    with fig.batch_update():
        fig.data[-1].x, fig.data[-1].y = (xy[:, 0].astype(np.float32),
                                          xy[:, 1].astype(np.float32))
        fig.data[-1].name = name


class MapEvents:
    """Route the map's plotly clicks, hovers and box/lasso selections to point indices.

    plotly calls a trace's handlers with positions in that trace; these turn
    them into ``(kind, index)`` of the explorer's points. One selection event
    goes to every trace in order, so its pieces are gathered and handed over
    at the last trace as one ``select(train=..., adversarial=...)``.

    Parameters
    ----------
    index_of : list of (kind, ndarray)
        From :func:`map_figure`; the last trace (the highlight) is not in it.
    highlighted : callable() -> ndarray
        Indices of the adversarial examples the highlight trace shows now.
    click, hover : callable(kind, index)
    select : callable(train=ndarray, adversarial=ndarray)
    done : callable()
        Called after a click or a selection went through (clears a shown error;
        the hover leaves it).
    guard : callable(what, handler) -> handler
        Shows a handler's error in the widget (``ErrorBox.guard``).
    """

    def __init__(self, index_of, highlighted, *, click, hover, select, done, guard):
        self._index_of, self._highlighted, self._done = index_of, highlighted, done
        self._click, self._hover, self._select, self._guard = click, hover, select, guard
        self._pending = {"train": [], "adversarial": []}

    def connect(self, fig) -> None:
        """Register the handlers on every trace of ``fig``."""
        last = len(self._index_of) - 1
        for t, (kind, idx) in enumerate(self._index_of):
            trace = fig.data[t]
            trace.on_click(self._guard("click", partial(self._point, self._click, kind, idx)))
            trace.on_hover(self._guard("hover", partial(self._point, self._hover, kind, idx)))
            trace.on_selection(self._guard("selection", partial(self._selected, kind, idx,
                                                                t == last)))
            trace.on_deselect(partial(self._selected, kind, idx[:0], t == last))
        for what, handler in (("click", self._click), ("hover", self._hover)):
            getattr(fig.data[-1], f"on_{what}")(self._guard(what, partial(
                self._point, handler, "adversarial", None)))

    def _point(self, handler, kind, idx, trace, points, state) -> None:
        if points.point_inds:
            idx = self._highlighted() if idx is None else idx
            handler(kind, int(idx[points.point_inds[0]]))
            if handler is self._click:
                self._done()

    def _selected(self, kind, idx, last, trace, points, selector=None) -> None:
        self._pending[kind].append(idx[np.asarray(points.point_inds, dtype=np.int64)])
        if last:
            pending, self._pending = self._pending, {"train": [], "adversarial": []}
            self._select(**{k: np.concatenate(v) if v else () for k, v in pending.items()})
            self._done()
