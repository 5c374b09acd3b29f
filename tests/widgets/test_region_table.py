"""The region table without a browser: cells, sort, filter, selection, bad input; and the
page's sort and filter (its ES module, run in Node.js when present) agree with Python's.
"""
import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from defuse_widgets.stages.region_summary import region_rows
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets import RegionTable
from defuse_widgets.widgets.region_table import COLUMNS, cell_texts

KEYS = [key for key, _ in COLUMNS]


def _row(k, weight, **kw):
    """A row as ``region_rows`` makes it (no votes, no grounding unless given)."""
    row = dict(region=k, weight=weight, members=10 * k + 5, confusions=[],
               top_confusions=f"{k} → 9 (100 %)", votes=0, annotators=0, disagreement=None,
               decision="not labelled", label=None, verdict=None, accuracy=None,
               real_images=None)
    return {**row, **kw}


@pytest.fixture
def rows():
    """Four regions: accepted (label 4), rejected, and two nobody voted on."""
    return [_row(0, 0.4, votes=5, annotators=2, disagreement=0.75, decision="accepted",
                 label="4", verdict="confirmed", accuracy=6 / 21, real_images=21),
            _row(1, 0.1, votes=2, annotators=1, disagreement=0.0, decision="rejected",
                 verdict="no_support", accuracy=None, real_images=0),
            _row(2, 0.3),
            _row(3, 0.2, top_confusions="3 → 7 (100 %)")]


def _order(table):
    return [row["region"] for row in table.visible_rows()]


def test_cells_are_the_rows_text(rows):
    table = RegionTable(rows)
    assert table.cells[0] == ["0", "0.400", "5", "0 → 9 (100 %)", "5 (2 annotators)", "75 %",
                              "accepted, label 4", "bug confirmed", "29 % of 21"]
    assert table.cells[1][4:] == ["2 (1 annotator)", "0 %", "rejected", "too few real images",
                                  "–"]
    assert table.cells[2][4:] == ["no votes", "–", "not labelled", "–", "–"]
    assert table.columns == [list(c) for c in COLUMNS]
    assert [cell_texts(r) for r in rows] == table.cells


def test_rows_from_region_rows_show_as_they_are():
    regions = Regions(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2),
                      weights=np.array([0.7, 0.3]), component=np.arange(2),
                      assignment=np.array([0, 0, 0, 1]), source_label=np.array([4, 4, 4, 2]),
                      predicted_label=np.array([9, 9, 1, 7]), n_classes=10)
    table = RegionTable(region_rows(regions))
    assert table.cells[0][:4] == ["0", "0.700", "3", "4 → 9 (67 %), 4 → 1 (33 %)"]
    assert json.dumps(table.get_state(), allow_nan=False)


def test_a_header_sorts_and_a_second_click_flips(rows):
    table = RegionTable(rows)
    assert _order(table) == [0, 1, 2, 3]
    table.sort_by = "weight"
    assert _order(table) == [1, 3, 2, 0]
    table.descending = True
    assert _order(table) == [0, 2, 3, 1]
    table.sort_by = "decision"       # ties keep the region order, in either direction
    assert _order(table) == [1, 2, 3, 0]


def test_missing_values_come_last_in_both_directions(rows):
    table = RegionTable(rows, sort_by="disagreement")
    assert _order(table) == [1, 0, 2, 3]
    table.descending = True
    assert _order(table) == [0, 1, 2, 3]
    table.sort_by = "accuracy"
    assert _order(table)[0] == 0


def test_the_filter_keeps_rows_whose_text_contains_it(rows):
    table = RegionTable(rows)
    table.filter_text = "  LABEL 4 "
    assert _order(table) == [0]
    table.filter_text = "→ 7"
    assert _order(table) == [3]
    table.filter_text = "not"           # "not labelled", and "annotators" too
    assert _order(table) == [0, 1, 2, 3]
    table.filter_text = "Not Labelled"
    assert _order(table) == [2, 3]
    table.filter_text = "no such region"
    assert table.visible_rows() == []


