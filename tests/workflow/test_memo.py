"""The session's memo: kept by content, least recently used dropped, copies handed out."""
import threading

import numpy as np
import torch

from defuse_widgets.workflow.memo import Memo, digest


def test_digest_changes_with_content_dtype_and_shape():
    a = np.arange(6, dtype=np.float32)
    assert digest(a) == digest(a.copy()) == digest(torch.from_numpy(a))
    assert digest(a) != digest(a.astype(np.float64))
    assert digest(a) != digest(a.reshape(2, 3))
    b = a.copy()
    b[3] += 1e-6
    assert digest(a) != digest(b)
    assert digest(a, 1) != digest(a, 2) and digest("ab", "c") != digest("a", "bc")


def test_memo_keeps_the_latest_and_drops_the_least_recently_used():
    memo, calls = Memo(size=2), []

    def compute(v):
        return lambda: calls.append(v) or v

    assert [memo.get(k, compute(k)) for k in ("a", "b", "a", "c")] == ["a", "b", "a", "c"]
    assert calls == ["a", "b", "c"] and len(memo) == 2   # "b" was the least recent
    memo.get("b", compute("b"))
    assert calls == ["a", "b", "c", "b"] and (memo.hits, memo.misses) == (1, 4)
    memo.clear()
    assert len(memo) == 0


def test_memo_hands_out_copies_of_tensors_and_arrays():
    memo = Memo()
    first = memo.get("k", lambda: (torch.ones(3), np.zeros(2)))
    first[0][:] = 5
    first[1][:] = 5
    kept = memo.get("k", lambda: None)
    assert torch.equal(kept[0], torch.ones(3)) and not kept[1].any()


def test_memo_is_safe_from_several_threads():
    memo, errors = Memo(size=3), []

    def work(i):
        try:
            for j in range(300):
                assert memo.get(j % 7, lambda j=j: j % 7) == j % 7
        except Exception as exc:   # pragma: no cover - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(memo) == 3
