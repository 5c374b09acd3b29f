"""Checks a session folder passes every time it is opened, before anything is written.

* :func:`check_no_symlinks`: no symlink anywhere in the folder (a symlinked
  store or array could make a write land outside it).
* :func:`check_listed_files`: every file the manifest lists exists and, where
  a hash is recorded, has it; a SQLite store passes SQLite's own integrity check.
* :func:`fingerprint_module` / :func:`fingerprint_data`: the content a session
  is identified by, with its settings (never its path).

Every failure raises :class:`~defuse_widgets.storage.persistence.SessionFormatError`
naming the file. This module imports no UI code.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import torch

from defuse_widgets.storage import manifest as manifest_io
from defuse_widgets.storage import persistence
from defuse_widgets.storage.sweep_checkpoints import hash_tensors

__all__ = ["check_listed_files", "check_no_symlinks", "check_sqlite", "check_wal",
           "fingerprint_data", "fingerprint_module", "listed_file_problems"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_MAGIC = (0x377F0682, 0x377F0683)


def check_no_symlinks(root: str | os.PathLike) -> None:
    """Refuse a session folder that is, or holds, a symlink anywhere.

    Raises
    ------
    UnsafeFileError
        Naming the first symlink found.
    """
    root = Path(root)
    if root.is_symlink():
        raise persistence.UnsafeFileError(root, "session folder must not be a symlink; it "
                                          f"points to {os.path.realpath(root)!r}. Open the "
                                          "real folder instead.")
    if not root.exists():
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            path = Path(folder) / name
            if path.is_symlink():
                raise persistence.UnsafeFileError(path, "session folders must not hold symlinks (a "
                                         "write through one could land outside the folder); "
                                         f"it points to {os.path.realpath(path)!r}. Replace "
                                         "it with the file itself.")


def check_sqlite(path: str | os.PathLike) -> None:
    """Check that ``path`` is an intact SQLite database, without writing to it.

    Raises
    ------
    SessionFormatError
        When the header is not SQLite's or ``PRAGMA integrity_check`` finds damage.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        raise persistence.SessionFormatError(path, "file must be a SQLite database "
                                             "(annotations); its header is damaged or it is "
                                             "another kind of file. Restore it from a backup or "
                                             "from archive/; nothing was written.")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, timeout=10)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise persistence.SessionFormatError(path, f"file must be an intact SQLite database; "
                                             f"SQLite says: {exc}. Nothing was written.") from exc
    if rows != [("ok",)]:
        problems = "; ".join(r[0] for r in rows[:3])
        raise persistence.SessionFormatError(path, f"file must be an intact SQLite database; "
                                             f"SQLite's integrity check found: {problems}. "
                                             "Nothing was written.")
    check_wal(path)


def check_wal(path: str | os.PathLike, *, retries: int = 5) -> None:
    """Refuse a store whose write-ahead log (``<path>-wal``) is torn.

    A WAL is a 32-byte header and whole frames (24 bytes and one page each).
    One cut elsewhere (a ``cp`` of a folder while a voter writes, a full
    disk) would make SQLite drop the votes in the cut tail without a word. A
    live writer can leave a frame half-written for an instant, so an odd size
    is checked again before it is called torn. A cut exactly at a frame
    boundary looks like a crash before a commit and cannot be told apart.

    Raises
    ------
    SessionFormatError
        Naming the ``-wal`` file, its size and the frame size.
    """
    wal = Path(f"{os.fspath(path)}-wal")
    for attempt in range(retries):
        problem = _wal_problem(wal)
        if problem is None:
            return
        time.sleep(0.05 * (attempt + 1))
    raise persistence.SessionFormatError(wal, f"file must be whole write-ahead-log frames; "
                                         f"{problem}, so it is torn (a copy made with cp while "
                                         "a voter was writing?) and SQLite would drop the "
                                         "votes in the cut tail in silence. Nothing was "
                                         "written. Copy the original session again with "
                                         "`defuse-widgets copy`, which copies a live store "
                                         "safely.")


def _wal_problem(wal: Path) -> str | None:
    """What is wrong with the size of ``wal`` (None when it is whole frames, or absent)."""
    try:
        size = wal.stat().st_size
        with open(wal, "rb") as f:
            head = f.read(32)
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    if len(head) < 32 or int.from_bytes(head[:4], "big") not in _WAL_MAGIC:
        return f"it holds {size} bytes without a write-ahead-log header"
    frame = 24 + int.from_bytes(head[8:12], "big")
    if (size - 32) % frame:
        return (f"it holds {size} bytes, which is not 32 + a whole number of "
                f"{frame}-byte frames")
    return None


def listed_file_problems(root: str | os.PathLike) -> dict:
    """Check every file ``manifest.json`` lists; return what is wrong with each.

    Returns
    -------
    dict of str -> SessionFormatError
        Listed name -> the error naming it, for each file that is missing,
        truncated, corrupted, changed since it was recorded, or (a SQLite
        store) damaged or with a torn write-ahead log. Empty when all is well.
    """
    problems = {}
    for name, entry in ((manifest_io.read_manifest(root) or {}).get("files", {})).items():
        try:
            path = manifest_io.verify_file(root, name)
            if not path.exists():
                raise persistence.SessionFormatError(
                    path, f"file must exist: {persistence.MANIFEST} lists it "
                    f"({entry.get('kind')}) but it is missing. Restore it, or open the session "
                    "with overwrite=True (the CLI's --overwrite on a stage or run) to move the "
                    "results that depend on it to archive/ and go on.")
            if path.suffix == ".sqlite":
                check_sqlite(path)
        except persistence.UnsafeFileError:
            raise
        except persistence.SessionFormatError as exc:
            problems[name] = exc
    return problems


def check_listed_files(root: str | os.PathLike) -> dict:
    """Check every file ``manifest.json`` lists; return the manifest (``{}`` if none).

    Raises
    ------
    SessionFormatError
        For the first listed file that is missing, truncated, corrupted or
        changed since it was recorded.
    """
    for problem in listed_file_problems(root).values():
        raise problem
    return manifest_io.read_manifest(root) or {}


def fingerprint_module(module: torch.nn.Module) -> str:
    """SHA-256 of a module's ``state_dict`` (names, shapes, dtypes and values).

    Returns
    -------
    str
        64 hex digits.
    """
    return hash_tensors(hashlib.sha256(), module.state_dict()).hexdigest()


def fingerprint_data(data) -> str:
    """SHA-256 of a :class:`~defuse_widgets.data.DataSplits`' six arrays.

    Returns
    -------
    str
        64 hex digits.
    """
    names = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
    return hash_tensors(hashlib.sha256(),
                        {n: torch.as_tensor(getattr(data, n)) for n in names}).hexdigest()
