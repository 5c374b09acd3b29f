"""A sortable, filterable table of the misclassification regions (one row per region).

The rows come from :func:`~defuse_widgets.stages.region_summary.region_rows`:
weight π, members, top confusions, votes, disagreement, the ρ decision, the
grounding verdict and the classifier's accuracy on the region's real images.
The table is a small anywidget (inline ES module and CSS, no JS build, no
network): a click on a column header sorts by it (a second click flips the
order), the search box keeps the rows whose text contains it, the decision menu
keeps accepted, rejected or unlabelled regions, and a click on a row (or Enter
or Space on a focused row; ArrowUp and ArrowDown move the focus) selects its
region. The page only sorts and filters; the cell texts are made here, and
:meth:`RegionTable.visible_rows` applies the page's rule in Python.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterable

import anywidget
import traitlets

from defuse_widgets._validation import check_choice, check_int, describe
from defuse_widgets.stages.grounding import VERDICT_WORDS
from defuse_widgets.stages.region_summary import DECISIONS

__all__ = ["COLUMNS", "RegionTable", "cell_texts"]

#: (key, header) of each column, in order; a row holds a sortable value per key.
COLUMNS = (("region", "Region"), ("weight", "Weight π"), ("members", "Members"),
           ("top_confusions", "Top confusions (true → predicted)"), ("votes", "Votes"),
           ("disagreement", "Disagreement"), ("decision", "Decision"),
           ("verdict", "Real data"), ("accuracy", "Real-image accuracy"))

_KEYS = [key for key, _ in COLUMNS]
_VERDICTS = {**{v: short for v, (short, _) in VERDICT_WORDS.items()}, None: "–"}

_ESM = """
function compare(a, b, key, descending) {
  const x = a[key] ?? null, y = b[key] ?? null;
  if (x === null || y === null) {
    if (x === y) return a.region - b.region;
    return x === null ? 1 : -1;
  }
  const order = x < y ? -1 : x > y ? 1 : 0;
  return (descending ? -order : order) || a.region - b.region;
}

function visible(model) {
  const rows = model.get("rows"), cells = model.get("cells");
  const needle = model.get("filter_text").trim().toLowerCase();
  const wanted = model.get("decision_filter");
  const key = model.get("sort_by"), descending = model.get("descending");
  return rows.map((row, i) => [row, cells[i] || []])
    .filter(([row, text]) => (wanted === "all" || row.decision === wanted) &&
      (!needle || text.some((t) => t.toLowerCase().includes(needle))))
    .sort(([a], [b]) => compare(a, b, key, descending));
}

// Lumino matches a shortcut's selector (":focus" inside a notebook in command mode)
// from the focused element up to the first one carrying this attribute, so every
// element that takes the focus carries it: arrows and Enter then reach the table.
function element(tag, props = {}) {
  const node = Object.assign(document.createElement(tag), props);
  node.setAttribute("data-lm-suppress-shortcuts", "true");
  return node;
}

