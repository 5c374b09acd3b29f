"""Saved slices: a map selection named, kept in the session, reopened and exported."""
import csv

import numpy as np
import pytest

from defuse_widgets.seeding import seeded_subset
from defuse_widgets.widgets.dashboard import DefuseDashboard
from defuse_widgets.workflow import DefuseConfig

TIMEOUT = 120
TINY = dict(dataset="digits", Q=4, a=5.0, b=5.0, centered=True, n_components=3, eps=0.0,
            max_per_instance=3, map_size=150, tsne_iter=50, lams=(1.0,), epochs=1,
            n_finetune=16, n_region_test=16)


@pytest.fixture
def dash(tmp_path, digits, tiny_models):
    clf, vae = tiny_models
    made = []

    def make(resume=False, **kw):
        d = DefuseDashboard(clf, vae, digits, tmp_path / "session", annotator="ada",
                            config=None if resume else DefuseConfig(**TINY), **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()
        if d.explorer is not None:
            d.explorer.wait(TIMEOUT)


def test_a_selection_is_saved_reopened_and_exported(dash, digits, tmp_path):
    first = dash()
    first.run_identification(wait=True)
    explorer = first.explorer.wait(TIMEOUT)
    controls = explorer.slice_controls
    assert controls.row.layout.display is None and controls.save.disabled
    explorer.select_points(train=[0, 5, 7], adversarial=[1, 2])
    assert not explorer.slice_controls.save.disabled
    explorer.slice_controls.name.value = "odd fours"
    explorer.slice_controls.save.click()
    assert explorer.error.value == "" and "Slice 'odd fours' saved" in first.status
    idx = seeded_subset(len(digits.y_train), TINY["map_size"], 0)
    saved = first.session.load_slices()
    assert [s["name"] for s in saved] == ["odd fours"] and saved[0]["by"] == "ada"
    assert saved[0]["train"] == idx[[0, 5, 7]].tolist() and saved[0]["adversarial"] == [1, 2]
    adv = first.adversarial
    assert saved[0]["source"] == adv.source_index[[1, 2]].tolist()
    explorer.select_points(train=[1])
    explorer.slice_controls.name.value = "odd fours"
    explorer.slice_controls.save.click()   # a saved name is not replaced in silence
    assert "already has a slice &#x27;odd fours&#x27;" in explorer.error.value
    with pytest.raises(ValueError, match="already has a slice 'odd fours'"):
        first.session.save_slice("odd fours", train=[1])
    first.close()

    again = dash(resume=True)   # after a restart: the slice is in the menu and reselects
    ex = again.explorer.wait(TIMEOUT)
    assert list(ex.slice_controls.menu.options) == ["—", "odd fours"]
    ex.slice_controls.menu.value = "odd fours"
    np.testing.assert_array_equal(ex.selection["train"], [0, 5, 7])
    np.testing.assert_array_equal(ex.selection["adversarial"], [1, 2])
    assert not ex.slice_controls.export.disabled
    ex.slice_controls.export.click()
    out = tmp_path / "session-slice-odd_fours.csv"
    rows = list(csv.DictReader(out.open()))
    assert [(r["kind"], int(r["index"])) for r in rows] == [
        ("train", int(i)) for i in idx[[0, 5, 7]]] + [("adversarial", 1), ("adversarial", 2)]
    assert int(rows[0]["true_label"]) == int(digits.y_train[idx[0]])
    assert int(rows[3]["source_index"]) == int(adv.source_index[1])
    before = out.read_bytes()
    ex.slice_controls.export.click()   # never written over
    assert "exists" in ex.error.value and out.read_bytes() == before

    again.session.configure(Q=5)
    again.run_identification(wait=True)   # new adversarial rows: the slices go to archive/
    assert again.session.load_slices() == []
    assert list((tmp_path / "session" / "archive").rglob("slices.json"))


def test_slice_input_is_checked_at_the_boundary(dash):
    d = dash()
    d.run_identification(wait=True)
    s = d.session
    n_adv = len(d.adversarial)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        s.save_slice("  ", train=[1])
    with pytest.raises(ValueError, match=rf"adversarial must be indices in \[0, {n_adv}\)"):
        s.save_slice("x", adversarial=[n_adv])
    with pytest.raises(ValueError, match="at least one"):
        s.save_slice("x")
    with pytest.raises(ValueError, match=r"name must be a saved slice, one of \[\]"):
        s.export_slice("nope", "x.csv")
    s.save_slice("x", train=[3, 3, 1])
    assert s.load_slices()[0]["train"] == [1, 3]
    s.delete_slice("x")
    assert s.load_slices() == []
    with pytest.raises(ValueError, match="nothing is selected"):
        d.explorer.save_slice("y")


def test_a_read_only_dashboard_shows_slices_without_save(dash):
    d = dash()
    d.run_identification(wait=True)
    d.session.save_slice("kept", adversarial=[0])
    d.close()
    ro = dash(resume=True, read_only=True)
    ex = ro.explorer.wait(TIMEOUT)
    assert list(ex.slice_controls.menu.options) == ["—", "kept"]
    assert ex.slice_controls.row.layout.display == "none" or ex.slice_controls.save.disabled


def test_rerun_effects_name_what_a_rerun_would_archive(dash):
    d = dash()
    s = d.session
    assert s.rerun_effects("identification") == []   # nothing to move yet
    d.run_identification(wait=True)
    assert s.rerun_effects("identification") == ["the adversarial examples"]
    s.save_slice("kept", adversarial=[0])
    d.run_distillation(wait=True)
    assert s.rerun_effects("identification") == [
        "the adversarial examples", "1 saved slice", f"{len(d.regions)} regions"]
    assert s.rerun_effects("distillation") == [f"{len(d.regions)} regions"]
    from defuse_widgets.widgets.dashboard.tabs import rerun_warning
    assert "1 saved slice" in rerun_warning(s, "identification")
    with pytest.raises(ValueError, match="stage must be one of"):
        s.rerun_effects("labelling")
