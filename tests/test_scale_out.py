"""The λ sweep through a concurrent.futures.Executor: a local Dask cluster with 2 workers."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction import Corrector
from defuse_widgets.stages.identification import identify, identify_in_steps

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


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_dask_identification_equals_in_process(tiny_models, digits, client):
    """Slices of the training images as Dask tasks: the same examples, in the same order."""
    clf, vae = tiny_models
    X, y = digits.X_train[:300], digits.y_train[:300]
    kw = dict(Q=64, a=5, b=5, max_per_instance=8, centered=True, seed=3, n_steps=4)
    local = identify_in_steps(clf, vae, X, y, **kw)
    seen = []
    remote = identify_in_steps(clf, vae, X, y, executor=client.get_executor(),
                               callback=lambda stage, d, n: seen.append(d), **kw)
    assert len(seen) >= 3 and seen[-1] == 300       # several tasks, progress in order
    for field in ("codes", "source_index", "true_label", "predicted_label", "noise_norm"):
        assert np.array_equal(getattr(local, field), getattr(remote, field)), field
    assert remote.n_decoded == local.n_decoded == 300 * 64
    assert remote.params == local.params
    whole = identify(clf, vae, X, y, Q=64, a=5, b=5, max_per_instance=8, centered=True,
                     seed=3, progress=False)
    assert np.array_equal(whole.codes, remote.codes)
    stopped = identify_in_steps(clf, vae, X, y, executor=client.get_executor(),
                                callback=lambda *a: True, **kw)
    assert stopped is None


def test_dask_cluster_gives_the_in_process_results(tiny_models, digits, task, client):
    local, local_history = _sweep(tiny_models, digits, task)
    remote, remote_history = _sweep(tiny_models, digits, task, executor=client.get_executor())
    halving, _ = _sweep(tiny_models, digits, task, executor=client.get_executor(),
                        schedule="halving")
    local_halving, _ = _sweep(tiny_models, digits, task, schedule="halving")
    assert [r["region_test"] for r in halving.results_] == pytest.approx(
        [r["region_test"] for r in local_halving.results_], abs=1e-6)
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
    with ThreadPoolExecutor(1) as pool:   # threads share torch's global random stream
        first, _ = _sweep(tiny_models, digits, task, executor=pool, checkpoint_dir=tmp_path)
        again, _ = _sweep(tiny_models, digits, task, executor=pool, checkpoint_dir=tmp_path)
    assert again.resumed_ == [0, 1, 2]
    assert [r["test"] for r in again.results_] == [r["test"] for r in first.results_]
    with pytest.raises(TypeError, match="executor"):
        _sweep(tiny_models, digits, task, executor=object())
