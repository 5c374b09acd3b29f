"""The latent explorer's saved-slice controls: name and save the selection, reopen a saved
slice, export its indices. The explorer only hands names and indices to its callbacks
(the dashboard keeps slices in the session).
"""
from __future__ import annotations

import ipywidgets as W

__all__ = ["NO_SLICE", "render_slice_menu", "slice_controls"]

NO_SLICE = "—"


def slice_controls(explorer) -> W.Box:
    """Build the controls on ``explorer`` (a LatentExplorer); hidden until it has an
    ``on_save_slice`` callback.
    """
    explorer._slice_name = W.Text(placeholder="slice name", layout=W.Layout(
        width="120px"), _dom_classes=["defuse-slice-name"])
    explorer._slice_save = W.Button(description="Save slice", icon="bookmark", disabled=True,
                                    layout=W.Layout(width="auto"),
                                    _dom_classes=["defuse-slice-save"])
    explorer._slice_menu = W.Dropdown(options=[NO_SLICE], description="Saved slices",
                                      style={"description_width": "initial"},
                                      layout=W.Layout(width="210px"),
                                      _dom_classes=["defuse-slice-menu"])
    explorer._slice_export = W.Button(description="Export indices", icon="download",
                                      disabled=True, layout=W.Layout(width="auto"),
                                      _dom_classes=["defuse-slice-export"])
    guard = explorer.error.guard
    explorer._slice_save.on_click(guard("save slice", lambda _: _save(explorer)))
    explorer._slice_menu.observe(guard("show slice", lambda ch: _shown(explorer, ch["new"])),
                                 "value")
    explorer._slice_export.on_click(guard("export slice", lambda _: explorer.export_slice(
        explorer._slice_menu.value)))
    row = W.Layout(flex_flow="row wrap")   # wraps rather than cuts in a narrow column
    return W.VBox([W.HBox([explorer._slice_name, explorer._slice_save], layout=row),
                   W.HBox([explorer._slice_menu, explorer._slice_export], layout=row)],
                  layout=W.Layout(display="none"))


def _save(explorer) -> None:
    explorer.save_slice(explorer._slice_name.value)
    explorer._slice_name.value = ""


def _shown(explorer, name) -> None:
    explorer._slice_export.disabled = name == NO_SLICE
    if name != NO_SLICE:
        explorer.show_slice(name)


def render_slice_menu(explorer) -> None:
    """The menu lists ``explorer.slices``; the one shown stays chosen while it exists."""
    if not hasattr(explorer, "_slice_menu"):
        return
    names = [NO_SLICE, *explorer.slices]
    menu = explorer._slice_menu
    if list(menu.options) != names:
        keep = menu.value if menu.value in names else NO_SLICE
        menu.options = names
        menu.value = keep
    explorer._slice_export.disabled = menu.value == NO_SLICE
