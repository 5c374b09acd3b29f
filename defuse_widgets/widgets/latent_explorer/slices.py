"""The latent explorer's saved-slice controls: name and save the selection, reopen a saved
slice, export its indices. The controls only hand names to the explorer's methods (the
dashboard keeps slices in the session).
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as W

__all__ = ["NO_SLICE", "SliceControls"]

NO_SLICE = "—"


class SliceControls:
    """A name box, *Save slice*, the saved-slice menu and *Export indices*.

    Parameters
    ----------
    save, show, export : callable(name)
        The explorer's ``save_slice``, ``show_slice`` and ``export_slice``.
    guard : callable(action, handler) -> handler
        Wraps each handler so that an error is shown, not raised (``ErrorLine.guard``).

    Attributes
    ----------
    row : ipywidgets.VBox
        The controls; hidden until :meth:`show`.
    """

    def __init__(self, save: Callable[[str], None], show: Callable[[str], None],
                 export: Callable[[str], None], guard: Callable):
        self._save_slice, self._show_slice = save, show
        self.name = W.Text(placeholder="slice name", layout=W.Layout(width="120px"),
                           _dom_classes=["defuse-slice-name"])
        self.save = W.Button(description="Save slice", icon="bookmark", disabled=True,
                             layout=W.Layout(width="auto"), _dom_classes=["defuse-slice-save"])
        self.menu = W.Dropdown(options=[NO_SLICE], description="Saved slices",
                               style={"description_width": "initial"},
                               layout=W.Layout(width="210px"),
                               _dom_classes=["defuse-slice-menu"])
        self.export = W.Button(description="Export indices", icon="download", disabled=True,
                               layout=W.Layout(width="auto"),
                               _dom_classes=["defuse-slice-export"])
        self.save.on_click(guard("save slice", lambda _: self._on_save()))
        self.menu.observe(guard("show slice", lambda ch: self._on_menu(ch["new"])), "value")
        self.export.on_click(guard("export slice", lambda _: export(self.menu.value)))
        wrap = W.Layout(flex_flow="row wrap")   # wraps rather than cuts in a narrow column
        self.row = W.VBox([W.HBox([self.name, self.save], layout=wrap),
                           W.HBox([self.menu, self.export], layout=wrap)],
                          layout=W.Layout(display="none"))

    def show(self) -> None:
        """Show the controls (once the explorer has somewhere to keep slices)."""
        self.row.layout.display = None

    def allow_save(self, allowed: bool) -> None:
        """*Save slice* is enabled while something is selected."""
        self.save.disabled = not allowed

    def render(self, slices) -> None:
        """The menu lists ``slices``; the one shown stays chosen while it exists."""
        names = [NO_SLICE, *slices]
        if list(self.menu.options) != names:
            keep = self.menu.value if self.menu.value in names else NO_SLICE
            self.menu.options = names
            self.menu.value = keep
        self.export.disabled = self.menu.value == NO_SLICE

    def _on_save(self) -> None:
        self._save_slice(self.name.value)
        self.name.value = ""

    def _on_menu(self, name: str) -> None:
        self.export.disabled = name == NO_SLICE
        if name != NO_SLICE:
            self._show_slice(name)