def test_the_decision_filter_combines_with_text_and_sort(rows):
    table = RegionTable(rows, sort_by="weight", descending=True)
    table.decision_filter = "not labelled"
    assert _order(table) == [2, 3]
    table.filter_text = "3 →"
    assert _order(table) == [3]
    table.decision_filter = "accepted"
    assert _order(table) == []
    table.filter_text, table.decision_filter = "", "rejected"
    assert _order(table) == [1]


def test_a_row_click_selects_its_region_every_time(rows):
    table = RegionTable(rows)
    seen = []
    table.on_select(seen.append)
    table._handle_custom_msg({"select": 2}, [])   # what a click or Enter on the row sends
    assert table.selected == 2 and seen == [2]
    table._handle_custom_msg({"select": 2}, [])   # again: opens the region again
    table.select(3)
    table.selected = 0
    assert seen == [2, 2, 3, 0]
    table.selected = -1
    table.on_select(seen.append, remove=True)
    table.select(1)
    assert seen == [2, 2, 3, 0] and table.selected == 1


def test_update_keeps_sort_and_filter_and_drops_a_gone_selection(rows):
    table = RegionTable(rows, sort_by="weight", filter_text="→")
    table.select(3)
    table.update(rows[:3])
    assert table.selected == -1 and _order(table) == [1, 2, 0]
    assert (table.sort_by, table.filter_text) == ("weight", "→")
    table.select(2)
    table.update([{**rows[2], "decision": "rejected", "votes": 3, "annotators": 1}])
    assert table.selected == 2 and table.cells == [cell_texts(table.rows[0])]


@pytest.mark.parametrize("trait, value, allowed", [
    ("sort_by", "colour", str(KEYS)),
    ("decision_filter", "maybe", "['all', 'accepted', 'rejected', 'not labelled']")])
def test_unknown_choices_name_the_trait_the_choices_and_the_value(rows, trait, value, allowed):
    table = RegionTable(rows)
    with pytest.raises(ValueError) as err:
        setattr(table, trait, value)
    assert str(err.value) == f"{trait} must be one of {allowed}; got {value!r}."


def test_bad_rows_and_selections_are_refused(rows):
    table = RegionTable(rows)
    with pytest.raises(ValueError, match=r"selected must be -1 \(none\) or a region of the "
                                         r"table \[0, 1, 2, 3\]; got 7"):
        table.select(7)
    with pytest.raises(ValueError, match=r"rows\[1\] must have the keys .*\['verdict'\] are "
                                         "missing"):
        RegionTable([rows[0], {k: v for k, v in rows[1].items() if k != "verdict"}])
    with pytest.raises(ValueError, match=r"rows\[0\]\['disagreement'\] must be a finite number, "
                                         "a str or None; got nan"):
        RegionTable([{**rows[0], "disagreement": math.nan}])
    with pytest.raises(ValueError, match=r"rows must hold each region once; got regions \[0, 0\]"):
        RegionTable([rows[0], rows[0]])
    with pytest.raises(TypeError, match=r"rows\[0\] must be a dict from region_rows"):
        RegionTable([[1, 2]])
    assert table.selected == -1 and len(table.rows) == 4


_NODE_CHECK = """
const state = JSON.parse(process.argv[1]);
const model = { get: (name) => state[name] };
console.log(JSON.stringify(visible(model).map(([row]) => row.region)));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the ES module")
@pytest.mark.parametrize("sort_by", KEYS)
def test_the_page_sorts_and_filters_as_python_does(rows, sort_by):
    from defuse_widgets.widgets.region_table import _ESM

    table = RegionTable(rows + [_row(4, 0.3, decision="rejected", disagreement=0.5, votes=1,
                                     annotators=1)], sort_by=sort_by)
    script = _ESM.replace("export default { render };", "") + _NODE_CHECK
    for descending, text, decision in [(False, "", "all"), (True, "", "all"),
                                       (True, "NOT", "all"), (False, "→ 9", "rejected")]:
        table.descending, table.filter_text, table.decision_filter = descending, text, decision
        state = json.dumps(table.get_state(), allow_nan=False)
        out = subprocess.run(["node", "--input-type=module", "-e", script, state],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == _order(table), (descending, text, decision)
