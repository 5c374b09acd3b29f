"""The schedule of a :class:`~defuse_widgets.stages.correction.Corrector` sweep.

Each λ is a *run*: a copy of the classifier with its optimiser, its data
order and its own random stream, advanced epoch by epoch. Because every run
carries its own generator states, runs can be advanced in any order (or on
an executor) and each λ's records equal those of a sweep that trains the λs
one after the other.

Two schedules:

``"full"``
    Every λ for every epoch (the paper's sweep).
``"halving"``
    Successive halving: after each epoch but the last, only the best third
    (rounded up) of the λs still in the race trains on, ranked by the
    selection rule's *score* on their best epoch so far (for ``"balanced"``
    the mean of validation and region-validation accuracy). The score, not
    the rule's hard validation floor, decides who trains on: after one
    epoch a large λ has not yet recovered its validation accuracy, and the
    floor would keep only the λs too small to change anything. With 17 λs
    and 3 epochs that is 17 + 6 + 2 = 25 λ-epochs instead of 51. The λs
    that stop early keep their records and can still be selected by the rule.

This module imports no UI code.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from defuse_widgets._validation import check_executor
from defuse_widgets.memory import trim_heap
from defuse_widgets.models.inference import to_unit
from defuse_widgets.models.loading import copy_model
from defuse_widgets.models.precision import autocast
from defuse_widgets.seeding import seed_everything
from defuse_widgets.stages.correction.parked_runs import ParkedRuns
from defuse_widgets.storage.sweep_checkpoints import SweepCheckpoints, fingerprint

__all__ = ["ETA", "SCHEDULES", "Cancelled", "Run", "Schedule", "advance", "best_score", "finish",
           "new_run", "open_checkpoints", "planned_lam_epochs", "prune", "run_schedule",
           "run_task", "submit_runs"]

#: Accepted values of ``Corrector(schedule=...)``.
SCHEDULES = ("full", "halving")
#: Successive halving keeps ⌈n / ETA⌉ of n λs after each epoch but the last.
ETA = 3


class Cancelled(Exception):
    """Raised inside a run when the corrector was asked to stop."""


@dataclass
class Run:
    """One λ's fine-tuning in a sweep: everything needed to advance it by more epochs.

    Attributes
    ----------
    i : int
        Index of the λ in the sweep's ``lams``.
    lam : float
    model : nn.Module or None
        The classifier copy being fine-tuned (None while parked on disk).
    opt_state : dict or None
        Adam's state.
    rng_state : tuple
        torch's CPU (and CUDA) generator states of this run.
    gen_state : Tensor
        The data-order generator's state.
    perm_f : Tensor of shape (n_f,), int64
        The current pass over D_f, and ``pos_f`` the position in it.
    pos_f : int
    epoch : int
        Epochs trained so far.
    best : dict or None
        Record of the best epoch so far under the selection rule.
    best_state : dict or None
        Its weights (state dict, on the CPU).
    history : list of dict
        Every epoch's record.
    parked : str or None
        The file holding the tensors while parked (:class:`ParkedRuns`).
    """

    i: int
    lam: float
    model: torch.nn.Module | None
    opt_state: dict | None
    rng_state: tuple
    gen_state: torch.Tensor
    perm_f: torch.Tensor
    pos_f: int = 0
    epoch: int = 0
    best: dict | None = None
    best_state: dict | None = None
    history: list = field(default_factory=list)
    parked: str | None = None


def planned_lam_epochs(n_lams: int, epochs: int, schedule: str) -> int:
    """λ-epochs a sweep of ``n_lams`` λs trains under ``schedule``."""
    if schedule == "full":
        return n_lams * epochs
    total, n = 0, n_lams
    for _ in range(epochs):
        total += n
        n = math.ceil(n / ETA)
    return total


def prune(candidates: list, scores: dict, lams) -> list:
    """The λ indices that stay in the race after one rung of successive halving.

    Parameters
    ----------
    candidates : list of int
        Indices of the λs in the race.
    scores : dict of int -> float
        Each candidate's best selection score so far (larger is better).
    lams : sequence of float
        Ties go to the smaller λ.

    Returns
    -------
    list of int
        The ⌈len(candidates) / ETA⌉ best, in λ order.
    """
    k = math.ceil(len(candidates) / ETA)
    order = sorted(candidates, key=lambda i: (scores[i], -lams[i]), reverse=True)
    return sorted(order[:k])


def best_score(history: list, epoch: int) -> float:
    """The best ``score`` among the records of ``history`` up to ``epoch``."""
    return max(r["score"] for r in history if r["epoch"] <= epoch)


def open_checkpoints(corrector, base, X, y, X_f, y_f, eval_sets):
    """The sweep record in ``corrector.checkpoint_dir`` (None without one), opened for
    resuming; sets ``corrector.fingerprint_``.
    """
    c = corrector
    if c.checkpoint_dir is None:
        return None
    if not isinstance(c.checkpoint_dir, (str, os.PathLike)):
        raise TypeError(f"checkpoint_dir must be a str or os.PathLike naming a folder; "
                        f"got {c.checkpoint_dir!r}.")
    if not isinstance(c.resume, (bool, np.bool_)):
        raise TypeError(f"resume must be True or False; got {c.resume!r}.")
    if not isinstance(c.name, str) or not c.name or not c.name.isidentifier():
        raise ValueError(f"name must be a non-empty identifier (it names checkpoint "
                         f"files); got {c.name!r}.")
    arrays = {"X": X, "y": y, "X_f": X_f, "y_f": y_f,
              **{f"eval/{k}/{j}": t for k, pair in eval_sets.items()
                 for j, t in enumerate(pair)}}
    params = c.sweep_params()
    c.fingerprint_ = fingerprint(params, base, arrays)
    return SweepCheckpoints(c.checkpoint_dir, c.name, c.fingerprint_, params).open(bool(c.resume))


def _rng_state(dev: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple, dev: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], dev)


def new_run(corrector, i: int, lam: float, base: torch.nn.Module, n_f: int,
            dev: torch.device) -> Run:
    """A fresh run of λ number ``i``: a copy of ``base`` seeded with ``seed + i``."""
    seed_everything(corrector.seed + i)
    state = _rng_state(dev)
    gen = torch.Generator().manual_seed(corrector.seed + i)
    model = copy_model(base).to(dev).to(memory_format=corrector.memory_format(dev))
    opt = torch.optim.Adam(model.parameters(), lr=corrector.lr)
    perm_f = torch.randperm(n_f, generator=gen)
    return Run(i=i, lam=lam, model=model, opt_state=opt.state_dict(), rng_state=state,
               gen_state=gen.get_state(), perm_f=perm_f)


def advance(corrector, run: Run, n_epochs: int, X, y, X_f, y_f, eval_sets,
            dev: torch.device) -> list:
    """Train ``run`` for ``n_epochs`` more epochs; return their records.

    Each epoch is scored on the selection rule's sets only; the run keeps the
    best epoch's weights. Raises :class:`Cancelled` when the corrector was
    asked to stop.
    """
    c, model, lam = corrector, run.model, run.lam
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    opt.load_state_dict(run.opt_state)
    gen = torch.Generator()
    gen.set_state(run.gen_state)
    outer = _rng_state(dev)
    _set_rng_state(run.rng_state, dev)
    if dev.type == "cuda" and run.rng_state[1] is None:   # started on the CPU
        torch.cuda.manual_seed(c.seed + run.i)
    bs, new = c.batch_size, []
    n_batches = math.ceil(len(X) / bs)
    fmt = c.memory_format(dev)
    try:
        for _ in range(n_epochs):
            epoch = run.epoch + 1
            if epoch == 1:
                c.notify("on_lam_begin", lam=lam)
            perm, total = torch.randperm(len(X), generator=gen), 0.0
            model.train()
            for b in range(n_batches):
                if c.stopping:
                    raise Cancelled
                idx = perm[b * bs:(b + 1) * bs]
                if run.pos_f + bs > len(run.perm_f):
                    run.perm_f, run.pos_f = torch.randperm(len(X_f), generator=gen), 0
                idx_f = run.perm_f[run.pos_f:run.pos_f + bs]
                run.pos_f += bs
                # D may be uint8 and D_f float: each part is made float in [0, 1] alone
                xb = torch.cat([to_unit(X[idx]), to_unit(X_f[idx_f])])
                xb = xb.to(dev).contiguous(memory_format=fmt)
                with autocast(c.precision, dev):
                    logits = model(xb).float()
                loss = c.get_loss(logits[:len(idx)], y[idx].to(dev), logits[len(idx):],
                                  y_f[idx_f].to(dev), lam)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                c.steps_done_ += 1
                c.notify("on_batch_end", lam=lam, epoch=epoch, batch=b + 1,
                        n_batches=n_batches)
            model.eval()
            rec = {"lam": lam, "epoch": epoch, "loss": total / n_batches,
                   **c.evaluate(model, X, y, X_f, y_f, eval_sets, dev, c.selection_sets())}
            trim_heap()   # the epoch's freed activations go back to the system
            run.epoch = epoch
            run.history.append(rec)
            new.append(rec)
            c.history_.append(rec)
            c.notify("on_epoch_end", record=rec)
            if run.best is None or c.rank(rec) > c.rank(run.best):
                run.best = rec
                run.best_state = {k: v.detach().cpu().clone()
                                     for k, v in model.state_dict().items()}
    finally:
        run.rng_state, run.gen_state = _rng_state(dev), gen.get_state()
        run.opt_state = opt.state_dict()
        _set_rng_state(outer, dev)
    return new


def finish(corrector, run: Run, X, y, X_f, y_f, eval_sets, dev: torch.device) -> tuple:
    """The run's selected weights, its record on every eval set, and its history."""
    model = run.model
    model.load_state_dict(run.best_state)
    model.eval()
    rest = set(eval_sets) - set(corrector.selection_sets())
    best = {**run.best, **corrector.evaluate(model, X, y, X_f, y_f, eval_sets, dev, rest)}
    return run.best_state, best, list(run.history)


