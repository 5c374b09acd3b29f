"""The edges of a session folder, reproduced as a user meets them (issue 26).

Each test starts from ``S``: a session made with ``defuse-widgets identify
--quick --Q 2``, ``distill`` and ``label --simulated`` (real shipped models,
real votes in SQLite). Each asserts the vote count before and after, and that
no file the user owned changed (hashed).
"""
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from defuse_widgets.cli import main
from defuse_widgets.storage.annotations import AnnotationStore, StoreFileError
from defuse_widgets.storage.persistence import SessionFormatError
from defuse_widgets.storage.session_copy import copy_session
from defuse_widgets.storage.session_folder import NotASessionError
from defuse_widgets.workflow import Session

pytestmark = pytest.mark.slow

_CLI = [sys.executable, "-m", "defuse_widgets.cli"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``S`` after identification, distillation and the simulated annotator's votes."""
    path = tmp_path_factory.mktemp("edges") / "S"
    for argv in (["identify", "--quick", "--Q", "2"], ["distill"], ["label", "--simulated"]):
        assert main([*argv, "--session", str(path), "--no-progress"]) == 0
    return path


@pytest.fixture
def S(made, tmp_path):
    dst = tmp_path / "S"
    shutil.copytree(made, dst)
    return dst


def _hashes(folder: Path) -> dict:
    """Relative path -> SHA-256 of every file under ``folder`` (folders as None)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                        if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _votes(store: Path) -> int:
    with AnnotationStore(store, read_only=True) as s:
        return len(s.votes())


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------ 1. a user's files
def test_a_folder_that_is_not_a_session_is_refused_and_left_as_it_was(tmp_path, capsys):
    X = tmp_path / "X"
    X.mkdir()
    (X / "results.json").write_text('{"mine": 1}')
    (X / "latent_map.npz").write_bytes(b"my own array")
    before = _hashes(X)
    for argv in (["report"], ["status"], ["identify", "--quick"], ["report", "--html"]):
        rc, _, err = _cli(capsys, *argv, "--session", X)
        assert rc == 2 and "results.json" in err and "no manifest.json" in err, argv
    with pytest.raises(NotASessionError, match="latent_map.npz, results.json"):
        Session(X)
    from defuse_widgets.widgets.dashboard import DefuseDashboard

    dash = DefuseDashboard.open(X)
    assert "NotASessionError" in dash.status and dash.view.identify_button.disabled
    dash.close()
    assert _hashes(X) == before   # nothing written: no session.json, no manifest


def test_an_unlisted_file_in_the_way_of_a_write_is_moved_to_archive(S, capsys):
    votes = _votes(S / "annotations.sqlite")
    (S / "results.json").write_text('{"mine": 1}')   # the user's, in a real session
    mine = hashlib.sha256(b'{"mine": 1}').hexdigest()
    listed = {k: v for k, v in _hashes(S).items() if k != "results.json"}
    rc, out, _ = _cli(capsys, "report", "--session", S, "--html")
    assert rc == 0, out
    archived = list((S / "archive").glob("*/results.json"))
    assert len(archived) == 1 and _hashes(archived[0].parent)["results.json"] == mine
    assert '"mine"' not in (S / "results.json").read_text()   # the session's own now
    after = _hashes(S)
    assert all(after[k] == v for k, v in listed.items() if k != "manifest.json"), \
        "a listed file changed"
    assert _votes(S / "annotations.sqlite") == votes


# ------------------------------------------------------------- 2. a deleted manifest
def test_a_deleted_manifest_is_refused_not_reset(S, capsys):
    votes = _votes(S / "annotations.sqlite")
    (S / "manifest.json").unlink()
    before = _hashes(S)
    for argv in (["status"], ["report"], ["distill"], ["run", "--quick"]):
        rc, _, err = _cli(capsys, *argv, "--session", S)
        assert rc == 2 and "no manifest.json" in err and "damaged" in err, argv
    assert _hashes(S) == before   # session.json is never overwritten
    # The advice: --overwrite moves every file to archive/ and starts again.
    rc, _, err = _cli(capsys, "identify", "--quick", "--Q", "2", "--overwrite",
                      "--no-progress", "--session", S)
    assert rc == 0, err
    (old,) = (S / "archive").iterdir()
    assert {k: v for k, v in _hashes(old).items()} == before
    assert _votes(old / "annotations.sqlite") == votes
    assert (S / "manifest.json").exists() and (S / "adversarial.npz").exists()


# --------------------------------------------------- 3. the dashboard shows the error
def test_the_dashboard_shows_a_truncated_file_and_keeps_the_rest_usable(S):
    from defuse_widgets.widgets.dashboard import DefuseDashboard

    votes = _votes(S / "annotations.sqlite")
    regions = S / "regions.npz"
    regions.write_bytes(regions.read_bytes()[:500])
    damaged = regions.read_bytes()
    dash = DefuseDashboard.embedded(S)
    try:
        assert "regions.npz" in dash.status and "tab 2" in dash.status
        assert dash.adversarial is not None and dash.regions is None   # tab 1 still works
        assert "regions.npz" in dash._said["distillation"]
        assert "regions.npz" in dash.view.boxes[1].children[0].value
        assert not dash.view.distill_button.disabled
        dash.run_distillation(wait=True)   # the stage again replaces the damaged file
        assert dash.regions is not None and "Could not" not in dash._said["distillation"]
    finally:
        dash.close()
    (kept,) = [p for p in (S / "archive").rglob("regions.npz")]
    assert kept.read_bytes() == damaged   # moved, never deleted
    (store,) = (S / "archive").rglob("annotations.sqlite")
    assert _votes(store) == votes


def test_the_dashboard_opened_read_only_writes_nothing(S):
    from defuse_widgets.widgets.dashboard import DefuseDashboard

    before, votes = _hashes(S), _votes(S / "annotations.sqlite")
    dash = DefuseDashboard.open(S, read_only=True)
    try:
        assert dash.regions is not None and "Resumed" in dash.status
        assert "read-only" in dash.status and dash.view.identify_button.disabled
        dash.labeling_panel.annotator = "ada"
        assert dash.labeling_panel.vote(3) is None   # refused, said where the user looks
        assert "read-only" in dash.labeling_panel.status
        with pytest.raises(PermissionError, match="read-only"):
            dash.session.identify()
    finally:
        dash.close()
    assert _hashes(S) == before and _votes(S / "annotations.sqlite") == votes


# ------------------------------------------------------ 4. advice that works
def test_the_advice_for_a_missing_file_works_when_followed(S, capsys):
    votes = _votes(S / "annotations.sqlite")
    (S / "regions.npz").unlink()
    adversarial = _hashes(S)["adversarial.npz"]
    rc, _, err = _cli(capsys, "status", "--session", S)
    assert rc == 2 and "overwrite=True" in err and "--overwrite" in err
    with pytest.raises(SessionFormatError, match="regions.npz"):
        Session(S)
    session = Session(S, overwrite=True)   # the advice, in Python
    assert session.archived is not None and not session.done("distillation")
    assert session.done("identification")
    session.close()
    rc, out, err = _cli(capsys, "distill", "--overwrite", "--no-progress", "--session", S)
    assert rc == 0, err   # the advice, on the command line
    rc, out, _ = _cli(capsys, "status", "--session", S)
    assert rc == 0 and "[x] distillation" in out
    assert _hashes(S)["adversarial.npz"] == adversarial
    (store,) = (S / "archive").rglob("annotations.sqlite")
    assert _votes(store) == votes   # the votes that depended on the regions are kept


# ---------------------------------------------------------- 5. stages out of order
@pytest.mark.parametrize("argv, first", [(["distill"], "identification"),
                                         (["label", "--simulated"], "identification"),
                                         (["correct"], "identification")])
def test_stages_out_of_order_name_the_stage_to_run_and_create_nothing(tmp_path, capsys, argv,
                                                                     first):
    new = tmp_path / "NEW"
    rc, _, err = _cli(capsys, *argv, "--session", new)
    assert rc == 2 and f"Run {first} first" in err and "NoneType" not in err
    assert not new.exists()
    with pytest.raises(ValueError, match="run identification first"):
        Session(new).distill()
    assert not new.exists()


def test_labeling_before_distillation_names_distillation(S, capsys):
    votes = _votes(S / "annotations.sqlite")
    rc, _, err = _cli(capsys, "identify", "--quick", "--Q", "2", "--overwrite", "--no-progress",
                      "--session", S)
    assert rc == 0, err
    before = _hashes(S)
    rc, _, err = _cli(capsys, "label", "--simulated", "--session", S)
    assert rc == 2 and "Run distillation first" in err
    assert _hashes(S) == before
    (store,) = (S / "archive").rglob("annotations.sqlite")
    assert _votes(store) == votes


def test_a_bad_device_leaves_no_folder(tmp_path, capsys):
    rc, _, err = _cli(capsys, "identify", "--device", "tpu", "--session", tmp_path / "T")
    assert rc == 2 and "tpu" in err and not (tmp_path / "T").exists()


# ------------------------------------------------------------- 6. a read-only folder
def _drop_root_privileges() -> list:
    """A command prefix that takes away root's power to ignore file permissions."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv cannot be bound by file permissions here")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_a_read_only_session_can_be_read_with_permissions_that_bind_root(S):
    votes = _votes(S / "annotations.sqlite")
    for p in [S, *S.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    before = _hashes(S)
    try:
        prefix = _drop_root_privileges()
        probe = subprocess.run([*prefix, "touch", str(S / "probe")], capture_output=True)
        assert probe.returncode != 0, "the folder must really be read-only for this test"
        for argv in (["status"], ["report"]):
            done = subprocess.run([*prefix, *_CLI, *argv, "--session", str(S)],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert "SQLite" not in done.stderr
        assert f"simulated-0 {votes // 5}" in subprocess.run(
            [*prefix, *_CLI, "status", "--session", str(S)], capture_output=True,
            text=True).stdout
        done = subprocess.run([*prefix, *_CLI, "distill", "--overwrite", "--session", str(S)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "ermission denied" in done.stderr
        assert "intact" not in done.stderr and "corrupt" not in done.stderr
    finally:
        for p in [S, *S.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert _hashes(S) == before and _votes(S / "annotations.sqlite") == votes


# -------------------------------------------------------------- 7. status writes nothing
def test_status_and_report_write_nothing(S, capsys):
    before, votes = _hashes(S), _votes(S / "annotations.sqlite")
    stamps = {p: p.stat().st_mtime_ns for p in S.iterdir()}
    for argv in (["status"], ["status", "--json"], ["report"]):
        rc, out, err = _cli(capsys, *argv, "--session", S)
        assert rc == 0, err
    assert _hashes(S) == before
    assert {p: p.stat().st_mtime_ns for p in S.iterdir()} == stamps
    assert _votes(S / "annotations.sqlite") == votes


# --------------------------------------------------- 8. copies of a session being voted on
def test_a_torn_wal_is_named_and_copy_keeps_every_vote(S, tmp_path, capsys):
    from defuse_widgets.storage.session_folder import SessionFolder

    votes = _votes(S / "annotations.sqlite")
    store = SessionFolder(S).open_store(10)   # a voter holds the store: votes sit in the WAL
    try:
        for i in range(10):
            store.cast_vote("ada", 0, i % 10, 3)
        copy = tmp_path / "cp"
        shutil.copytree(S, copy)   # what `cp -a` does while the voter writes
        wal = copy / "annotations.sqlite-wal"
        assert wal.stat().st_size > 32
        os.truncate(wal, wal.stat().st_size // 2)
        rc, out, err = _cli(capsys, "status", "--session", copy)
        assert rc == 2 and "annotations.sqlite-wal" in err and "torn" in err
        assert "defuse-widgets copy" in err
        rc, out, err = _cli(capsys, "copy", "--session", S, tmp_path / "safe")
        assert rc == 0 and f"{votes + 10} votes" in out, err
    finally:
        store.close()
    assert _votes(tmp_path / "safe" / "annotations.sqlite") == votes + 10
    assert _votes(S / "annotations.sqlite") == votes + 10
    rc, out, _ = _cli(capsys, "status", "--session", tmp_path / "safe")
    assert rc == 0 and "ada 10" in out


def test_copy_while_another_process_votes_holds_every_vote_committed_before(S, tmp_path):
    votes = _votes(S / "annotations.sqlite")
    script = textwrap.dedent("""
        import sys, time
        from defuse_widgets.storage.session_folder import SessionFolder
        store = SessionFolder(sys.argv[1]).open_store(10)
        store.set_review_set(50, [0] * 100000)
        for i in range(100000):
            store.cast_vote("cy", 50, i, 1 + i % 9)   # committed before it returns
            print(i, flush=True)
    """)
    voter = subprocess.Popen([sys.executable, "-c", script, str(S)], stdout=subprocess.PIPE,
                             text=True)
    try:
        committed = -1
        for line in voter.stdout:
            committed = int(line)
            if committed >= 200:
                break
        done = copy_session(S, tmp_path / "copy")   # the voter goes on meanwhile
    finally:
        voter.kill()
        voter.wait(timeout=60)
    with AnnotationStore(done["path"] / "annotations.sqlite", read_only=True) as copy:
        cy = {v.sample for v in copy.votes(annotator="cy")}
    assert set(range(committed + 1)) <= cy   # every vote committed before the copy began
    assert done["votes"] == votes + len(cy)
    Session(done["path"], read_only=True).close()   # the copy is a session that opens


def test_copy_refuses_a_dest_that_holds_files_and_writes_nothing(S, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("mine")
    before = _hashes(S)
    with pytest.raises(FileExistsError, match="dest must be a new or empty folder"):
        copy_session(S, dest)
    assert _hashes(dest) == {"mine.txt": hashlib.sha256(b"mine").hexdigest()}
    assert _hashes(S) == before


# ------------------------------------------------------------------ 10. smaller cases
def test_a_store_on_a_text_file_names_the_file(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database")
    with pytest.raises(StoreFileError, match="notes.sqlite.*not a database"):
        AnnotationStore(text, n_classes=10)
    assert text.read_text() == "not a database"
    with pytest.raises(sqlite3.DatabaseError):   # StoreFileError is not a DatabaseError
        raise sqlite3.DatabaseError
