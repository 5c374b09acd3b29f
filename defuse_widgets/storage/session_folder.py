"""The files of one session folder: checked on open, written safely, archived not deleted.

:class:`SessionFolder` is the storage half of :class:`~defuse_widgets.workflow.Session`
and the only code that writes into a session folder. Every write goes to a
temporary name, is fsynced and renamed (:mod:`.persistence`), and is recorded
in ``manifest.json`` with its size and SHA-256. A file the manifest does not
list does not exist for the session. This module imports no UI code.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Callable

from defuse_widgets._validation import describe
from defuse_widgets.storage import persistence as io
from defuse_widgets.storage.label_review_store import LabelReviewStore

__all__ = ["STAGE_FILES", "SessionFolder"]

#: The files each stage writes; a stage's files depend on every earlier stage's.
STAGE_FILES = {
    "identification": ("adversarial.npz", "latent_map.npz"),
    "distillation": ("regions.npz", "grounding.json"),
    "labeling": ("annotations.sqlite", "decisions.json", "failure_data.npz"),
    "correction": ("correction.json", "corrected_classifier.pt", "lam_choice.json",
                   "results.json", "checkpoints"),
}
_LOADERS = {".npz": io.load_npz, ".json": io.load_json, ".pt": io.load_state_dict}


class SessionFolder:
    """A session folder's files: integrity checks, atomic writes, the manifest, the archive.

    Opening checks, before anything is written, that the folder holds no
    symlink and that every file the manifest lists is present and intact
    (a SQLite store must pass SQLite's integrity check).

    Parameters
    ----------
    path : str or os.PathLike
        The folder; created if missing. It is identified by what it holds,
        never by how its path is spelled.

    Raises
    ------
    UnsafeFileError
        When the folder is or holds a symlink.
    SessionFormatError
        When a listed file is missing, truncated or corrupted (the error names it).
    """

    def __init__(self, path: str | os.PathLike):
        from defuse_widgets.workflow.integrity import check_listed_files, check_no_symlinks

        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(f"session must be a str or os.PathLike naming a folder; "
                            f"got {describe(path)}.")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"session must name a folder, not a file; got {str(self.path)!r}.")
        check_no_symlinks(self.path)
        if self.path.exists():
            check_listed_files(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"SessionFolder({str(self.path)!r})"

    # ----------------------------------------------------------------- reads
    def listed(self, name: str) -> bool:
        """True when the manifest lists ``name`` (so the file exists and was checked)."""
        return name in ((io.read_manifest(self.path) or {}).get("files", {}))

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the folder (checked to stay inside it)."""
        return io.resolve_inside(self.path, name)

    def load(self, name: str, *args) -> Any:
        """The content of listed file ``name`` (npz dict, JSON, state_dict) or None.

        A file that exists but is not listed is ignored: it was not written by
        the session (or the write did not finish).
        """
        if not self.listed(name):
            return None
        path = io.verify_file(self.path, name)
        return _LOADERS[path.suffix](path, *args)

    def build(self, name: str, build: Callable, *args) -> Any:
        """``build(load(name))``; an inconsistent file raises SessionFormatError naming it."""
        data = self.load(name, *args)
        if data is None:
            return None
        try:
            return build(data)
        except io.SessionFormatError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise io.SessionFormatError(self.file(name),
                                        f"file holds inconsistent data: {exc}") from exc

    # ---------------------------------------------------------------- writes
    def save(self, name: str, obj: Any, *, kind: str | None = None) -> Path:
        """Write ``obj`` to ``name`` atomically (by suffix: npz, JSON, state_dict) and list it."""
        path = self._writable(name)
        _WRITERS[path.suffix](path, obj)
        io.record_files(self.path, {name: kind or Path(name).stem})
        return path

    def save_with(self, name: str, write: Callable[[Path], Any], *, kind: str,
                  hashed: bool = True) -> Path:
        """Let ``write(path)`` write ``name`` (e.g. a LatentMap's own saver), then list it."""
        path = self._writable(name)
        write(path)
        io.record_files(self.path, {name: kind}, hashed=hashed)
        return path

    def open_store(self, n_classes: int) -> LabelReviewStore:
        """Open (or create) ``annotations.sqlite``: region votes and label-review answers.

        Listed without a hash (it changes with every vote).
        """
        path = self._writable("annotations.sqlite")
        try:
            store = LabelReviewStore(path, n_classes=n_classes)
        except sqlite3.DatabaseError as exc:
            raise io.SessionFormatError(path, f"file must be an intact SQLite store; "
                                        f"SQLite says: {exc}.") from exc
        io.record_files(self.path, {"annotations.sqlite": "annotations"}, hashed=False)
        return store

    def checkpoint_dir(self) -> Path:
        """The sweep checkpoint folder (created, listed as a folder)."""
        path = self._writable("checkpoints")
        path.mkdir(exist_ok=True)
        return path

    def archive(self, names) -> Path | None:
        """Move the named files (and SQLite side files) to ``archive/<time>/``; never delete.

        Returns
        -------
        Path or None
            The archive folder, or None when none of them existed.
        """
        names = [n for n in names]
        present = [p for n in names for p in (self.path / n, self.path / f"{n}-wal",
                                              self.path / f"{n}-shm") if p.exists()]
        if not present:
            io.record_files(self.path, {}, remove=names)
            return None
        folder = io.move_to_archive(self.path, present)
        io.record_files(self.path, {}, remove=names)
        return folder

    def _writable(self, name: str) -> Path:
        """Check ``name`` before the first write into it: inside, and not a symlink."""
        path = io.resolve_inside(self.path, name)
        if path.is_symlink():
            raise io.UnsafeFileError(path, "file must not be a symlink; refused before "
                                     f"writing (it points to {os.path.realpath(path)!r}).")
        return path


def _save_json(path: Path, obj: Any) -> None:
    io.save_json(path, obj, default=_jsonable)


_WRITERS = {".npz": io.save_npz, ".json": _save_json, ".pt": io.save_state_dict}


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
