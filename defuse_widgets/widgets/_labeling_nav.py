"""Moving through the labeling panel's review samples, by button or key.

:class:`ReviewNavigation` is mixed into
:class:`~defuse_widgets.widgets.labeling_panel.LabelingPanel`; it needs the
panel's ``position`` trait, ``regions``, ``review_size``, ``store``,
``annotator``, ``status``, :meth:`vote` and :meth:`undo`.
"""
from __future__ import annotations

import html

from defuse_widgets.storage.annotations import MISSING, NONE_OF_THE_ABOVE
from defuse_widgets.widgets._labeling_view import KEY_ALIASES

__all__ = ["ReviewNavigation"]


class ReviewNavigation:
    """Sample-to-sample moves and key shortcuts of the labeling panel."""

    def move(self, step: int) -> None:
        """Move ``step`` samples forward (negative: back), across region boundaries."""
        k, i = self.position
        flat = min(max(k * self.review_size + i + int(step), 0),
                   len(self.regions) * self.review_size - 1)
        self.position = divmod(flat, self.review_size)

    def next_unlabelled(self) -> None:
        """Show the annotator's next sample without a vote after the shown one (wrapping)."""
        who, shown = self.annotator.strip(), set(self.store.regions())
        n, start, mine = len(self.regions) * self.review_size, self.position, {}
        for step in range(1, n + 1):
            k, i = divmod((start[0] * self.review_size + start[1] + step) % n, self.review_size)
            if k not in mine:
                names, matrix = self.store.vote_matrix(k) if k in shown else ([], None)
                mine[k] = matrix[names.index(who)] if who in names else None
            if mine[k] is None or mine[k][i] == MISSING:
                self.position = (k, i)
                return
        self.status = html.escape(f"{who}: every sample has your vote.")

    def skip(self) -> None:
        """Leave the current region without voting and show the next region's first sample."""
        self.position = (min(self.position[0] + 1, len(self.regions) - 1), 0)

    def goto(self, region: int, sample: int = 0) -> None:
        """Show review sample ``sample`` of ``region``."""
        self.position = (region, sample)

    def handle_key(self, key: str) -> bool:
        """Act on one key and return whether it is a shortcut.

        Parameters
        ----------
        key : str
            ``"0"``–``"9"`` (vote), ``"n"`` (none of the above), ``"Backspace"``
            (undo), ``"ArrowLeft"`` / ``"ArrowRight"`` (move), as named by the
            browser's ``KeyboardEvent.key``.
        """
        key = KEY_ALIASES.get(key, key)
        actions = {"n": lambda: self.vote(NONE_OF_THE_ABOVE), "Backspace": self.undo,
                   "ArrowLeft": lambda: self.move(-1), "ArrowRight": lambda: self.move(1),
                   "u": self.next_unlabelled}
        if len(key) == 1 and key.isdigit() and int(key) < len(self.class_names):
            actions[key] = lambda: self.vote(int(key))
        if key not in actions:
            return False
        actions[key]()
        return True
