"""Scale-out through a standard ``concurrent.futures.Executor``.

Two kinds of tasks run on an executor:

- **The λ sweep.** Each λ of a :class:`~defuse_widgets.stages.correction.Corrector`
  sweep is a *run* that carries its own weights, optimiser and random
  streams (:mod:`~defuse_widgets.stages.correction.sweep`), so runs are
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

from defuse_widgets._validation import check_executor
from defuse_widgets.stages.correction.sweep import submit_runs
from defuse_widgets.stages.identification import identify_sharded

__all__ = ["check_executor", "identify_sharded", "submit_runs"]
