"""The labeling queue: which regions to visit, and moving through them by button or key.

:func:`~defuse_widgets.stages.labeling_queue.region_states` and
:func:`~defuse_widgets.stages.labeling_queue.in_queue` (the core) say where each region
stands; :class:`ReviewNavigation` is mixed into
:class:`~defuse_widgets.widgets.labeling_panel.LabelingPanel`; it needs the
panel's ``position``, ``queue_filter``, ``grid_mode`` and ``grid_selection``
traits, ``regions``, ``review_size``, ``store``, ``annotator``, ``rho``,
``status``, ``class_names``, :meth:`submit` and :meth:`undo`.
"""
from __future__ import annotations

import html

from defuse_widgets._validation import check_int
from defuse_widgets.stages.labeling_queue import RegionState, in_queue, region_states
from defuse_widgets.storage.annotations import MISSING, NONE_OF_THE_ABOVE
from defuse_widgets.widgets.labeling_panel.view import KEY_ALIASES, QUEUE_FILTERS

__all__ = ["ReviewNavigation", "check_index"]


def check_index(name: str, value, n: int, what: str) -> int:
    """Return ``value`` as int after checking it is an index in ``[0, n - 1]``.

    Raises ValueError (TypeError for a non-integer) naming ``name``, the range
    of ``what`` and the value given.
    """
    value = check_int(name, value)
    if not 0 <= value < n:
        raise ValueError(f"{name} must be {what} in [0, {n - 1}]; got {value}.")
    return value


class ReviewNavigation:
    """Sample and region moves of the labeling panel, its queue, and its key shortcuts."""

    def queue(self) -> list[int]:
        """The regions that ``queue_filter`` keeps, in order."""
        return [s.region for s in self._states() if in_queue(s, self.queue_filter)]

    def _states(self) -> list[RegionState]:
        return region_states(self.store, len(self.regions), self.review_size,
                             self.annotator.strip(), self.rho)

    def _my_row(self, region: int) -> list[int]:
        """The annotator's vote per sample of ``region`` (``MISSING`` where none)."""
        who = self.annotator.strip()
        if region in self.store.regions():
            names, matrix = self.store.vote_matrix(region)
            if who in names:
                return matrix[names.index(who)].tolist()
        return [MISSING] * self.review_size

    def _entry(self, region: int) -> tuple[int, int]:
        """Where a jump to ``region`` lands: its first sample without the annotator's vote."""
        row = self._my_row(region)
        return (region, row.index(MISSING) if MISSING in row else 0)

    def _empty_queue(self) -> str:
        return html.escape(f"No region matches the queue filter “"
                           f"{QUEUE_FILTERS[self.queue_filter]}”: choose “all regions” "
                           "to see every region.")

    def _enter_queue(self) -> None:
        """After a filter change: say what the queue holds, and leave a region it drops."""
        queue = self.queue()
        if not queue:
            self.status = self._empty_queue()
        elif self.position[0] not in queue:
            self.next_region()
        else:
            self.status = html.escape(f"Queue: {len(queue)} region{'s' * (len(queue) != 1)} "
                                      f"({QUEUE_FILTERS[self.queue_filter]}).")

    def select_all(self) -> None:
        """Select every sample of the region in grid mode (switching it on); none if all were."""
        every = set(range(self.review_size))
        self.grid_mode = True
        self.grid_selection = set() if self.grid_selection == every else every

    def move(self, step: int) -> None:
        """Move ``step`` samples forward (negative: back), across region boundaries."""
        k, i = self.position
        flat = min(max(k * self.review_size + i + int(step), 0),
                   len(self.regions) * self.review_size - 1)
        self.position = divmod(flat, self.review_size)

    def next_unlabelled(self) -> None:
        """Show the annotator's next sample without a vote after the shown one (wrapping),
        in the regions of the queue.
        """
        who, queue = self.annotator.strip(), set(self.queue())
        if not queue:
            self.status = self._empty_queue()
            return
        n, start, mine = len(self.regions) * self.review_size, self.position, {}
        for step in range(1, n + 1):
            k, i = divmod((start[0] * self.review_size + start[1] + step) % n, self.review_size)
            if k not in queue:
                continue
            if k not in mine:
                mine[k] = self._my_row(k)
            if mine[k][i] == MISSING:
                self.position = (k, i)
                return
        where = "" if self.queue_filter == "all" else " in the queue"
        self.status = html.escape(f"{who}: every sample{where} has your vote.")

    def next_region(self, step: int = 1) -> None:
        """Show the next region of the queue (``step=-1``: the previous one), wrapping.

        The panel lands on the region's first sample without the annotator's
        vote (the first sample when all have one). When the queue is empty the
        panel stays and the status says so.
        """
        queue, k = self.queue(), self.position[0]
        if not queue:
            self.status = self._empty_queue()
            return
        if step >= 0:
            target = next((r for r in queue if r > k), queue[0])
        else:
            target = next((r for r in reversed(queue) if r < k), queue[-1])
        self.position = self._entry(target)
        row = self._my_row(target)
        self.status = html.escape(f"Region {target}: {sum(v != MISSING for v in row)} of "
                                  f"{len(row)} samples have your vote.")

    def previous_region(self) -> None:
        """Show the previous region of the queue (wrapping); see :meth:`next_region`."""
        self.next_region(-1)

    def skip(self) -> None:
        """Leave the region without voting: the same move as :meth:`next_region`."""
        self.next_region()

    def goto(self, region: int, sample: int = 0) -> None:
        """Show review sample ``sample`` of ``region``, whatever the queue filter.

        Raises
        ------
        ValueError
            When ``region`` or ``sample`` is out of range (the message names it).
        """
        region = check_index("region", region, len(self.regions), "a region index")
        sample = check_index("sample", sample, self.review_size, "a review sample index")
        self.position = (region, sample)

    def handle_key(self, key: str) -> bool:
        """Act on one key and return whether it is a shortcut.

        Parameters
        ----------
        key : str
            ``"0"``–``"9"`` (vote: for the shown sample, or in grid mode for
            every selected one), ``"n"`` (none of the above), ``"Backspace"``
            (undo), ``"ArrowLeft"`` / ``"ArrowRight"`` (move), ``"u"`` (next
            sample without a vote), ``"]"`` or ``"Enter"`` (next region of the
            queue), ``"["`` (previous region), ``"g"`` (grid mode on/off),
            ``"a"`` (select all in the grid), as named by the browser's
            ``KeyboardEvent.key``.
        """
        key = KEY_ALIASES.get(key, key)
        actions = {"n": lambda: self.submit(NONE_OF_THE_ABOVE), "Backspace": self.undo,
                   "ArrowLeft": lambda: self.move(-1), "ArrowRight": lambda: self.move(1),
                   "u": self.next_unlabelled, "]": self.next_region,
                   "[": self.previous_region, "a": self.select_all,
                   "g": lambda: setattr(self, "grid_mode", not self.grid_mode)}
        if len(key) == 1 and key.isdigit() and int(key) < len(self.class_names):
            actions[key] = lambda: self.submit(int(key))
        if key not in actions:
            return False
        actions[key]()
        return True
