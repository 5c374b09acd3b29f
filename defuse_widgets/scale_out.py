"""Scale-out of the λ sweep through a standard ``concurrent.futures.Executor``.

Each λ of a :class:`~defuse_widgets.stages.correction.Corrector` sweep starts from the
original classifier and is seeded with ``seed + i`` alone, so the λs are
independent tasks. Any executor runs them: ``ProcessPoolExecutor`` on one
machine, or Dask distributed's ``client.get_executor()`` on a cluster (``pip
install defuse_widgets[distributed]``). There is no scheduler here; the
executor is the scheduler.

Examples
--------
>>> from distributed import Client, LocalCluster          # doctest: +SKIP
>>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
>>> Corrector(lams=PAPER_LAMS, executor=client.get_executor()).fit(...)  # doctest: +SKIP
"""
from __future__ import annotations

from defuse_widgets._validation import resolve_device
from defuse_widgets.callbacks import History

__all__ = ["fit_lam_task", "submit_lams"]

_LOCAL_ONLY = ("callbacks", "checkpoint_dir", "executor", "progress")


def submit_lams(corrector, lams, done, base, X, y, X_f, y_f, eval_sets) -> dict:
    """Submit every λ of ``lams`` not in ``done`` to ``corrector.executor``.

    Returns
    -------
    dict of int -> Future
        ``{}`` when the corrector has no executor (the sweep runs in process).
    """
    executor = corrector.executor
    if executor is None:
        return {}
    if not callable(getattr(executor, "submit", None)):
        raise TypeError("executor must be a concurrent.futures.Executor (with submit); "
                        f"got {type(executor).__name__}.")
    params = {k: v for k, v in corrector.get_params().items() if k not in _LOCAL_ONLY}
    return {i: executor.submit(fit_lam_task, type(corrector), params, corrector.before_, i, lam,
                               base, X, y, X_f, y_f, eval_sets)
            for i, lam in enumerate(lams) if i not in done}


def fit_lam_task(cls, params: dict, before: dict, i: int, lam: float, base, X, y, X_f, y_f,
                 eval_sets) -> tuple:
    """Fine-tune one λ as an executor task.

    Parameters
    ----------
    cls : type
        The Corrector class (a subclass keeps its ``get_loss``).
    params : dict
        Its constructor parameters, without the local-only ones.
    before : dict
        The sweep's ``before_`` record (the selection rule compares with it).
    i, lam
        Index and value of λ.
    base : nn.Module
        The classifier before fine-tuning.
    X, y, X_f, y_f, eval_sets
        As in :meth:`Corrector.fit`.

    Returns
    -------
    (state_dict, record, history)
    """
    corrector = cls(**params)
    corrector.before_, corrector.history_ = before, History()
    return corrector._fit_one(i, lam, base, X, y, X_f, y_f, eval_sets,
                              resolve_device(corrector.device))
