"""The labeling panel's review tiles: a strip of thumbnails to move along, or a grid to select in.

Each tile shows one review sample's thumbnail and the annotator's vote on it as
a small dark badge, which looks unlike the class buttons: a badge shows a vote,
it is not one. In strip mode a tile's button goes to its sample; in grid mode a
tile's toggle adds the sample to ``selection``, for which the panel then votes.
"""
from __future__ import annotations

import html
from typing import Callable

import ipywidgets as widgets
import traitlets

__all__ = ["ReviewTiles", "vote_badge"]


def vote_badge(vote: str | None) -> str:
    """A small dark badge with the annotator's vote; a faint dash where there is none."""
    if vote is None:
        return "<div style='text-align:center;color:#aaa;font-size:11px'>–</div>"
    return ("<div style='text-align:center'><span class='defuse-vote-badge' title='your vote' "
            "style='display:inline-block;min-width:14px;padding:0 6px;border-radius:9px;"
            "background:#424242;color:#fff;font-size:11px;font-weight:bold'>"
            f"{html.escape(vote)}</span></div>")


class ReviewTiles(widgets.GridBox):
    """Thumbnails of one region's review samples, with the annotator's votes as badges.

    Parameters
    ----------
    n_samples : int
        Review samples per region (one tile each).
    on_go : callable(sample), optional
        Called with a sample index when its tile's button is clicked (strip mode).

    Attributes
    ----------
    grid : bool
        Grid mode: larger tiles in rows of five, a toggle on each instead of a button.
    selection : set of int
        The samples whose toggle is on.
    current : int
        The sample shown on the review image, outlined in strip mode.
    thumbs : list of bytes
        A PNG per sample.
    votes : list of (str or None)
        The annotator's vote per sample as text; None where there is none.
    """

    grid = traitlets.Bool(False)
    selection = traitlets.Set(traitlets.Int())
    current = traitlets.Int(0)
    thumbs = traitlets.List(traitlets.Bytes())
    votes = traitlets.List()

    def __init__(self, n_samples: int, on_go: Callable[[int], object] | None = None):
        super().__init__(layout=widgets.Layout(grid_gap="2px"))
        n = int(n_samples)
        self.images = [widgets.Image(format="png", width=48, height=48) for _ in range(n)]
        self.badges = [widgets.HTML() for _ in range(n)]
        self.buttons = [widgets.Button(description=f"#{j + 1}", tooltip=f"go to sample {j + 1}",
                                       layout=widgets.Layout(width="54px")) for j in range(n)]
        self.picks = [widgets.ToggleButton(description=f"#{j + 1}", layout=widgets.Layout(
            width="54px"), tooltip=f"select sample {j + 1} for the next vote")
            for j in range(n)]
        for j, (button, pick) in enumerate(zip(self.buttons, self.picks)):
            if on_go is not None:
                button.on_click(lambda _, j=j: on_go(j))
            traitlets.link((self, "selection"), (pick, "value"),
                           transform=(lambda s, j=j: j in s,
                                      lambda on, j=j: self._with(j, on)))
        self.children = [widgets.VBox(parts) for parts in
                         zip(self.images, self.badges, self.buttons, self.picks)]
        self._render()

    def _with(self, sample: int, selected: bool) -> set:
        """``selection`` with ``sample`` added (``selected``) or removed."""
        return (self.selection | {sample}) if selected else (self.selection - {sample})

    @traitlets.observe("grid", "selection", "current", "thumbs", "votes")
    def _render(self, change=None) -> None:
        """Lay the tiles out from ``grid``; outline, fill and badge them from the rest."""
        grid, n = self.grid, len(self.images)
        self.layout.grid_template_columns = f"repeat({min(n, 5) if grid else n}, auto)"
        for j, (img, badge, button, pick) in enumerate(zip(self.images, self.badges,
                                                           self.buttons, self.picks)):
            if j < len(self.thumbs):
                img.value = self.thumbs[j]
            img.width = img.height = 96 if grid else 48
            marked, colour = (j in self.selection, "#ff7f0e") if grid else \
                (j == self.current, "#1f77b4")
            img.layout.border = f"3px solid {colour if marked else 'transparent'}"
            badge.value = vote_badge(self.votes[j] if j < len(self.votes) else None)
            button.button_style = "info" if j == self.current else ""
            button.layout.display, pick.layout.display = ("none", None) if grid else \
                (None, "none")
