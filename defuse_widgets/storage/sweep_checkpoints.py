"""Per-λ checkpoints of a correction sweep, so a killed sweep resumes where it stopped.

:class:`~defuse_widgets.stages.correction.Corrector` saves each finished λ's selected
weights as ``<name>_lam_<i>.pt`` in its ``checkpoint_dir`` and then records
that λ (its result, its epoch history and the checkpoint's SHA-256) in
``<name>_sweep.json``. Both writes are atomic, the checkpoint first, so a λ
counts as finished only once both are on disk.

The record carries a *fingerprint*: a SHA-256 over the sweep's settings, the
classifier's weights and every array it trains and evaluates on. A new fit
with the same ``checkpoint_dir`` reuses finished λs only when its fingerprint
is the same; a sweep of other settings or data is moved to
``archive/<time>/`` and the sweep starts over, so nothing is mixed and
nothing is deleted.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from defuse_widgets.storage import persistence

__all__ = ["SweepCheckpoints", "fingerprint", "hash_tensors"]

SWEEP_FORMAT_VERSION = 1


def fingerprint(params: dict, classifier: torch.nn.Module, arrays: dict) -> str:
    """SHA-256 of a sweep's settings, the classifier's weights and its data.

    Parameters
    ----------
    params : dict
        JSON-serialisable settings (λs, epochs, lr, seed, ...).
    classifier : nn.Module
        The classifier before fine-tuning.
    arrays : dict of str -> Tensor
        Training data, failure data and eval sets, each hashed with its shape and dtype.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    tensors = {f"weights/{k}": v for k, v in classifier.state_dict().items()}
    return hash_tensors(h, {**tensors, **arrays}).hexdigest()


def hash_tensors(h, tensors: dict):
    """Feed named tensors (name, shape, dtype and bytes, in name order) into hash ``h``.

    Parameters
    ----------
    h : hashlib hash object
    tensors : dict of str -> Tensor

    Returns
    -------
    h
    """
    for name, t in sorted(tensors.items()):
        shape = tuple(t.shape)
        t = t.detach().cpu().contiguous().reshape(-1)   # 0-d tensors (BatchNorm counters) too
        h.update(f"{name}|{tuple(shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")   # no bytes copy
    return h


class SweepCheckpoints:
    """The finished λs of one named sweep in a checkpoint folder.

    Parameters
    ----------
    folder : str or Path
        The ``checkpoint_dir``; created if missing.
    name : str
        The sweep's name (``"defuse"``, ``"baseline"``); prefixes its files.
    fingerprint : str
        From :func:`fingerprint`.
    params : dict
        The settings, stored for the record.

    Attributes
    ----------
    finished : dict of int -> dict
        Per λ index: ``lam``, ``file``, ``sha256``, ``size``, ``result`` and
        ``history`` (that λ's epoch records).
    archived : Path or None
        Where :meth:`open` moved a sweep of other settings or data, if anywhere.
    """

    def __init__(self, folder, name: str, fingerprint: str, params: dict):
        self.folder, self.name = Path(folder), name
        self.fingerprint, self.params = fingerprint, params
        self.finished: dict[int, dict] = {}
        self.archived: Path | None = None

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}_sweep.json"

    def checkpoint_path(self, i: int) -> Path:
        return self.folder / f"{self.name}_lam_{i}.pt"

    def open(self, resume: bool) -> "SweepCheckpoints":
        """Read the finished λs (when ``resume`` and the fingerprint matches) or start over.

        A record from other settings or data, or any record when ``resume``
        is False, is archived with its checkpoints. A λ whose checkpoint is
        missing or does not match its recorded SHA-256 is not finished.

        Raises
        ------
        SessionFormatError
            When ``resume`` and the record is unreadable or from a newer format.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        persistence.resolve_inside(self.folder, self.path.name)
        if not self.path.exists():
            return self
        if not resume:
            self._archive()
            return self
        record = persistence.load_json(self.path)
        if not isinstance(record, dict) or record.get("format_version") != SWEEP_FORMAT_VERSION:
            raise persistence.SessionFormatError(
                self.path, f"sweep record must have format version {SWEEP_FORMAT_VERSION}; got "
                f"{record.get('format_version') if isinstance(record, dict) else record!r}. "
                "Pass resume=False to archive it and start over.")
        if record.get("fingerprint") != self.fingerprint:
            self._archive()
            return self
        for key, entry in record.get("finished", {}).items():
            try:
                path = persistence.resolve_inside(self.folder, entry["file"])
                ok = (path.is_file() and path.stat().st_size == entry["size"]
                      and persistence.sha256_file(path) == entry["sha256"])
            except (KeyError, TypeError) as exc:
                raise persistence.SessionFormatError(self.path, f"finished λ {key} must record its "
                                            f"file, size and sha256; {exc!r} is missing.") from exc
            if ok:
                self.finished[int(key)] = entry
        return self

    def load(self, i: int) -> dict:
        """The state_dict of finished λ ``i`` (``torch.load(weights_only=True)``)."""
        return persistence.load_state_dict(
            persistence.resolve_inside(self.folder, self.finished[i]["file"]))

    def add(self, i: int, lam: float, state: dict, result: dict, history: list) -> None:
        """Save λ ``i``'s checkpoint, then record it as finished (both atomically)."""
        path = self.checkpoint_path(i)
        persistence.resolve_inside(self.folder, path.name)
        persistence.save_state_dict(path, state)
        self.finished[i] = {"lam": lam, "file": path.name, "size": path.stat().st_size,
                            "sha256": persistence.sha256_file(path), "result": result,
                            "history": list(history)}
        persistence.save_json(self.path, {
            "format_version": SWEEP_FORMAT_VERSION, "name": self.name,
            "fingerprint": self.fingerprint, "params": self.params,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "finished": {str(k): v for k, v in sorted(self.finished.items())}})

    def _archive(self) -> None:
        files = [self.path, *self.folder.glob(f"{self.name}_lam_*.pt")]
        self.archived = persistence.move_to_archive(self.folder, files)

