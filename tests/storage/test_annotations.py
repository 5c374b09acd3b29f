"""Tests of the SQLite annotation store: persistence, crashes, concurrency, validation."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from defuse_widgets.storage.annotations import MISSING, NONE_OF_THE_ABOVE, AnnotationStore, Vote


@pytest.fixture
def store(tmp_path):
    with AnnotationStore(tmp_path / "votes.sqlite", n_classes=10) as s:
        s.set_review_set(0, [1, 2, 3])
        s.set_review_set(4, [5, 5])
        yield s


def _child_env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def test_votes_and_review_sets_survive_close_and_reopen(tmp_path):
    path = tmp_path / "sub" / "votes.sqlite"
    with AnnotationStore(path, n_classes=10) as s:
        s.set_review_set(2, [7, 0, 9])
        s.cast_vote("ada", 2, 1, 4)
        s.cast_vote("bob", 2, 1, NONE_OF_THE_ABOVE)
    with AnnotationStore(path) as s:
        assert s.n_classes == 10
        assert s.regions() == [2]
        np.testing.assert_array_equal(s.review_predictions(2), [7, 0, 9])
        assert s.review_predictions(2).dtype == np.int64
        assert [(v.annotator, v.region, v.sample, v.label) for v in s.votes()] == [
            ("ada", 2, 1, 4), ("bob", 2, 1, -1)]


def test_store_uses_wal_journal(tmp_path):
    AnnotationStore(tmp_path / "v.sqlite", n_classes=3).close()
    con = sqlite3.connect(tmp_path / "v.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_n_classes_required_to_create_and_must_match_on_reopen(tmp_path):
    path = tmp_path / "v.sqlite"
    with pytest.raises(ValueError, match="n_classes"):
        AnnotationStore(path)
    assert not path.exists()
    AnnotationStore(path, n_classes=10).close()
    with pytest.raises(ValueError, match=r"n_classes must match the 10 classes.*got 7"):
        AnnotationStore(path, n_classes=7)
    with AnnotationStore(path, n_classes=10) as s:
        assert s.n_classes == 10


def test_vote_reported_before_sigkill_is_never_lost(tmp_path):
    path = tmp_path / "crash.sqlite"
    with AnnotationStore(path, n_classes=10) as s:
        s.set_review_set(0, np.zeros(10_000, dtype=np.int64))
    script = textwrap.dedent("""
        import sys
        from defuse_widgets.storage.annotations import AnnotationStore
        store = AnnotationStore(sys.argv[1])
        for i in range(10_000):
            store.cast_vote("crash", 0, i, i % 10)
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                            text=True, env=_child_env())
    reported = []
    for line in proc.stdout:
        reported.append(int(line))
        if len(reported) >= 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    reported += [int(line) for line in proc.stdout.read().split()]
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= 40
    with AnnotationStore(path) as s:
        stored = {v.sample: v.label for v in s.votes(annotator="crash")}
        assert all(stored.get(i) == i % 10 for i in reported)
        assert set(stored) <= set(range(max(reported) + 2))   # at most one unreported vote
        s.cast_vote("after", 0, 0, 1)                           # still writable
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_two_processes_voting_1000_times_each_lose_and_duplicate_nothing(tmp_path):
    """Two annotators cast 1,000 votes each into one session store at the same time."""
    path, go = tmp_path / "shared.sqlite", tmp_path / "go"
    script = textwrap.dedent("""
        import os, sys, time
        from defuse_widgets.storage.annotations import AnnotationStore
        path, go, who = sys.argv[1:]
        store = AnnotationStore(path, n_classes=10)   # both may create the file
        for region in range(10):
            store.set_review_set(region, [(region + s) % 10 for s in range(100)])
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.01)
        for i in range(1000):
            region, sample = divmod(i, 100)
            store.cast_vote(who, region, sample, (i + len(who)) % 10)
        store.close()
        print("done", flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(go), who],
                              stdout=subprocess.PIPE, text=True, env=_child_env())
             for who in ("p", "qq")]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done"
    with AnnotationStore(path) as s:
        votes = s.votes()
        assert len(votes) == 2000
        assert len({(v.annotator, v.region, v.sample) for v in votes}) == 2000
        assert all(v.label == (100 * v.region + v.sample + len(v.annotator)) % 10 for v in votes)
        assert s.annotators() == ["p", "qq"]
        assert s.regions() == list(range(10))
        np.testing.assert_array_equal(s.review_predictions(3), (3 + np.arange(100)) % 10)
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2000
    assert con.execute("SELECT COUNT(*) FROM review").fetchone()[0] == 1000
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_revote_replaces_the_earlier_vote(store):
    store.cast_vote("ada", 0, 1, 4)
    vote = store.cast_vote("ada", 0, 1, 6)
    assert isinstance(vote, Vote) and vote.label == 6
    assert [(v.sample, v.label) for v in store.votes(annotator="ada")] == [(1, 6)]


def test_undo_removes_latest_vote_per_annotator(store):
    store.cast_vote("ada", 0, 0, 1)
    store.cast_vote("ada", 0, 1, 2)
    store.cast_vote("bob", 0, 0, 3)
    store.cast_vote("ada", 0, 0, 9)          # re-vote makes (0, 0) the latest again
    undone = store.undo("ada")
    assert (undone.region, undone.sample, undone.label) == (0, 0, 9)
    assert [(v.sample, v.label) for v in store.votes(annotator="ada")] == [(1, 2)]
    assert store.undo("ada").sample == 1
    assert store.undo("ada") is None
    assert [(v.annotator, v.label) for v in store.votes()] == [("bob", 3)]


def test_progress_resumes_at_first_unvoted_sample(tmp_path, store):
    assert store.progress("ada") == {"regions_done": 0, "regions_total": 2, "next": (0, 0)}
    store.cast_vote("ada", 0, 0, 1)
    store.cast_vote("ada", 0, 2, 1)
    assert store.progress("ada")["next"] == (0, 1)
    store.cast_vote("ada", 0, 1, 1)
    store.cast_vote("ada", 4, 0, NONE_OF_THE_ABOVE)
    store.close()
    with AnnotationStore(store.path) as s:
        assert s.progress("ada") == {"regions_done": 1, "regions_total": 2, "next": (4, 1)}
        assert s.progress("bob")["next"] == (0, 0)
        s.cast_vote("ada", 4, 1, 5)
        assert s.progress("ada") == {"regions_done": 2, "regions_total": 2, "next": None}


def test_vote_matrix_marks_missing_and_none(store):
    store.cast_vote("zed", 0, 2, 8)
    store.cast_vote("ada", 0, 0, NONE_OF_THE_ABOVE)
    store.cast_vote("ada", 4, 1, 3)
    names, matrix = store.vote_matrix(0)
    assert names == ["ada", "zed"]
    np.testing.assert_array_equal(matrix, [[NONE_OF_THE_ABOVE, MISSING, MISSING],
                                           [MISSING, MISSING, 8]])
    names, matrix = store.vote_matrix(4)
    assert names == ["ada"] and matrix.shape == (1, 2)


def test_votes_are_ordered_and_filtered(store):
    store.cast_vote("bob", 4, 0, 1)
    store.cast_vote("bob", 0, 1, 1)
    store.cast_vote("ada", 0, 1, 2)
    keys = [(v.region, v.sample, v.annotator) for v in store.votes()]
    assert keys == [(0, 1, "ada"), (0, 1, "bob"), (4, 0, "bob")]
    assert [v.annotator for v in store.votes(region=0)] == ["ada", "bob"]
    assert [v.region for v in store.votes(region=4, annotator="bob")] == [4]


@pytest.mark.parametrize("label", [10, 12, -2])
def test_out_of_range_label_is_rejected_and_not_stored(store, label):
    with pytest.raises(ValueError, match=rf"label must be a class index in \[0, 9\].*got {label}"):
        store.cast_vote("ada", 0, 0, label)
    assert store.votes() == []


def test_non_integer_label_is_a_type_error(store):
    with pytest.raises(TypeError, match="label"):
        store.cast_vote("ada", 0, 0, 1.0)


def test_unknown_region_and_bad_sample_are_rejected(store):
    with pytest.raises(ValueError, match=r"region must be a region with a review set.*got 3"):
        store.cast_vote("ada", 3, 0, 1)
    with pytest.raises(ValueError, match="region"):
        store.review_predictions(3)
    with pytest.raises(ValueError, match=r"sample must be .*\[0, 2\]; got 3"):
        store.cast_vote("ada", 0, 3, 1)
    with pytest.raises(ValueError, match="sample"):
        store.cast_vote("ada", 0, -1, 1)
    assert store.votes() == []


def test_empty_or_non_string_annotator_is_rejected(store):
    with pytest.raises(ValueError, match="annotator"):
        store.cast_vote("", 0, 0, 1)
    with pytest.raises(ValueError, match="annotator"):
        store.cast_vote("  ", 0, 0, 1)
    with pytest.raises(TypeError, match="annotator"):
        store.cast_vote(7, 0, 0, 1)


def test_cast_votes_is_all_or_nothing(store):
    with pytest.raises(ValueError, match="sample"):
        store.cast_votes([("ada", 0, 0, 1), ("ada", 0, 99, 1)])
    assert store.votes() == []
    assert len(store.cast_votes([("ada", 0, 0, 1), ("bob", 4, 1, 2)])) == 2
    assert len(store.votes()) == 2


def test_review_set_is_replaced_only_while_unvoted(store):
    store.set_review_set(0, [9, 9])                      # no votes yet: replaced
    np.testing.assert_array_equal(store.review_predictions(0), [9, 9])
    store.cast_vote("ada", 0, 1, 9)
    store.set_review_set(0, np.array([9, 9]))            # same predictions: fine
    with pytest.raises(ValueError, match="predicted"):
        store.set_review_set(0, [9, 8])
    np.testing.assert_array_equal(store.review_predictions(0), [9, 9])
    with pytest.raises(ValueError, match="predicted"):
        store.set_review_set(1, [3, 10])
    assert store.regions() == [0, 4]


def test_closed_store_refuses_use(tmp_path):
    s = AnnotationStore(tmp_path / "v.sqlite", n_classes=2)
    s.close()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.votes()


def test_timestamps_increase(store):
    first = store.cast_vote("ada", 0, 0, 1)
    time.sleep(0.01)
    second = store.cast_vote("ada", 0, 1, 1)
    assert second.timestamp > first.timestamp
    assert store.votes()[0].timestamp == first.timestamp
