"""Scale-out through a standard ``concurrent.futures.Executor``.

Two kinds of tasks run on an executor:

- **The λ sweep.** Each λ of a :class:`~defuse_widgets.stages.correction.Corrector`
  sweep is a *run* that carries its own weights, optimiser and random
  streams (:mod:`~defuse_widgets.stages.correction_sweep`), so runs are
  independent tasks: one task per λ under ``schedule="full"``, one per λ and
  rung under ``"halving"``.
- **Identification.** :func:`identify_sharded` splits the training images into
  shards whose noise is drawn exactly as in one process, so the result equals
  :func:`~defuse_widgets.stages.identification.identify`'s.

Any executor runs them: ``ProcessPoolExecutor`` on one machine, or Dask
distributed's ``client.get_executor()`` on a cluster (``pip install
defuse_widgets[distributed]``). There is no scheduler here; the executor is
the scheduler.

Examples
--------
>>> from distributed import Client, LocalCluster          # doctest: +SKIP
>>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
>>> Corrector(lams=PAPER_LAMS, executor=client.get_executor()).fit(...)  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from defuse_widgets.stages.correction_sweep import run_task

__all__ = ["check_executor", "identify_sharded", "submit_runs"]

_LOCAL_ONLY = ("callbacks", "checkpoint_dir", "executor", "progress")


def check_executor(executor) -> None:
    """Raise TypeError unless ``executor`` has a ``submit`` method."""
    if not callable(getattr(executor, "submit", None)):
        raise TypeError("executor must be a concurrent.futures.Executor (with submit); "
                        f"got {type(executor).__name__}.")


def submit_runs(corrector, runs: dict, n_epochs: int, finish_after: bool, data: tuple) -> dict:
    """Submit one task per run to ``corrector.executor``.

    Parameters
    ----------
    corrector : Corrector
    runs : dict of int -> run
        Runs of :func:`~defuse_widgets.stages.correction_sweep.new_run`, keyed by λ index.
    n_epochs : int
        Epochs each task trains.
    finish_after : bool
        Also evaluate each run's selected epoch on every eval set.
    data : tuple
        ``(X, y, X_f, y_f, eval_sets)``.

    Returns
    -------
    dict of int -> Future
        Each resolves to :func:`~defuse_widgets.stages.correction_sweep.run_task`'s result.
    """
    check_executor(corrector.executor)
    params = {k: v for k, v in corrector.get_params().items() if k not in _LOCAL_ONLY}
    return {i: corrector.executor.submit(run_task, type(corrector), params,
                                         (corrector.before_, corrector.before_correct_), run,
                                         n_epochs, finish_after, *data)
            for i, run in runs.items()}


def identify_sharded(classifier, vae, X, y, *, executor, step: int, rng: np.random.Generator,
                     seed: int, callback=None, **identify_params):
    """Identification with each slice of ``step`` training images as an executor task.

    The noise stream is the one :func:`~defuse_widgets.stages.identification.identify`
    draws in one process: before submitting a slice, this process snapshots
    the generator and then draws (and discards) that slice's noise chunk by
    chunk, as ``identify`` would, so the next slice starts where it should.
    Drawing Beta noise is cheap next to decoding and classifying it.

    Parameters
    ----------
    classifier, vae : nn.Module
    X : Tensor of shape (n, C, H, W)
    y : Tensor of shape (n,)
    executor : concurrent.futures.Executor
    step : int
        Images per task, a multiple of ``identify_params["chunk_size"]``.
    rng : numpy.random.Generator
        The run's generator, at its start.
    seed : int
        The run's seed (stored with the result).
    callback : ProgressCallback, optional
        ``callback("identification", n_done, n)`` as slices return, in order;
        True cancels the rest and returns None.
    **identify_params
        Q, a, b, max_per_instance, centered, chunk_size, batch_size, device, precision.

    Returns
    -------
    AdversarialExamples or None
    """
    from defuse_widgets.models.inference import encode_mean
    from defuse_widgets.stages.identification import concatenate, identify

    check_executor(executor)
    p = identify_params
    n, chunk = len(X), p["chunk_size"]
    n_latent = encode_mean(vae, X[:1], device=next(vae.parameters()).device).shape[1]
    futures = []
    for start in range(0, max(n, 1), step):
        shard_rng = np.random.Generator(np.random.PCG64())
        shard_rng.bit_generator.state = rng.bit_generator.state
        futures.append((start, executor.submit(
            identify, classifier, vae, X[start:start + step], y[start:start + step],
            seed=shard_rng, progress=False, **p)))
        for s in range(start, min(start + step, n), chunk):   # skip the slice's noise
            rng.beta(p["a"], p["b"], size=(min(chunk, n - s), p["Q"], n_latent))
    parts = []
    try:
        for start, future in futures:
            parts.append((start, future.result()))
            if callback is not None and callback("identification", min(start + step, n), n):
                return None
    finally:
        for _, future in futures:
            future.cancel()
    return concatenate(parts, seed=seed)
