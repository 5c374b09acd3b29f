"""Safe files for every stage: atomic writes, safe loads, contained paths, a manifest.

Everything Defuse saves goes through this module:

* **Atomic writes.** A file is written to a temporary name in its own folder,
  flushed to disk (``fsync``), then renamed over the old one (``os.replace``)
  and the folder is synced. A crash mid-save leaves the previous file intact.
* **No code from files.** Arrays are ``.npz`` loaded with ``allow_pickle=False``;
  models are ``state_dict``\\ s loaded with ``torch.load(weights_only=True)``.
  A file that would run code when unpickled is refused with
  :class:`UnsafeFileError` and nothing in it is executed.
* **Clear errors.** A truncated, corrupted, incompatible or unsafe file raises
  a :class:`SessionFormatError` (a ``ValueError``) that names the file and
  says what is wrong; the caller never gets half a result.
* **Contained paths.** :func:`resolve_inside` refuses paths that leave their
  folder through ``..``, an absolute path or a symlink.
* **Manifest.** ``manifest.json`` lists the files a session holds with their
  size and SHA-256, the format version and the package version.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

__all__ = ["FORMAT_VERSION", "MANIFEST", "SessionFormatError", "UnsafeFileError",
           "atomic_write", "load_json", "load_npz", "load_state_dict", "resolve_inside",
           "save_json", "save_npz", "save_state_dict", "sha256_file"]

#: Version of the session folder layout; a folder from a newer version is refused.
FORMAT_VERSION = 1
#: Name of the manifest file at the top of a session folder.
MANIFEST = "manifest.json"


class SessionFormatError(ValueError):
    """A saved file is missing parts, truncated, corrupted or from an incompatible version.

    Attributes
    ----------
    path : Path
        The file at fault.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        super().__init__(f"{os.fspath(path)!r}: {problem}")


class UnsafeFileError(SessionFormatError):
    """A file would run code when loaded, or a path leaves its session folder."""


# ---------------------------------------------------------------- paths
def resolve_inside(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Return ``root / relative`` after checking it stays inside ``root``.

    Parameters
    ----------
    root : str or os.PathLike
        The folder that must contain the result.
    relative : str or os.PathLike
        A relative path such as a manifest entry.

    Returns
    -------
    Path
        ``root / relative`` (not resolved, so it names what the caller asked for).

    Raises
    ------
    UnsafeFileError
        When ``relative`` is absolute, contains ``..``, or resolves through a
        symlink to somewhere outside ``root``.
    """
    rel = os.fspath(relative)
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UnsafeFileError(root, f"path must be a non-empty relative path; got {rel!r}.")
    parts = Path(rel).parts
    if Path(rel).is_absolute() or rel.startswith(("/", "\\")) or ":" in parts[0]:
        raise UnsafeFileError(root, f"path must be relative to the session folder; got the "
                                    f"absolute path {rel!r}.")
    if ".." in parts or ".." in rel.replace("\\", "/").split("/"):
        raise UnsafeFileError(root, f"path must stay inside the session folder; got {rel!r}, "
                                    "which climbs out with '..'.")
    target = Path(root) / rel
    real_root = Path(root).resolve()
    real = target.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafeFileError(target, f"path must stay inside the session folder "
                                      f"{str(real_root)!r}; it is a symlink to {str(real)!r}.")
    return target


# ---------------------------------------------------------------- writes
@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[io.BufferedWriter]:
    """Open a temporary file that replaces ``path`` only when the block succeeds.

    The data is fsynced before the rename and the folder after it, so after
    a crash ``path`` holds either the old or the new content, never part of it.

    Examples
    --------
    >>> with atomic_write("results.json") as f: f.write(b"{}")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def move_to_archive(folder: str | os.PathLike, files: Iterable[Path]) -> Path:
    """Move the existing ``files`` into a new ``folder/archive/<time>[-n]/`` and return it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = Path(folder) / "archive" / stamp, 1
    while target.exists():
        target, n = Path(folder) / "archive" / f"{stamp}-{n}", n + 1
    target.mkdir(parents=True)
    for f in files:
        if f.exists():
            shutil.move(str(f), str(target / f.name))
    return target


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):   # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_npz(path: str | os.PathLike, arrays: dict) -> Path:
    """Write ``arrays`` atomically as an ``.npz``; TypeError for object arrays (pickles)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise TypeError(f"arrays[{key!r}] must hold numbers or strings, not Python "
                            "objects (they would need a pickle).")
    with atomic_write(path) as f:   # a file object keeps the name (no ".npz" appended)
        np.savez(f, **arrays)
    return Path(path)


def save_state_dict(path: str | os.PathLike, state: dict) -> Path:
    """Write a model's ``state_dict`` (tensors moved to CPU) atomically with ``torch.save``."""
    state = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v)
             for k, v in state.items()}
    with atomic_write(path) as f:
        torch.save(state, f)
    return Path(path)


def save_json(path: str | os.PathLike, obj: Any, *, default: Callable | None = str) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    data = json.dumps(obj, indent=2, default=default, allow_nan=True).encode()
    with atomic_write(path) as f:
        f.write(data)
    return Path(path)


# ----------------------------------------------------------------- loads
def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise SessionFormatError(path, "file must exist; it is missing"
                                 + (" (a folder is in its place)." if path.exists() else "."))


def load_npz(path: str | os.PathLike, required: Iterable[str] = ()) -> dict:
    """Read every array of an ``.npz`` file into memory, refusing pickles.

    Parameters
    ----------
    path : str or os.PathLike
    required : iterable of str
        Keys the file must hold.

    Returns
    -------
    dict of str -> ndarray

    Raises
    ------
    UnsafeFileError
        When an array (or the file itself) is a pickle.
    SessionFormatError
        When the file is missing, truncated, corrupted or lacks a required key.
    """
    path = Path(path)
    _check_exists(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise SessionFormatError(path, "file must be an .npz archive; got a single "
                                         ".npy array.")
            out = {k: data[k] for k in data.files}
    except SessionFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeFileError(path, "file holds pickled Python objects, which could run "
                                  "code when loaded; refused (arrays must be plain numbers)."
                                  ) from exc
        raise SessionFormatError(path, f"file is corrupted or not an .npz archive ({exc}).") \
            from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, zipfile.LargeZipFile) as exc:
        raise SessionFormatError(path, f"file is truncated or corrupted ({type(exc).__name__}: "
                                 f"{exc}).") from exc
    missing = [k for k in required if k not in out]
    if missing:
        raise SessionFormatError(path, f"file must hold arrays {sorted(required)}; missing "
                                 f"{missing}.")
    return out


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load a ``state_dict`` with ``torch.load(weights_only=True)`` on CPU.

    Returns
    -------
    dict of str -> Tensor

    Raises
    ------
    UnsafeFileError
        When the file holds anything but tensors and plain containers (a
        pickle that would build other objects or run code is never executed).
    SessionFormatError
        When the file is missing, truncated, corrupted or not a state_dict.
    """
    path = Path(path)
    _check_exists(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(path, "file is not a plain state_dict: it would build other "
                              "Python objects or run code when unpickled; refused "
                              f"(weights_only load: {str(exc).splitlines()[0]})") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SessionFormatError(path, f"file is truncated or corrupted ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}).") from exc
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise SessionFormatError(path, "file must hold a state_dict (a dict of name -> "
                                 f"tensor); got {type(state).__name__}.")
    return state


def load_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a truncated or invalid one raises :class:`SessionFormatError`."""
    path = Path(path)
    _check_exists(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionFormatError(path, f"file is truncated or not valid JSON ({exc}).") from exc


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

