"""Hand memory that the C allocator keeps after torch frees it back to the system.

glibc's ``malloc`` keeps freed heap pages for reuse. A λ sweep allocates and
frees hundreds of megabytes of activations per epoch in tensors of varying
sizes, and without a trim the resident memory of a default run grew by about
30 MB per λ (measured: 1,270 → 2,065 MB over the two arms of a default run,
with at most seven runs alive). :func:`trim_heap` after each epoch returns
those pages (``malloc_trim``); it takes a few milliseconds. Elsewhere than
glibc it does nothing.

This module imports no UI code.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["trim_heap"]


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim_heap() -> bool:
    """Return free heap pages to the system (tensors are freed by reference
    counting, so no garbage collection is needed first).

    Returns
    -------
    bool
        True when glibc's ``malloc_trim`` ran (and released something or not).
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
