"""The Bayes-TrEx ambiguity matrix (paper Fig. 5): class pairs, click a cell for its samples.

Each cell (i, j) of the heatmap counts the level-set draws of the chains
targeting ``P_i = P_j = 0.5`` whose confidences for i and j both lie in
[0.4, 0.6]; circles mark the pairs the test set covers (the §4.8 baseline).
Clicking a cell (or calling :meth:`AmbiguityMatrix.select`) shows that pair's
draws, decoded, with the classifier's prediction in red.
"""
from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import traitlets

from defuse_widgets._validation import check_int, describe
from defuse_widgets.bayes_trex.evaluation import pair_draws, sampled_ambiguity
from defuse_widgets.bayes_trex.level_sets import LevelSetSampler
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._plotly_shared import SharedFigureWidget
from defuse_widgets.widgets._render import class_labels, grid_png

__all__ = ["AmbiguityMatrix"]


class AmbiguityMatrix(W.VBox):
    """Heatmap of ambiguous class pairs; a clicked cell shows that pair's samples.

    Parameters
    ----------
    sampler : LevelSetSampler
        Fitted with ambiguous targets (e.g. ``all_pair_targets(10)``).
    baseline : ndarray of shape (n_classes, n_classes), optional
        Test-set ambiguity counts
        (:func:`~defuse_widgets.bayes_trex.evaluation.baseline_ambiguity`); covered pairs get
        a circle.
    class_names : sequence of str, optional
    n_show : int, default=16
        Draws shown for the selected pair.
    low, high : float, default=0.4, 0.6
        A draw counts as ambiguous when both confidences lie in [low, high].

    Attributes
    ----------
    counts_ : ndarray of shape (n_classes, n_classes)
        Ambiguous draws per pair (the heatmap).
    figure : plotly.graph_objects.FigureWidget
    error : ErrorBox

    Examples
    --------
    >>> m = AmbiguityMatrix(sampler, baseline=baseline_ambiguity(clf, X_test))  # doctest: +SKIP
    >>> m.select(1, 7); m  # doctest: +SKIP
    """

    pair = traitlets.Tuple((), help="Selected (i, j) with i < j, or () for none.")
    n_show = traitlets.Int(16)
    status = traitlets.Unicode("")

    def __init__(self, sampler: LevelSetSampler, *, baseline=None,
                 class_names: Sequence[str] | None = None, n_show: int = 16,
                 low: float = 0.4, high: float = 0.6, **kwargs):
        if not isinstance(sampler, LevelSetSampler) or not hasattr(sampler, "probs_"):
            raise TypeError(f"sampler must be a fitted LevelSetSampler; got {describe(sampler)}.")
        K = sampler.n_classes_
        self.sampler, self.low, self.high = sampler, low, high
        self.names = class_labels(class_names, K)
        self.counts_ = sampled_ambiguity(sampler, low=low, high=high)
        if baseline is not None:
            baseline = np.asarray(baseline)
            if baseline.shape != (K, K):
                raise ValueError(f"baseline must have shape ({K}, {K}); got {describe(baseline)}.")
        self.baseline = baseline
        self.error = ErrorBox()
        self._image = W.Image(format="png", layout=W.Layout(max_width="560px", display="none"))
        self._caption = W.HTML()
        self.figure = self._build_figure()
        super().__init__([self.error, self._caption_summary(), self.figure, self._caption,
                          self._image], **kwargs)
        self.n_show = check_int("n_show", n_show, low=1)

    def _caption_summary(self) -> W.HTML:
        covered = int((np.triu(self.counts_) > 0).sum())
        text = f"Bayes-TrEx covers <b>{covered}</b> class pairs"
        if self.baseline is not None:
            base = int((np.triu(self.baseline) > 0).sum())
            text += f"; the test set covers <b>{base}</b> (circles)"
        return W.HTML(text + f". A draw is ambiguous when both confidences lie in "
                             f"[{self.low:g}, {self.high:g}]. Click a cell.")

    def _build_figure(self) -> SharedFigureWidget:
        z = np.where(self.counts_ > 0, np.log10(self.counts_.clip(min=1)) + 1, 0.0)
        # The diagonal is blank: None, not NaN, which is not JSON (the kernel
        # refuses it and a browser's JSON parser would drop the whole figure).
        z = [[None if i == j else float(v) for j, v in enumerate(row)] for i, row in enumerate(z)]
        top = int(max(self.counts_.max(initial=0), 1))
        ticks = [10 ** e for e in range(len(str(top)))]   # 1, 10, 100, ... up to the largest
        heat = go.Heatmap(z=z, x=self.names, y=self.names, colorscale="Blues", zmin=0,
                          zmax=np.log10(top) + 1, customdata=self.counts_,
                          colorbar=dict(title=dict(text="ambiguous<br>draws", side="top"),
                                        tickvals=[np.log10(t) + 1 for t in ticks],
                                        ticktext=[f"{t:,}" for t in ticks], thickness=12,
                                        len=0.8), hovertemplate="%{y} vs %{x}: "
                          "%{customdata} ambiguous draws<extra></extra>")
        traces = [heat]
        if self.baseline is not None:
            ii, jj = np.nonzero(self.baseline > 0)
            traces.append(go.Scatter(x=[self.names[j] for j in jj], y=[self.names[i] for i in ii],
                                     mode="markers", name="test set", hoverinfo="skip",
                                     marker=dict(symbol="circle-open", size=14, color="#dc0000")))
        fig = SharedFigureWidget(data=traces, layout=dict(
            width=540, height=460, margin=dict(l=60, r=10, t=10, b=50), showlegend=False,
            plot_bgcolor="white",
            xaxis=dict(type="category", showgrid=False, title="class j of the pair"),
            yaxis=dict(type="category", autorange="reversed", showgrid=False,
                       title="class i of the pair")))
        fig.data[0].on_click(self.error.guard("click", self._clicked))
        return fig

    def _clicked(self, trace, points, state) -> None:
        if not points.xs:
            return
        self.select(self.names.index(str(points.ys[0])), self.names.index(str(points.xs[0])))

    def select(self, i: int, j: int) -> None:
        """Show the draws of pair (i, j) (what a click on that cell calls)."""
        K = len(self.names)
        i, j = check_int("i", i, low=0, high=K - 1), check_int("j", j, low=0, high=K - 1)
        if i == j:
            raise ValueError(f"j must differ from i; got i = j = {i}.")
        self.pair = (min(i, j), max(i, j))

    def pair_draws(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Up to ``n_show`` draws of pair (i, j) (see
        :func:`~defuse_widgets.bayes_trex.evaluation.pair_draws`).
        """
        return pair_draws(self.sampler, i, j, n_show=self.n_show, low=self.low, high=self.high)

    @traitlets.observe("pair", "n_show")
    def _compose(self, change=None) -> None:
        self._show_pair()
        self._image.layout.display = "" if self._image.value else "none"   # no broken icon

    def _show_pair(self) -> None:
        if not self.pair:
            self._caption.value, self._image.value = "", b""
            return
        i, j = self.pair
        codes, probs, ambiguous = self.pair_draws(i, j)
        a, b = self.names[i], self.names[j]
        if not len(codes):
            self._caption.value = f"<b>{a} vs {b}</b>: this pair was not sampled."
            self._image.value = b""
            return
        note = (f"{int(self.counts_[i, j])} ambiguous draws; showing {len(codes)}" if ambiguous
                else "no ambiguous draw (sampling failure); showing the closest")
        base = "" if self.baseline is None else f"; test set: {int(self.baseline[i, j])}"
        self._caption.value = (f"<b>{a} vs {b}</b>: {note}{base}. Mean confidence "
                               f"{probs[:, i].mean():.2f} / {probs[:, j].mean():.2f}.")
        images = self.sampler.decode_samples(codes)
        labels = [self.names[int(k)] for k in probs.argmax(1)]
        self._image.value = grid_png(images, labels, ncols=8, size=64)
        self.status = f"{a} vs {b}"
