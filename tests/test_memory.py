"""trim_heap hands freed heap pages back to the system."""
import sys

import pytest

from defuse_widgets.memory import trim_heap


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_trim_heap_returns_freed_small_allocations():
    # many small blocks live on the heap (below the mmap threshold), so freeing
    # them leaves the pages resident until malloc_trim
    blocks = [bytearray(4000) for _ in range(50_000)]      # about 200 MB
    keep = blocks[-1]
    before = _rss_mb()
    del blocks
    assert trim_heap() is True
    assert _rss_mb() < before - 100
    assert len(keep) == 4000
