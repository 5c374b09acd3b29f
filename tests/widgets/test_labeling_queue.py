"""The labeling queue: region selector, queue filters, staying on a finished region, grid mode."""
import pytest

from defuse_widgets.stages.labeling import decide_region
from defuse_widgets.stages.labeling_queue import in_queue, region_states
from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE, AnnotationStore
from defuse_widgets.widgets.labeling_panel import LabelingPanel
from defuse_widgets.widgets.labeling_panel.view import KEYS_HELP, region_option


def _unpredicted(store, region):
    """A class the classifier predicts for none of the region's review samples."""
    return min(set(range(10)) - set(store.review_predictions(region).tolist()))


def _listed(panel):
    """The region selector's options as {region: label}."""
    return {region: label for label, region in panel._selector._dropdown.options}


# ------------------------------------------------------------ the queue, without widgets
def test_region_states_count_your_votes_and_see_disagreement(tmp_path):
    with AnnotationStore(tmp_path / "s.sqlite", n_classes=10) as store:
        store.set_review_set(0, [1, 1, 1])
        store.set_review_set(1, [2, 2, 2])
        for j in range(3):
            store.cast_vote("ada", 0, j, 7)
            store.cast_vote("bo", 0, j, 7 if j else 6)     # bo differs on sample 0
        store.cast_vote("ada", 1, 0, 2)
        store.cast_vote("bo", 1, 0, 2)
        s0, s1, s2 = region_states(store, 3, 3, "ada")
    assert (s0.n_mine, s0.complete, s0.disagree) == (3, True, True)
    assert s0.decision.agreement < 1 and s0.decision.is_misclassification_region
    assert (s1.n_mine, s1.complete, s1.disagree) == (1, False, False)   # they agree
    assert (s2.n_mine, s2.n_samples, s2.decision) == (0, 3, None)       # not shown yet
    assert [in_queue(s, "unlabelled") for s in (s0, s1, s2)] == [False, True, True]
    assert [in_queue(s, "disagree") for s in (s0, s1, s2)] == [True, False, False]
    assert [in_queue(s, "all") for s in (s0, s1, s2)] == [True, True, True]
    names = [str(c) for c in range(10)]
    assert region_option(s0, names) == "0 · accepted 7 · annotators disagree"
    assert region_option(s1, names) == "1 · 1/3 voted"
    assert region_option(s2, names, queued=False) == "2 · 0/3 voted (not in the queue)"
    with pytest.raises(ValueError, match=r"queue_filter must be one of \['all', "
                                         r"'unlabelled', 'disagree'\]; got 'todo'"):
        in_queue(s0, "todo")


# ------------------------------------------------------------------ the region selector
def test_the_region_selector_jumps_and_follows_every_move(make_panel):
    panel = make_panel()
    panel.goto(1, 0)
    for _ in range(3):
        panel.handle_key("5")                      # samples 1..3 of region 1
    panel.goto(0, 4)
    dropdown = panel._selector._dropdown
    labels = _listed(panel)
    assert labels[0] == "0 · 0/10 voted" and labels[1] == "1 · 3/10 voted"
    assert sorted(labels) == list(range(len(panel.regions))) and dropdown.value == 0
    dropdown.value = 1                             # what picking "1 · 3/10 voted" does
    assert panel.position == (1, 3)                # its first sample without your vote
    assert "<b>Region 1</b>" in panel._info.value
    dropdown.value = 0
    assert panel.position == (0, 0)
    panel.goto(0, panel.review_size - 1)
    panel.handle_key("ArrowRight")
    assert panel.position == (1, 0) and dropdown.value == 1
    assert [v.region for v in panel.store.votes(annotator="ada")] == [1, 1, 1]   # no votes


