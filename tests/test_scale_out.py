"""The λ sweep through a concurrent.futures.Executor: a local Dask cluster with 2 workers."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction import Corrector

distributed = pytest.importorskip("distributed")


class _Epochs(Callback, list):
    def on_epoch_end(self, corrector, *, record, **kw):
        self.append(record)


def _sweep(tiny_models, digits, task, **kw):
    clf, _ = tiny_models
    X_f, y_f, evals = task
    history = _Epochs()
    corrector = Corrector(lams=[0.0, 0.1, 10.0], epochs=2, batch_size=256, device="cpu",
                          callbacks=[history], **kw)
    return corrector.fit(clf, digits.X_train, digits.y_train, X_f, y_f, eval_sets=evals), history


def test_dask_cluster_gives_the_in_process_results(tiny_models, digits, task):
    local, local_history = _sweep(tiny_models, digits, task)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote, remote_history = _sweep(tiny_models, digits, task,
                                        executor=client.get_executor())
    assert [r["lam"] for r in remote.results_] == [0.0, 0.1, 10.0]
    for a, b in zip(local.results_, remote.results_):
        assert a.keys() == b.keys()
        for key in ("test", "region_test", "validation", "region_validation"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), (a["lam"], key)
    assert remote.best_["lam"] == local.best_["lam"]
    assert len(remote_history) == len(local_history) == 6     # callbacks saw every epoch
    X = digits.X_test
    assert torch.equal(local.best_model_(X).argmax(1), remote.best_model_(X).argmax(1))


def test_executor_with_checkpoints_resumes_and_rejects_non_executors(tiny_models, digits, task,
                                                                     tmp_path):
    with ThreadPoolExecutor(2) as pool:
        first, _ = _sweep(tiny_models, digits, task, executor=pool, checkpoint_dir=tmp_path)
        again, _ = _sweep(tiny_models, digits, task, executor=pool, checkpoint_dir=tmp_path)
    assert again.resumed_ == [0, 1, 2]
    assert [r["test"] for r in again.results_] == [r["test"] for r in first.results_]
    with pytest.raises(TypeError, match="executor"):
        _sweep(tiny_models, digits, task, executor=object())
