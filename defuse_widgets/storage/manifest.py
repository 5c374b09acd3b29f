"""The session manifest: ``manifest.json`` lists every file with its size and SHA-256.

Updates are serialised across threads and processes (``flock``); a listed
file is verified against its recorded hash before it is read. This module
imports no UI code.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

from defuse_widgets._version import __version__
from defuse_widgets.storage.persistence import (
    FORMAT_VERSION,
    MANIFEST,
    SessionFormatError,
    load_json,
    resolve_inside,
    save_json,
    sha256_file,
)

__all__ = ["read_manifest", "record_files", "verify_file"]

_FORMAT_NAME = "defuse_widgets.session"
_LOCK = threading.RLock()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def _manifest_lock(root: Path, *, shared: bool = False) -> Iterator[None]:
    """Serialise manifest updates across threads and processes (flock where available).

    ``shared`` (readers) takes a shared lock on an existing lock file and never
    creates one, so reading a session writes nothing.
    """
    with _LOCK:
        try:
            import fcntl
        except ImportError:   # pragma: no cover - Windows: threads only
            yield
            return
        try:
            f = open(root / ".manifest.lock", "rb" if shared else "a+b")
        except OSError:   # no lock file yet, or a read-only folder: nobody writes through us
            yield
            return
        with f:
            fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest(root: str | os.PathLike) -> dict | None:
    """Return a session folder's manifest, or None when it has none (an older session).

    Raises
    ------
    SessionFormatError
        When the manifest is invalid, from a newer format version, or lists a
        path that leaves the folder (:class:`UnsafeFileError`).
    """
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    manifest = load_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT_NAME:
        raise SessionFormatError(path, f"file must be a defuse_widgets session manifest "
                                 f"(format {_FORMAT_NAME!r}); got something else.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise SessionFormatError(path, f"session must have format version 1 to "
                                 f"{FORMAT_VERSION} to be read by defuse_widgets "
                                 f"{__version__}; got format version {version!r} (written by "
                                 f"defuse_widgets {manifest.get('package_version')}). Upgrade "
                                 "defuse_widgets to open it.")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise SessionFormatError(path, "manifest must list its files under 'files'; "
                                 f"got {type(files).__name__}.")
    for name, entry in files.items():
        resolve_inside(root, name)
        if not isinstance(entry, dict):
            raise SessionFormatError(path, f"manifest entry {name!r} must be an object; "
                                     f"got {entry!r}.")
    return manifest


def record_files(root: str | os.PathLike, kinds: dict, *, hashed: bool = True,
                 remove: Iterable[str] = ()) -> dict:
    """Add or refresh manifest entries for files just written (and drop ``remove``).

    Parameters
    ----------
    root : str or os.PathLike
        The session folder.
    kinds : dict of str -> str
        Relative path -> kind (e.g. ``"adversarial"``).
    hashed : bool, default=True
        Record each file's size and SHA-256, checked by :func:`verify_file`.
        False for files that change after every write by design (the SQLite
        store) or are rewritten by other code (the latent-map cache).
    remove : iterable of str
        Relative paths to drop from the manifest.

    Returns
    -------
    dict
        The manifest written.
    """
    root = Path(root)
    with _manifest_lock(root):
        manifest = read_manifest(root) or {
            "format": _FORMAT_NAME, "format_version": FORMAT_VERSION, "created": _now(),
            "files": {}}
        for name in remove:
            manifest["files"].pop(name, None)
        for name, kind in kinds.items():
            path = resolve_inside(root, name)
            entry = {"kind": kind, "written": _now()}
            if hashed:
                entry.update(size=path.stat().st_size, sha256=sha256_file(path))
            manifest["files"][name] = entry
        manifest.update(format_version=FORMAT_VERSION, package_version=__version__,
                        updated=_now())
        save_json(root / MANIFEST, manifest)
    return manifest


def verify_file(root: str | os.PathLike, name: str) -> Path:
    """Return the path of ``name`` in ``root`` after checking it against the manifest.

    A file the manifest does not list (an older session) is only checked for
    containment; a listed one must have the recorded size and SHA-256.

    Raises
    ------
    UnsafeFileError
        When the path leaves ``root``.
    SessionFormatError
        When the file is truncated, corrupted or changed since it was recorded.
    """
    path = resolve_inside(root, name)
    with _manifest_lock(Path(root), shared=True):
        entry = (read_manifest(root) or {"files": {}})["files"].get(name)
        if entry is None or "sha256" not in entry or not path.is_file():
            return path
        size = path.stat().st_size
        if size != entry.get("size"):
            raise SessionFormatError(path, f"file must be {entry.get('size')} bytes as recorded "
                                     f"in {MANIFEST}; got {size} bytes (truncated or changed).")
        if sha256_file(path) != entry["sha256"]:
            raise SessionFormatError(path, f"file's SHA-256 must match {MANIFEST}; it does not "
                                     "(corrupted or changed outside defuse_widgets).")
    return path
