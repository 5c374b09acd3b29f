"""The latent explorer's plotly figure: one Scattergl per class, adversarial diamonds, highlight;
its colours and its events."""
from __future__ import annotations

from functools import partial

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from defuse_widgets.widgets._plotly_shared import SharedFigureWidget

__all__ = ["COLOR_BY", "MapEvents", "highlight", "map_figure", "recolor", "trace_colors"]


def map_figure(embedding, labels, names, adv_xy, adversarial):
    """Build the map's FigureWidget.

    Parameters
    ----------
    embedding : ndarray of shape (n_train, 2)
    labels : ndarray of shape (n_train,)
    names : list of str
        One per class.
    adv_xy : ndarray of shape (n_adv, 2)
    adversarial : AdversarialExamples

    Returns
    -------
    fig : plotly.graph_objects.FigureWidget
        Its last trace is the (empty) region highlight.
    index_of : list of (kind, ndarray)
        Per trace but the last: "train" or "adversarial" and the indices it shows.
    """
    # float32 coordinates and int32 indices travel as binary buffers (70k points: ~0.8 MB)
    xy, adv_xy = np.asarray(embedding, np.float32), np.asarray(adv_xy, np.float32)
    palette = qualitative.Plotly if len(names) <= 10 else qualitative.Alphabet
    traces, index_of = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        traces.append(go.Scattergl(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=names[c],
            marker=dict(size=4, opacity=0.5, color=palette[c % len(palette)]),
            customdata=idx.astype(np.int32),
            hovertemplate="train %{customdata}<extra>%{fullData.name}</extra>"))
        index_of.append(("train", idx))
    a = adversarial
    traces.append(go.Scattergl(
        x=adv_xy[:, 0], y=adv_xy[:, 1], mode="markers", name="adversarial",
        marker=dict(symbol="diamond", size=6, color="black",
                    line=dict(width=0.5, color="black")),   # outlined when coloured
        customdata=np.stack([np.arange(len(a)), a.true_label, a.predicted_label],
                            1).astype(np.int32),
        hovertemplate="adv %{customdata[0]}: %{customdata[1]}→%{customdata[2]}"
                      "<extra></extra>"))
    index_of.append(("adversarial", np.arange(len(a))))
    traces.append(go.Scattergl(x=[], y=[], mode="markers", name="region", hoverinfo="skip",
                               marker=dict(symbol="diamond-open", size=11, color="red",
                                           line=dict(width=2))))
    fig = SharedFigureWidget(data=traces, layout=dict(
        dragmode="lasso", width=640, height=600, margin=dict(l=10, r=10, t=30, b=50),
        xaxis=dict(visible=False), yaxis=dict(visible=False),
        # a horizontal legend below the plot keeps class names inside the 640px box
        legend=dict(itemsizing="constant", orientation="h", x=0, y=0, yanchor="top"),
        title="t-SNE of the latent space"))
    return fig, index_of


#: The map's "Colour by" choices: (label, value).
COLOR_BY = (("true class", "true"), ("predicted class", "predicted"), ("region", "region"))
_NONE = "#c8c8c8"   # training points when colouring by region; adversarial examples of no region


def trace_colors(color_by, index_of, names, *, train_labels, train_predicted, adversarial,
                 assignment):
    """Marker colours of every trace but the highlight, for one "Colour by" choice.

    Parameters
    ----------
    color_by : {"true", "predicted", "region"}
        "true": training points by class, adversarial examples black (paper Fig. 2);
        "predicted": every point by the classifier's prediction; "region":
        adversarial examples by region (grey when in none), training points grey.
    index_of : list of (kind, ndarray)
        From :func:`map_figure`.
    train_labels : ndarray of shape (n_train,)
    train_predicted : ndarray of shape (n_train,) or None
        Needed for "predicted" only.
    adversarial : AdversarialExamples
    assignment : ndarray of shape (n_adv,) or None
        Region of each adversarial example (-1: none); needed for "region" only.

    Returns
    -------
    list of str or ndarray of str
        One entry per trace: a colour, or one colour per point.
    """
    palette = np.asarray(qualitative.Plotly if len(names) <= 10 else qualitative.Alphabet)
    regions = np.asarray(qualitative.Alphabet)
    out = []
    for kind, idx in index_of:
        if color_by == "true":
            out.append(palette[train_labels[idx[0]] % len(palette)] if kind == "train" and
                       len(idx) else "black")
        elif color_by == "predicted":
            classes = (train_predicted[idx] if kind == "train"
                       else adversarial.predicted_label[idx])
            out.append(palette[np.asarray(classes) % len(palette)])
        elif kind == "train":
            out.append(_NONE)
        else:
            a = np.asarray(assignment)[idx]
            out.append(np.where(a >= 0, regions[np.maximum(a, 0) % len(regions)], _NONE))
    return out


def highlight(fig, xy, name: str) -> None:
    """Show the points ``xy`` (m, 2) in ``fig``'s last trace, the region highlight."""
    with fig.batch_update():
        fig.data[-1].x, fig.data[-1].y = (xy[:, 0].astype(np.float32),
                                          xy[:, 1].astype(np.float32))
        fig.data[-1].name = name


def recolor(fig, colors) -> None:
    """Set the marker colour of ``fig``'s traces to ``colors`` (from :func:`trace_colors`)."""
    with fig.batch_update():
        for trace, color in zip(fig.data, colors):
            trace.marker.color = color


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