def test_bad_input_names_the_parameter(make_panel, tmp_path, regions, tiny_models):
    panel = make_panel()
    n = len(panel.regions)
    with pytest.raises(ValueError, match=rf"region must be a region index in \[0, {n - 1}\]; "
                                         rf"got {n}\."):
        panel.goto(n)
    with pytest.raises(ValueError, match=r"sample must be a review sample index in \[0, 9\]; "
                                         r"got -1\."):
        panel.goto(0, -1)
    with pytest.raises(ValueError, match=r"position must be \(region, sample\)"):
        panel.position = (n, 0)
    with pytest.raises(ValueError, match=r"queue_filter must be one of \['all', 'unlabelled', "
                                         r"'disagree'\]; got 'mine'"):
        panel.queue_filter = "mine"
    with pytest.raises(ValueError, match=r"grid_selection must be a set of review sample "
                                         r"indices in \[0, 9\]; got 12\."):
        panel.grid_selection = {0, 12}
    assert (panel.position, panel.queue_filter, panel.grid_selection) == ((0, 0), "all", set())
    clf, vae = tiny_models
    with pytest.raises(ValueError, match="queue_filter must be one of"):
        LabelingPanel(tmp_path / "other.sqlite", regions, vae, clf, queue_filter="todo")
    assert not (tmp_path / "other.sqlite").exists()


# ------------------------------------------------------------------------- the filters
def test_only_unlabelled_skips_the_regions_you_finished(make_panel):
    panel = make_panel()
    n = len(panel.regions)
    for _ in range(panel.review_size):
        panel.handle_key("1")                      # region 0: every sample voted
    panel._selector._filter.value = "unlabelled"   # what the browser's filter sets
    rest = list(range(1, n))
    assert panel.queue_filter == "unlabelled" and panel.queue() == rest
    assert panel.position == (1, 0)                # region 0 left the queue: the panel went on
    assert sorted(_listed(panel)) == rest and "Region 1: 0 of 10" in panel.status
    panel.handle_key("[")                          # previous in the queue, wrapping
    assert panel.position == (rest[-1], 0)
    panel.handle_key("]")
    assert panel.position == (1, 0)
    panel.handle_key("2")
    panel.handle_key("]")                          # a started region stays in the queue
    assert panel.position == ((2, 0) if n > 2 else (1, 1))
    for k in rest:
        panel.goto(k, 0)
        for _ in range(panel.review_size):
            panel.handle_key("1")
    assert panel.position == (rest[-1], panel.review_size - 1)   # stays, though filtered out
    assert list(_listed(panel)) == [rest[-1]]      # only the shown region, marked as such
    assert _listed(panel)[rest[-1]].endswith("(not in the queue)")
    assert panel.queue() == [] and panel._progress.value == n
    assert "No region matches" in panel._selector._info.value
    panel.status = ""
    assert panel.handle_key("]")
    assert "No region matches the queue filter “only unlabelled”" in panel.status
    assert panel.position == (rest[-1], panel.review_size - 1)
    panel.status = ""
    panel.handle_key("u")
    assert "No region matches the queue filter “only unlabelled”" in panel.status
    panel.queue_filter = "all"
    assert panel.queue() == list(range(n)) and "No region" not in panel._selector._info.value


def test_only_where_annotators_disagree(make_panel):
    panel = make_panel()
    panel.goto(1, 0)                               # records region 1's review set
    store, size = panel.store, panel.review_size
    for j in range(size):
        store.cast_vote("bo", 0, j, 3)
        store.cast_vote("ada", 1, j, 4)
        store.cast_vote("bo", 1, j, 5 if j == 0 else 4)   # bo differs on sample 1 only
        if j < size - 1:
            store.cast_vote("ada", 0, j, 3)        # ada agrees on region 0, one sample open
    names, matrix = store.vote_matrix(1)
    assert decide_region(matrix, store.review_predictions(1)).agreement < 1
    panel.goto(0, 0)
    panel.queue_filter = "disagree"
    assert panel.queue() == [1]
    assert panel.position == (1, 0)                # region 0 agrees: the panel went on
    assert list(_listed(panel)) == [1] and "annotators disagree" in _listed(panel)[1]
    panel.status = ""
    panel.handle_key("u")                          # (0, 9) has no vote, but is not queued
    assert panel.position == (1, 0) and "every sample in the queue has your vote" in \
        panel.status
    store.cast_vote("bo", 1, 0, 4)                 # bo changes his mind: all agree now
    panel.handle_key("]")
    assert panel.queue() == [] and panel.position == (1, 0)
    assert "No region matches the queue filter “only where annotators disagree”" in \
        panel.status
    panel.queue_filter = "all"
    panel.goto(0, 0)
    panel.next_unlabelled()
    assert panel.position == (0, size - 1)