def run_task(cls, params: dict, before: tuple, run: Run, n_epochs: int, finish_after: bool,
             X, y, X_f, y_f, eval_sets) -> tuple:
    """Advance one run as an executor task.

    Parameters
    ----------
    cls : type
        The Corrector class (a subclass keeps its ``get_loss``).
    params : dict
        Its constructor parameters, without the local-only ones.
    before : tuple
        The sweep's ``before_`` record and the per-image correctness of the
        model before fine-tuning (the selection rule compares with them).
    run : dict
        From :func:`new_run` or an earlier task.
    n_epochs : int
    finish_after : bool
        Also evaluate the selected epoch on every eval set.
    X, y, X_f, y_f, eval_sets
        As in :meth:`Corrector.fit`.

    Returns
    -------
    (run, new records, (state_dict, record, history) or None)
    """
    from defuse_widgets._validation import resolve_device
    from defuse_widgets.callbacks import History

    c = cls(**params)
    (c.before_, c.before_correct_), c.history_, c.steps_done_ = before, History(), 0
    dev = resolve_device(c.device)
    run.model = run.model.to(dev)
    new = advance(c, run, n_epochs, X, y, X_f, y_f, eval_sets, dev)
    done = finish(c, run, X, y, X_f, y_f, eval_sets, dev) if finish_after else None
    run.model = run.model.cpu()
    return run, new, done


