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

__all__ = ["Memo", "digest"]


def digest(*parts: Any) -> str:
    """SHA-1 of ``parts``: arrays by dtype, shape and bytes; anything else by its ``repr``."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()


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