function render({ model, el }) {
  const root = element("div", { className: "defuse-region-table" });
  const search = element("input", { type: "search", placeholder: "Filter regions" });
  search.setAttribute("aria-label", "Filter regions: keep rows whose text contains this");
  const decision = element("select");
  decision.setAttribute("aria-label", "Decision");
  for (const d of model.get("decisions")) {
    decision.append(element("option", { value: d, textContent: d }));
  }
  const count = element("span", { className: "defuse-rt-count" });
  count.setAttribute("aria-live", "polite");
  const table = element("table");
  const head = table.createTHead().insertRow(), body = table.createTBody();
  const scroll = element("div", { className: "defuse-rt-scroll" });
  const bar = element("div", { className: "defuse-rt-bar" });
  scroll.append(table);
  bar.append(search, decision, count);
  root.append(bar, scroll);
  el.append(root);

  const save = (name, value) => { model.set(name, value); model.save_changes(); };
  search.addEventListener("input", () => save("filter_text", search.value));
  decision.addEventListener("change", () => save("decision_filter", decision.value));

  function sortBy(key) {
    if (model.get("sort_by") === key) save("descending", !model.get("descending"));
    else { model.set("descending", false); save("sort_by", key); }
  }

  for (const [name, title] of model.get("columns")) {
    const th = element("th", { scope: "col" });
    const button = element("button", { type: "button", textContent: title });
    button.addEventListener("click", () => sortBy(name));
    th.dataset.key = name;
    th.append(button);
    head.append(th);
  }

  function drawHead() {
    const key = model.get("sort_by"), way = model.get("descending") ? "descending" : "ascending";
    for (const th of head.cells) {
      th.setAttribute("aria-sort", th.dataset.key === key ? way : "none");
    }
  }

  function mark() {
    const k = model.get("selected");
    for (const tr of body.rows) {
      const on = Number(tr.dataset.region) === k && tr.dataset.region !== undefined;
      tr.classList.toggle("selected", on);
      tr.setAttribute("aria-selected", String(on));
    }
  }

  function drawBody() {
    const active = document.activeElement;
    const focused = body.contains(active) ? active.dataset.region : undefined;
    const shown = visible(model), columns = model.get("columns");
    body.replaceChildren();
    for (const [row, text] of shown) {
      const tr = body.appendChild(element("tr"));
      tr.dataset.region = String(row.region);
      tr.dataset.decision = row.decision;
      tr.dataset.verdict = row.verdict ?? "";
      tr.tabIndex = -1;
      columns.forEach(([name], j) => {
        Object.assign(tr.insertCell(), { className: `col-${name}`, textContent: text[j] ?? "" });
      });
    }
    if (!shown.length) {
      const cell = body.insertRow().insertCell();
      cell.colSpan = columns.length;
      cell.textContent = "No region matches the filter.";
    }
    const rows = [...body.rows].filter((tr) => tr.dataset.region !== undefined);
    const home = rows.find((tr) => tr.dataset.region === focused) ||
      rows.find((tr) => Number(tr.dataset.region) === model.get("selected")) || rows[0];
    if (home) home.tabIndex = 0;
    if (home && focused !== undefined) home.focus();
    count.textContent = `${shown.length} of ${model.get("rows").length} regions`;
    if (search.value !== model.get("filter_text")) search.value = model.get("filter_text");
    decision.value = model.get("decision_filter");
    mark();
  }

  function moveFocus(from, to) {
    if (!to || to.dataset.region === undefined) return;
    from.tabIndex = -1;
    to.tabIndex = 0;
    to.focus();
  }

  function choose(tr) {
    if (tr.dataset.region === undefined) return;
    model.send({ select: Number(tr.dataset.region) });
  }

  body.addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr) choose(tr);
  });
  body.addEventListener("keydown", (event) => {
    const tr = event.target.closest("tr");
    if (!tr || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Enter" || event.key === " ") choose(tr);
    else if (event.key === "ArrowDown") moveFocus(tr, tr.nextElementSibling);
    else if (event.key === "ArrowUp") moveFocus(tr, tr.previousElementSibling);
    else return;
    event.preventDefault();
    event.stopPropagation();
  });

  const redraw = () => { drawHead(); drawBody(); };
  const events = ["rows", "cells", "sort_by", "descending", "filter_text", "decision_filter"];
  for (const name of events) model.on(`change:${name}`, redraw);
  model.on("change:selected", mark);
  redraw();
  return () => {
    for (const name of events) model.off(`change:${name}`, redraw);
    model.off("change:selected", mark);
  };
}

