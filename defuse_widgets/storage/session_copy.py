"""A consistent copy of a live session folder: ``defuse-widgets copy --session S DEST``.

``cp -a`` of a folder whose vote store is being written can copy the store's
write-ahead log half-written, and SQLite then drops the votes in the cut tail
in silence. :func:`copy_session` copies the vote store with SQLite's online
backup API (one consistent snapshot, taken while voters go on) and every other
listed file byte for byte, checks each copy against the manifest's SHA-256,
and checks the finished copy as a session is checked when it is opened. The
copy is written under a temporary name and renamed into place, so ``DEST``
either is a whole session or does not exist. This module imports no UI code.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

from defuse_widgets.storage import manifest as manifest_io
from defuse_widgets.storage import persistence
from defuse_widgets.storage.annotations import connect_read_only
from defuse_widgets.storage.session_folder import SessionFolder

__all__ = ["copy_session"]

_STORE = "annotations.sqlite"


def copy_session(session: str | os.PathLike, dest: str | os.PathLike, *,
                 archive: bool = False) -> dict:
    """Copy session folder ``session`` to the new folder ``dest``, votes included, safely.

    Parameters
    ----------
    session : str or os.PathLike
        A session folder; it may be in use (voters writing to its store).
        It is only read.
    dest : str or os.PathLike
        A folder that does not exist yet (or is empty); its parent must exist.
    archive : bool, default=False
        Also copy ``archive/`` (earlier results moved aside).

    Returns
    -------
    dict
        ``path`` (the copy), ``files`` (names copied), ``votes`` (in the copy's store).

    Raises
    ------
    FileExistsError
        When ``dest`` holds anything.
    SessionFormatError
        When the session is damaged, or a file changed while it was copied (run again).
    """
    source = SessionFolder(session, read_only=True)   # checks every listed file first
    dest = _check_dest(Path(dest))
    tmp = dest.with_name(f".{dest.name}.copy-{os.getpid()}")
    manifest = manifest_io.read_manifest(source.path)
    try:
        tmp.mkdir()
        for name, entry in manifest["files"].items():
            _copy_listed(source.path / name, tmp / name, entry)
        if archive and (source.path / "archive").is_dir():
            shutil.copytree(source.path / "archive", tmp / "archive", symlinks=True)
        persistence.save_json(tmp / persistence.MANIFEST, manifest)
        votes = _count_votes(tmp / _STORE)
        SessionFolder(tmp, read_only=True)   # the copy passes the checks of an open
        if dest.exists():
            dest.rmdir()   # empty, checked above
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": dest, "files": sorted(manifest["files"]), "votes": votes}


def _check_dest(dest: Path) -> Path:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"dest must be a new or empty folder; {str(dest)!r} "
                              f"{'holds files' if dest.is_dir() else 'is a file'}. Nothing "
                              "was written.")
    if not dest.parent.resolve().is_dir():
        raise FileNotFoundError(f"dest's parent folder must exist; "
                                f"{str(dest.parent)!r} does not.")
    return dest


def _copy_listed(src: Path, dst: Path, entry: dict) -> None:
    """Copy one listed file (the store by SQLite's backup API) and check it against ``entry``."""
    if src.name == _STORE:
        _backup_store(src, dst)
        return
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True)
        return
    shutil.copy2(src, dst)
    if "sha256" in entry and persistence.sha256_file(dst) != entry["sha256"]:
        raise persistence.SessionFormatError(src, "file changed while it was copied (a stage "
                                             "ran?); nothing was kept. Copy again.")


def _backup_store(src: Path, dst: Path) -> None:
    """One consistent snapshot of a (possibly live) SQLite store, by the online backup API."""
    if os.access(src.parent, os.W_OK):   # live voters possible: a normal read-only reader
        uri = f"file:{quote(str(src.resolve()))}?mode=ro"
        source = sqlite3.connect(uri, uri=True, timeout=30)
    else:                                  # nobody can be writing there
        source = connect_read_only(src, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)   # all pages in one step: one read transaction
    finally:
        target.close()
        source.close()


def _count_votes(store: Path) -> int | None:
    if not store.exists():
        return None
    con = connect_read_only(store)
    try:
        return con.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
    finally:
        con.close()
