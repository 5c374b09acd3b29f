"""The latent explorer's plotly figure: one Scattergl per class, adversarial diamonds, highlight."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

__all__ = ["map_figure"]


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
        marker=dict(symbol="diamond", size=6, color="black"),
        customdata=np.stack([np.arange(len(a)), a.true_label, a.predicted_label],
                            1).astype(np.int32),
        hovertemplate="adv %{customdata[0]}: %{customdata[1]}→%{customdata[2]}"
                      "<extra></extra>"))
    index_of.append(("adversarial", np.arange(len(a))))
    traces.append(go.Scattergl(x=[], y=[], mode="markers", name="region", hoverinfo="skip",
                               marker=dict(symbol="diamond-open", size=11, color="red",
                                           line=dict(width=2))))
    fig = go.FigureWidget(data=traces, layout=dict(
        dragmode="lasso", width=640, height=600, margin=dict(l=10, r=10, t=30, b=50),
        xaxis=dict(visible=False), yaxis=dict(visible=False),
        # a horizontal legend below the plot keeps class names inside the 640px box
        legend=dict(itemsizing="constant", orientation="h", x=0, y=0, yanchor="top"),
        title="t-SNE of the latent space"))
    return fig, index_of