# ----------------------------------------------------------- the decision, then move on
def test_after_the_last_vote_the_panel_stays_and_shows_the_decision(make_panel):
    panel = make_panel()
    seen = []
    panel.on_vote(seen.append)
    wrong = _unpredicted(panel.store, 0)
    for _ in range(panel.review_size):
        assert panel.handle_key(str(wrong))
    assert len(seen) == panel.review_size
    assert panel.position == (0, panel.review_size - 1)   # stays on the finished region
    assert panel.store.regions() == [0]                   # region 1 was never shown
    assert "Region 0 is done" in panel.status
    assert f"decision so far: misclassification region, label {wrong}" in panel.status
    assert "decision so far: <b style='color:#dc0000'>misclassification region" in \
        panel._agreement.value
    assert "You have voted every sample" in panel._done.value
    assert panel._next_region.button_style == "primary"
    assert _listed(panel)[0] == f"0 · accepted {wrong}"
    panel._next_region.click()
    assert panel.position == (1, 0) and panel._done.value == ""
    assert panel._next_region.button_style == "" and "Region 1: 0 of 10" in panel.status
    panel.goto(1, panel.review_size - 1)
    panel.handle_key("3")                          # region 1's last sample, others open
    assert panel.position == (1, 0)                # back to its first sample without a vote
    panel._keys._on_message(panel._keys, {"key": "Enter"}, [])   # the browser's Enter
    expected = 2 if len(panel.regions) > 2 else 0
    assert panel.position == (expected, 0)
    panel.goto(0, 0)
    panel.handle_key("n")                          # revising a finished region moves on
    assert panel.position == (0, 1) and "is done" not in panel.status
    assert {"]", "[", "Enter", "g", "a"} <= set(panel._keys.capture)
    assert "<code>]</code>" in KEYS_HELP and "<code>Enter</code>" in KEYS_HELP


# -------------------------------------------------------------------------- grid mode
def test_grid_mode_votes_for_each_selected_sample_and_undo_removes_one(make_panel):
    panel = make_panel()
    seen = []
    panel.on_vote(seen.append)
    assert panel.handle_key("g") and panel.grid_mode and panel._grid.value
    tiles = panel._tiles
    assert panel._image.layout.display == "none"
    assert all(p.layout.display is None for p in tiles.picks)
    assert all(b.layout.display == "none" for b in tiles.buttons)
    panel._class_buttons[7].click()                # nothing selected: nothing stored
    assert panel.store.votes() == [] and "Select samples" in panel.status
    for j in (5, 0, 2):
        tiles.picks[j].value = True                # a click on the tile's toggle
    assert panel.grid_selection == {0, 2, 5}
    assert panel.handle_key("7")
    votes = panel.store.votes(annotator="ada")
    assert [(v.region, v.sample, v.label) for v in votes] == [(0, 0, 7), (0, 2, 7), (0, 5, 7)]
    assert [(v.sample, v.label) for v in seen] == [(0, 7), (2, 7), (5, 7)]
    assert panel.grid_selection == set() and not any(p.value for p in tiles.picks)
    assert ">7</span>" in tiles.badges[2].value and "defuse-vote-badge" not in \
        tiles.badges[1].value
    assert panel.status.startswith("Saved 3 votes: region 0, samples 1, 3, 6")
    panel.handle_key("Backspace")                  # one vote at a time
    assert [v.sample for v in panel.store.votes(annotator="ada")] == [0, 2]
    assert panel.position == (0, 5)
    panel.handle_key("a")                          # select all, then one key votes all
    assert panel.grid_selection == set(range(panel.review_size))
    panel.handle_key("n")
    votes = panel.store.votes(annotator="ada")
    assert [v.label for v in votes] == [NONE_OF_THE_ABOVE] * panel.review_size
    assert "Region 0 is done" in panel.status and panel.position == (0, 5)
    panel.grid_selection = {1}
    panel.next_region()                            # a selection belongs to its region
    assert panel.grid_selection == set() and panel.position[0] == 1
    panel.handle_key("g")
    assert not panel.grid_mode and panel._image.layout.display is None
    assert all(p.layout.display == "none" for p in tiles.picks)


def test_the_panel_labels_exactly_the_cores_queue_filters():
    from defuse_widgets.stages import labeling_queue
    from defuse_widgets.widgets.labeling_panel import view as labeling_view

    assert tuple(labeling_view.QUEUE_FILTERS) == labeling_queue.QUEUE_FILTERS