export default { render };
"""

_CSS = """
.defuse-region-table { font-size: 13px; color: var(--jp-ui-font-color1, #1d2330); }
.defuse-rt-bar { display: flex; gap: 8px; align-items: center; margin-bottom: 4px; }
.defuse-rt-bar input { min-width: 220px; padding: 2px 6px; }
.defuse-rt-count { color: var(--jp-ui-font-color2, #667085); }
.defuse-rt-scroll { max-height: 420px; overflow: auto;
  border: 1px solid var(--jp-border-color2, #e4e7ec); }
.defuse-region-table table { border-collapse: collapse; width: 100%; }
.defuse-region-table th { position: sticky; top: 0; background: var(--jp-layout-color2, #f6f7f9);
  text-align: left; padding: 0; }
.defuse-region-table th button { all: unset; display: block; width: 100%; padding: 4px 6px;
  cursor: pointer; font-weight: 600; box-sizing: border-box; }
.defuse-region-table th button:focus-visible { outline: 2px solid #1976d2; outline-offset: -2px; }
.defuse-region-table th[aria-sort="ascending"] button::after { content: " ▲"; }
.defuse-region-table th[aria-sort="descending"] button::after { content: " ▼"; }
.defuse-region-table td { padding: 3px 6px;
  border-top: 1px solid var(--jp-border-color2, #e4e7ec); }
.defuse-region-table tbody tr[data-region] { cursor: pointer; }
.defuse-region-table tbody tr[data-region]:hover { background: var(--jp-layout-color2, #f2f4f7); }
.defuse-region-table tbody tr:focus { outline: 2px solid #1976d2; outline-offset: -2px; }
.defuse-region-table tbody tr.selected { background: #e3f2fd; }
.defuse-region-table tr[data-decision="accepted"] td.col-decision,
.defuse-region-table tr[data-verdict="confirmed"] td.col-verdict { color: #b42318;
  font-weight: 600; }
"""


def cell_texts(row: dict) -> list[str]:
    """The text of each of :data:`COLUMNS` for one row of ``region_rows``."""
    votes, n = row["votes"], row.get("annotators", 0)
    label, accuracy = row.get("label"), row["accuracy"]
    return [str(row["region"]), f"{row['weight']:.3f}", f"{row['members']:,}",
            row["top_confusions"] or "–",
            f"{votes} ({n} annotator{'s' * (n != 1)})" if votes else "no votes",
            "–" if row["disagreement"] is None else f"{100 * row['disagreement']:.0f} %",
            f"accepted, label {label}" if row["decision"] == "accepted" else row["decision"],
            _VERDICTS.get(row["verdict"], str(row["verdict"])),
            "–" if accuracy is None else f"{100 * accuracy:.0f} % of {row.get('real_images')}"]


def _compare(a: dict, b: dict, key: str, descending: bool) -> int:
    """The page's order: None last, then by ``key`` (flipped when descending), then region."""
    x, y = a[key], b[key]
    if x is None or y is None:
        return a["region"] - b["region"] if x is y else (1 if x is None else -1)
    order = (x > y) - (x < y)
    return (-order if descending else order) or a["region"] - b["region"]


def _check_row(i: int, row: Any) -> dict:
    """Check one row of :func:`region_rows`: a dict with every column, JSON-safe values."""
    if not isinstance(row, dict):
        raise TypeError(f"rows[{i}] must be a dict from region_rows; got {describe(row)}.")
    missing = [key for key in _KEYS if key not in row]
    if missing:
        raise ValueError(f"rows[{i}] must have the keys {_KEYS}; {missing} are missing.")
    check_int(f"rows[{i}]['region']", row["region"], low=0)
    check_choice(f"rows[{i}]['decision']", row["decision"], DECISIONS)
    for key in _KEYS:
        value = row[key]
        if not (value is None or isinstance(value, str) or isinstance(value, (int, float))
                and not isinstance(value, bool) and math.isfinite(value)):
            raise ValueError(f"rows[{i}][{key!r}] must be a finite number, a str or None; "
                             f"got {describe(value)}.")
    return dict(row)


class RegionTable(anywidget.AnyWidget):
    """One row per region, sortable by any column and filterable by text and decision.

    Parameters
    ----------
    rows : list of dict
        From :func:`~defuse_widgets.stages.region_summary.region_rows`.
    **kwargs
        Initial values of the traits below (``sort_by="weight"``, ...).

    Attributes
    ----------
    rows : list of dict
        The regions shown, in any order; ``update`` replaces them.
    cells : list of list of str
        The text of each row's cells, in :data:`COLUMNS` order (made from ``rows``).
    sort_by : str
        A key of :data:`COLUMNS`; regions without a value (None) come last.
    descending : bool
    filter_text : str
        Keep rows of which a cell's text contains it (case-insensitive).
    decision_filter : {"all", "accepted", "rejected", "not labelled"}
    selected : int
        The selected region's index, -1 for none.

    Examples
    --------
    >>> table = RegionTable(region_rows(regions, store=store))  # doctest: +SKIP
    >>> table.on_select(lambda k: gallery.show(k))  # doctest: +SKIP
    >>> table.sort_by, table.descending = "weight", True  # doctest: +SKIP
    >>> [row["region"] for row in table.visible_rows()]  # doctest: +SKIP
    """

    _esm = _ESM
    _css = _CSS
    rows = traitlets.List().tag(sync=True)
    cells = traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True)
    columns = traitlets.List(default_value=[list(c) for c in COLUMNS],
                             read_only=True).tag(sync=True)
    decisions = traitlets.List(default_value=["all", *DECISIONS], read_only=True).tag(sync=True)
    sort_by = traitlets.Unicode("region").tag(sync=True)
    descending = traitlets.Bool(False).tag(sync=True)
    filter_text = traitlets.Unicode("").tag(sync=True)
    decision_filter = traitlets.Unicode("all").tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)

    def __init__(self, rows: Iterable[dict] = (), **kwargs):
        self._callbacks: list[Callable[[int], Any]] = []
        super().__init__(rows=list(rows), **kwargs)
        self.add_class("defuse-region-table-widget")
        self.on_msg(self._on_message)

    @traitlets.validate("rows")
    def _valid_rows(self, proposal) -> list:
        rows = [_check_row(i, row) for i, row in enumerate(proposal.value)]
        regions = [row["region"] for row in rows]
        if len(set(regions)) != len(regions):
            raise ValueError(f"rows must hold each region once; got regions {regions}.")
        return rows

    @traitlets.validate("sort_by")
    def _valid_sort_by(self, proposal) -> str:
        return check_choice("sort_by", proposal.value, _KEYS)

    @traitlets.validate("decision_filter")
    def _valid_decision_filter(self, proposal) -> str:
        return check_choice("decision_filter", proposal.value, ["all", *DECISIONS])

    @traitlets.validate("selected")
    def _valid_selected(self, proposal) -> int:
        k = proposal.value
        regions = sorted(row["region"] for row in self.rows)
        if k != -1 and k not in regions:
            raise ValueError(f"selected must be -1 (none) or a region of the table "
                             f"{regions}; got {k}.")
        return k

    @traitlets.observe("rows")
    def _render(self, change=None) -> None:
        """Remake the cells from ``rows``; drop a selection whose region is gone."""
        self.cells = [cell_texts(row) for row in self.rows]
        if self.selected not in {row["region"] for row in self.rows}:
            self.selected = -1

    @traitlets.observe("selected")
    def _on_selected(self, change) -> None:
        if change["new"] >= 0:
            self._notify(change["new"])

    def update(self, rows: Iterable[dict]) -> None:
        """Show new rows (after a vote, a new grounding, ...); sort and filter stay."""
        with self.hold_sync():
            self.rows = list(rows)

    def visible_rows(self) -> list[dict]:
        """The rows the page shows, in its order: filtered by text and decision, then sorted."""
        needle = self.filter_text.strip().lower()
        keep = [row for row, text in zip(self.rows, self.cells)
                if self.decision_filter in ("all", row["decision"])
                and (not needle or any(needle in t.lower() for t in text))]
        order = functools.partial(_compare, key=self.sort_by, descending=self.descending)
        return sorted(keep, key=functools.cmp_to_key(order))

    def on_select(self, callback: Callable[[int], Any], remove: bool = False) -> None:
        """Call ``callback(k)`` when region ``k`` is selected (``remove=True`` to stop)."""
        (self._callbacks.remove if remove else self._callbacks.append)(callback)

    def select(self, k: int) -> None:
        """Select region ``k``, as a click on its row does (again if it is already selected)."""
        k = check_int("k", k, low=0)
        if k == self.selected:
            self._notify(k)
        else:
            self.selected = k

    def _notify(self, k: int) -> None:
        for callback in list(self._callbacks):
            callback(k)

    def _on_message(self, widget, content, buffers) -> None:
        k = content.get("select") if isinstance(content, dict) else None
        if isinstance(k, int) and not isinstance(k, bool):
            self.select(k)
