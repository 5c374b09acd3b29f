"""The files of one session folder: checked on open, written safely, archived not deleted.

:class:`SessionFolder` is the storage half of :class:`~defuse_widgets.workflow.Session`
and the only code that writes into a session folder. Every write goes to a
temporary name, is fsynced and renamed (:mod:`.persistence`), and is recorded
in ``manifest.json`` with its size and SHA-256. A file the manifest does not
list does not exist for the session. This module imports no UI code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from defuse_widgets._validation import describe
from defuse_widgets.storage import manifest as manifest_io
from defuse_widgets.storage import persistence
from defuse_widgets.storage.label_review_store import LabelReviewStore

__all__ = ["STAGE_FILES", "NotASessionError", "SessionFolder", "dependent_files"]

#: The files each stage writes; a stage's files depend on every earlier stage's.
STAGE_FILES = {
    "identification": ("adversarial.npz", "latent_map.npz", "slices.json"),
    "distillation": ("regions.npz", "grounding.json"),
    "labeling": ("annotations.sqlite", "decisions.json", "failure_data.npz"),
    "correction": ("correction.json", "corrected_classifier.pt", "lam_choice.json",
                   "results.json", "checkpoints"),
}
_IDENTITY = "session.json"
#: Names only a session folder holds: one of them without a manifest is a damaged session.
_MARKERS = {_IDENTITY, ".manifest.lock", "adversarial.npz", "regions.npz",
            "annotations.sqlite", "decisions.json", "correction.json"}
_LOADERS = {".npz": persistence.load_npz, ".json": persistence.load_json,
            ".pt": persistence.load_state_dict}


class NotASessionError(ValueError):
    """A folder that holds files but is not a session folder (no ``manifest.json``).

    Attributes
    ----------
    path : Path
    found : list of str
        What the folder holds.
    """

    def __init__(self, path: Path, found: list, problem: str):
        self.path, self.found = Path(path), list(found)
        super().__init__(f"{os.fspath(path)!r}: {problem}")


def dependent_files(name: str) -> list:
    """``name`` and every listed name whose content depends on it (later stages).

    The identity (``session.json``) makes every stage's result depend on it;
    a file of no stage (``fidelity.json``, ``report.html``) only itself.
    """
    stages = list(STAGE_FILES)
    if name == _IDENTITY:
        first = 0
    else:
        first = next((i for i, s in enumerate(stages) if name in STAGE_FILES[s]), None)
        if first is None:
            return [name]
    return [name] + [n for s in stages[first:] for n in STAGE_FILES[s] if n != name]


class SessionFolder:
    """A session folder's files: integrity checks, atomic writes, the manifest, the archive.

    Opening checks, before anything is written, that the folder holds no
    symlink, that it is a session (it has ``manifest.json``) or empty or
    missing, and that every file the manifest lists is present and intact
    (a SQLite store must pass SQLite's integrity check and have a whole
    write-ahead log). The folder itself is created by the first write.

    Parameters
    ----------
    path : str or os.PathLike
        The folder. It is identified by what it holds, never by how its path
        is spelled.
    read_only : bool, default=False
        Read only: every write raises :class:`PermissionError`, SQLite is
        opened read-only, and opening writes nothing (a missing folder is a
        :class:`FileNotFoundError`). Works on a read-only folder or mount.
    strict : bool, default=True
        Raise on the first damaged listed file. False records each in
        ``problems`` instead (reading that file raises its error), so that what
        does not depend on it stays usable (the dashboard).
    overwrite : bool, default=False
        Move damaged listed files, and every result that depends on them, to
        ``archive/<time>/`` and go on; a damaged session without a manifest
        moves all its files there and starts again. Nothing is deleted.

    Attributes
    ----------
    path : Path
    problems : dict of str -> SessionFormatError
        Damaged listed files (only with ``strict=False``).
    archived : list of Path
        Where opening or a write moved files out of the way.
    on_first_write : callable or None
        Called once, before the first write into a new session folder (the
        session writes its identity then).

    Raises
    ------
    UnsafeFileError
        When the folder is or holds a symlink.
    NotASessionError
        When the folder holds files but no ``manifest.json`` (named in the message).
    SessionFormatError
        When a listed file is missing, truncated or corrupted (the error names it).
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False,
                 strict: bool = True, overwrite: bool = False):
        from defuse_widgets.workflow.integrity import check_no_symlinks

        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(f"session must be a str or os.PathLike naming a folder; "
                            f"got {describe(path)}.")
        self.path, self.read_only = Path(path), bool(read_only)
        self.problems, self.archived, self.on_first_write = {}, [], None
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"session must name a folder, not a file; got {str(self.path)!r}.")
        check_no_symlinks(self.path)
        self.is_new = True
        if self.path.exists():
            self.is_new = self._open_existing(strict, overwrite and not read_only)
        if self.is_new and read_only:
            raise FileNotFoundError(
                f"session {str(self.path)!r} must be a session folder to read it; "
                f"{'it is empty' if self.path.exists() else 'it does not exist'}. Start one "
                f"with `defuse-widgets identify --session {self.path}` (or run).")

    def _open_existing(self, strict: bool, overwrite: bool) -> bool:
        """Check an existing folder; True when it holds no session yet."""
        from defuse_widgets.workflow.integrity import listed_file_problems

        if manifest_io.read_manifest(self.path) is None:
            found = sorted(p.name for p in self.path.iterdir())
            if found:
                self._refuse_unlisted(found, overwrite)
            return True
        problems = listed_file_problems(self.path)
        if problems and overwrite:
            names = sorted({n for name in problems for n in dependent_files(name)})
            self.archived.append(self.archive(names))
        elif problems and strict:
            raise next(iter(problems.values()))
        else:
            self.problems = problems
        return False

    def _refuse_unlisted(self, found: list, overwrite: bool) -> None:
        """A folder with files and no manifest: refused, or (damaged, overwrite) archived."""
        shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
        marks = sorted(_MARKERS & set(found))
        if not marks:
            raise NotASessionError(self.path, found, (
                f"session folder must be empty or a defuse_widgets session (with "
                f"{persistence.MANIFEST}); it holds {shown}, and no {persistence.MANIFEST}. "
                "Nothing was written. Choose a new or empty folder for the session."))
        if overwrite:
            self.archived.append(persistence.move_to_archive(
                self.path, [self.path / n for n in found if n != "archive"]))
            return
        raise NotASessionError(self.path, found, (
            f"session folder holds session files ({', '.join(marks)}) but no "
            f"{persistence.MANIFEST}, so they cannot be checked: the session is damaged. "
            f"Nothing was written. Restore {persistence.MANIFEST} (from a backup, or a "
            "`defuse-widgets copy` of the session), or open it with overwrite=True (--overwrite) "
            "to move every file to archive/<time>/ and start a new session there."))

    def __repr__(self) -> str:
        return f"SessionFolder({str(self.path)!r})"

    # ----------------------------------------------------------------- reads
    def listed(self, name: str) -> bool:
        """True when the manifest lists ``name`` (so the file exists and was checked)."""
        return name in ((manifest_io.read_manifest(self.path) or {}).get("files", {}))

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the folder (checked to stay inside it)."""
        return persistence.resolve_inside(self.path, name)

    def load(self, name: str, *args) -> Any:
        """The content of listed file ``name`` (npz dict, JSON, state_dict) or None.

        A file that exists but is not listed is ignored: it was not written by
        the session (or the write did not finish).
        """
        if not self.listed(name):
            return None
        if name in self.problems:
            raise self.problems[name]
        path = manifest_io.verify_file(self.path, name)
        return _LOADERS[path.suffix](path, *args)

    def build(self, name: str, build: Callable, *args) -> Any:
        """``build(load(name))``; an inconsistent file raises SessionFormatError naming it."""
        data = self.load(name, *args)
        if data is None:
            return None
        try:
            return build(data)
        except persistence.SessionFormatError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise persistence.SessionFormatError(self.file(name),
                                        f"file holds inconsistent data: {exc}") from exc

    # ---------------------------------------------------------------- writes
    def save(self, name: str, obj: Any, *, kind: str | None = None) -> Path:
        """Write ``obj`` to ``name`` atomically (by suffix: npz, JSON, state_dict) and list it."""
        path = self._writable(name)
        _WRITERS[path.suffix](path, obj)
        manifest_io.record_files(self.path, {name: kind or Path(name).stem})
        return path

    def save_with(self, name: str, write: Callable[[Path], Any], *, kind: str,
                  hashed: bool = True) -> Path:
        """Let ``write(path)`` write ``name`` (e.g. a LatentMap's own saver), then list it."""
        path = self._writable(name)
        write(path)
        manifest_io.record_files(self.path, {name: kind}, hashed=hashed)
        return path

    def open_store(self, n_classes: int) -> LabelReviewStore:
        """Open (or create) ``annotations.sqlite``: region votes and label-review answers.

        Listed without a hash (it changes with every vote) when it is created.
        Read-only folders open it read-only.
        """
        if self.read_only:
            if "annotations.sqlite" in self.problems:
                raise self.problems["annotations.sqlite"]
            path = self.file("annotations.sqlite")
        else:
            path = self._writable("annotations.sqlite")
        store = LabelReviewStore(path, n_classes=n_classes, read_only=self.read_only)
        if not self.read_only and not self.listed("annotations.sqlite"):
            manifest_io.record_files(self.path, {"annotations.sqlite": "annotations"}, hashed=False)
        return store

    def checkpoint_dir(self) -> Path:
        """The sweep checkpoint folder (created, listed as a folder).

        Its files are checked by their own fingerprints
        (:class:`~defuse_widgets.storage.sweep_checkpoints.SweepCheckpoints`).
        """
        path = self.file("checkpoints")
        if not (path.is_dir() and not path.is_symlink()):
            path = self._writable("checkpoints")
            path.mkdir(exist_ok=True)
        if not self.read_only and not self.listed("checkpoints"):
            manifest_io.record_files(self.path, {"checkpoints": "checkpoints"}, hashed=False)
        return path

    def archive(self, names) -> Path | None:
        """Move the named files (and SQLite side files) to ``archive/<time>/``; never delete.

        Returns
        -------
        Path or None
            The archive folder, or None when none of them existed.
        """
        self._check_writable()
        names = [n for n in names]
        present = [p for n in names for p in (self.path / n, self.path / f"{n}-wal",
                                              self.path / f"{n}-shm") if p.exists()]
        for n in names:
            self.problems.pop(n, None)
        if not present:
            if self.path.exists() and not self.is_new:
                manifest_io.record_files(self.path, {}, remove=names)
            return None
        folder = persistence.move_to_archive(self.path, present)
        manifest_io.record_files(self.path, {}, remove=names)
        return folder

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"session {str(self.path)!r} is open read-only; nothing was "
                                  "written. Open it without read_only to run a stage.")

    def _writable(self, name: str) -> Path:
        """Make way for a write of ``name``: inside, no symlink, no unlisted file in the way.

        The first write into a new folder creates it (and calls ``on_first_write``).
        A file that is there but not listed was not written by the session (a
        user's own, or a write that never finished): it is moved to
        ``archive/<time>/``, never overwritten.
        """
        self._check_writable()
        path = persistence.resolve_inside(self.path, name)
        if path.is_symlink():
            raise persistence.UnsafeFileError(path, "file must not be a symlink; refused before "
                                     f"writing (it points to {os.path.realpath(path)!r}).")
        if self.is_new:
            self.path.mkdir(parents=True, exist_ok=True)
            self.is_new = False
            if self.on_first_write is not None:
                self.on_first_write()
        if path.exists() and not self.listed(name):
            side = [Path(f"{path}-wal"), Path(f"{path}-shm")]
            self.archived.append(persistence.move_to_archive(self.path, [path, *side]))
        self.problems.pop(name, None)
        return path


def _save_json(path: Path, obj: Any) -> None:
    persistence.save_json(path, obj, default=_jsonable)


_WRITERS = {".npz": persistence.save_npz, ".json": _save_json, ".pt": persistence.save_state_dict}


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