def run_schedule(corrector, lams: list, done: dict, base, data: tuple, dev: torch.device,
                 checkpoints) -> None:
    """Train every λ not in ``done`` under ``corrector.schedule``; finished λs reach
    ``corrector.finish_lam`` (and ``checkpoints``) as they finish.

    Parameters
    ----------
    corrector : Corrector
    lams : list of float
    done : dict of int -> checkpoint entry
        λs a checkpointed sweep already finished (replayed by the caller).
    base : nn.Module
        The classifier before fine-tuning, on the CPU.
    data : tuple
        ``(X, y, X_f, y_f, eval_sets)`` as in :meth:`Corrector.fit`.
    dev : torch.device
    checkpoints : SweepCheckpoints or None
    """
    schedule = Schedule(corrector, lams, base, data, dev, checkpoints,
                        histories={i: entry["history"] for i, entry in done.items()})
    todo = [i for i in range(len(lams)) if i not in done]
    if corrector.schedule == "full":
        schedule.step(todo, corrector.epochs, True)
        return
    if corrector.executor is None:
        schedule.parked = ParkedRuns(base, corrector.memory_format(dev), dev)
    try:
        schedule.halving(todo)
    finally:
        if schedule.parked is not None:
            schedule.parked.close()


@dataclass
class Schedule:
    """The state of one sweep's schedule: the runs in training and the finished λs' histories.

    Parameters
    ----------
    corrector : Corrector
    lams : list of float
    base : nn.Module
        The classifier before fine-tuning, on the CPU.
    data : tuple
        ``(X, y, X_f, y_f, eval_sets)``.
    dev : torch.device
    checkpoints : SweepCheckpoints or None
    runs : dict of int -> Run
        The runs started and not yet finished, by λ index.
    histories : dict of int -> list of dict
        Every finished λ's epoch records.
    parked : ParkedRuns or None
        Where paused runs wait (successive halving in this process only).
    """

    corrector: object
    lams: list
    base: torch.nn.Module
    data: tuple
    dev: torch.device
    checkpoints: SweepCheckpoints | None = None
    runs: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    parked: ParkedRuns | None = None

    def finalize(self, i: int, out: tuple) -> None:
        """λ ``i`` is finished with ``out`` = (state, record, history) from :func:`finish`."""
        state, result, history = out
        self.histories[i] = history
        if self.checkpoints is not None:
            self.checkpoints.add(i, self.lams[i], state, result, history)
        self.corrector.finish_lam(i, state, result)

    def finish(self, i: int) -> None:
        """Evaluate run ``i``'s selected epoch on every set and finalize it."""
        run = self.runs.pop(i)
        if self.parked is not None:
            run = self.parked.restore(run)
        run.model = run.model.to(self.dev)
        self.finalize(i, finish(self.corrector, run, *self.data, self.dev))

    def start(self, i: int) -> Run:
        """A new run of λ ``i`` (on the CPU when an executor trains it)."""
        c = self.corrector
        return new_run(c, i, self.lams[i], self.base, len(self.data[2]),
                       self.dev if c.executor is None else torch.device("cpu"))

    def history(self, i: int) -> list:
        """λ ``i``'s epoch records so far."""
        return self.runs[i].history if i in self.runs else self.histories[i]

    def step(self, indices: list, n_epochs: int, finish_after: bool, rung: tuple = ()) -> None:
        """Train the runs of ``indices`` ``n_epochs`` more epochs (started when new);
        finish them after when ``finish_after``. ``rung`` = (candidates, epoch) of a
        halving rung lets runs that are already beaten finish early.
        """
        if self.corrector.executor is not None:
            self._step_on_executor(indices, n_epochs, finish_after)
            return
        for i in indices:
            run = self.runs.get(i)
            self.runs[i] = self.parked.restore(run) if run is not None else self.start(i)
            advance(self.corrector, self.runs[i], n_epochs, *self.data, self.dev)
            if finish_after:
                self.finish(i)
            elif rung:
                self.parked.park(self.runs[i])    # only the run in training stays in memory
                self.drop_beaten(*rung)

    def drop_beaten(self, candidates: list, epoch: int) -> None:
        """Finish now every run of this rung that ⌈n/ETA⌉ scored runs already beat:
        :func:`prune` cannot keep it, and only the runs still in the race stay in memory.
        """
        scored = [i for i in candidates if i in self.histories or i in self.runs
                  and self.runs[i].epoch >= epoch]
        key = {i: (best_score(self.history(i), epoch), -self.lams[i]) for i in scored}
        order = sorted(scored, key=key.get, reverse=True)
        for i in order[math.ceil(len(candidates) / ETA):]:
            if i in self.runs:
                self.finish(i)

    def _step_on_executor(self, indices: list, n_epochs: int, finish_after: bool) -> None:
        c = self.corrector
        n_batches = math.ceil(len(self.data[0]) / c.batch_size)
        futures = submit_runs(c, {i: self.runs.get(i) or self.start(i) for i in indices},
                              n_epochs, finish_after, self.data)
        try:
            for i in indices:
                if c.stopping:
                    raise Cancelled
                run, new, out = futures[i].result()
                if c.stopping:
                    raise Cancelled
                if run.epoch == len(new):
                    c.notify("on_lam_begin", lam=self.lams[i])
                for rec in new:
                    c.history_.append(rec)
                    c.notify("on_epoch_end", record=rec)
                c.steps_done_ += len(new) * n_batches
                self.runs[i] = run
                if finish_after:
                    self.runs.pop(i)
                    self.finalize(i, out)
        finally:
            for future in futures.values():
                future.cancel()

    def halving(self, todo: list) -> None:
        """Successive halving over every λ; those in ``todo`` start at the first rung."""
        candidates, epochs = list(range(len(self.lams))), self.corrector.epochs
        for epoch in range(1, epochs + 1):
            last = epoch == epochs
            self.step([i for i in candidates if i in self.runs or i in todo and epoch == 1], 1,
                      last, (candidates, epoch))
            if last:
                return
            scores = {i: best_score(self.history(i), epoch) for i in candidates}
            keep = prune(candidates, scores, self.lams)
            for i in candidates:
                if i not in keep and i in self.runs:
                    self.finish(i)
            candidates = keep


#: Corrector parameters that stay in this process (not sent with a task).
_LOCAL_ONLY = ("callbacks", "checkpoint_dir", "executor", "progress")


def submit_runs(corrector, runs: dict, n_epochs: int, finish_after: bool, data: tuple) -> dict:
    """Submit one task per run to ``corrector.executor``.

    Parameters
    ----------
    corrector : Corrector
    runs : dict of int -> run
        Runs of :func:`~defuse_widgets.stages.correction.sweep.new_run`, keyed by λ index.
    n_epochs : int
        Epochs each task trains.
    finish_after : bool
        Also evaluate each run's selected epoch on every eval set.
    data : tuple
        ``(X, y, X_f, y_f, eval_sets)``.

    Returns
    -------
    dict of int -> Future
        Each resolves to :func:`~defuse_widgets.stages.correction.sweep.run_task`'s result.
    """
    check_executor(corrector.executor)
    params = {k: v for k, v in corrector.get_params().items() if k not in _LOCAL_ONLY}
    return {i: corrector.executor.submit(run_task, type(corrector), params,
                                         (corrector.before_, corrector.before_correct_), run,
                                         n_epochs, finish_after, *data)
            for i, run in runs.items()}
