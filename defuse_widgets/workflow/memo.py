"""Results of a session's deterministic computations, kept by the contents of their inputs.

A review set (decoded and predicted) and the baseline set (decoded and labelled
by the simulated annotator) are pure functions of arrays the session already
holds and of its settings. :class:`Memo` keeps the latest of them, keyed by a
digest of those inputs, so the dashboard's report and *Build failure data*
do not decode and predict them again. Nothing here is written to disk.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np
import torch

from defuse_widgets.storage.sweep_checkpoints import hash_tensors

__all__ = ["Memo", "digest"]


def digest(*parts: Any) -> str:
    """SHA-1 of ``parts``: arrays and tensors by shape, dtype and bytes
    (:func:`~defuse_widgets.storage.sweep_checkpoints.hash_tensors`), anything else by its
    ``repr``.
    """
    h, arrays = hashlib.sha1(), {}
    for i, part in enumerate(parts):
        if isinstance(part, np.ndarray):
            part = torch.from_numpy(np.ascontiguousarray(part))
        if isinstance(part, torch.Tensor):
            arrays[f"{i:04d}"] = part   # hash_tensors feeds them in name order
        else:
            h.update(f"{i}:{part!r}|".encode())
    return hash_tensors(h, arrays).hexdigest()


def _copy(value: Any) -> Any:
    """``value`` with its tensors and arrays copied, so a caller cannot change the kept one."""
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.clone() if isinstance(value, torch.Tensor) else value.copy()
    return value


class Memo:
    """The ``size`` latest results, by key; thread-safe, least recently used dropped first.

    Parameters
    ----------
    size : int, default=64

    Examples
    --------
    >>> memo = Memo(size=2)
    >>> memo.get(("square", 3), lambda: 3 * 3)
    9
    >>> memo.hits, memo.misses
    (0, 1)
    """

    def __init__(self, size: int = 64):
        self.size = int(size)
        self.hits = self.misses = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """A copy of the kept result of ``key``, or of ``compute()``, then kept under ``key``."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return _copy(self._items[key])
            self.misses += 1
        value = compute()   # outside the lock: another thread may compute the same key
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return _copy(value)

    def clear(self) -> None:
        """Forget every kept result."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
