"""The :class:`Corrector`: fine-tune on L(D) + λ·L(D_f) for every λ of a sweep (paper §3.3)."""
from __future__ import annotations

import math
import threading

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

import defuse_widgets.stages.correction.lambda_rule as rule
from defuse_widgets._validation import (
    check_choice,
    check_eval_sets,
    check_executor,
    check_images,
    check_int,
    check_labels,
    check_module,
    check_number,
    check_seed,
    describe,
    resolve_device,
)
from defuse_widgets.callbacks import Callback, History
from defuse_widgets.models.inference import accuracy, check_images_fit, correct, n_outputs
from defuse_widgets.models.loading import copy_model
from defuse_widgets.models.precision import PRECISIONS, resolve_precision
from defuse_widgets.stages.correction.lambda_rule import PAIRED_SETS, SELECTIONS
from defuse_widgets.stages.correction.sweep import (
    SCHEDULES,
    Cancelled,
    open_checkpoints,
    planned_lam_epochs,
    run_schedule,
)
from defuse_widgets.storage.sweep_checkpoints import SweepCheckpoints

#: The paper's λ sweep (appendix B).
PAPER_LAMS = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1,
              1.0, 2.0, 5.0, 10.0, 20.0, 100.0, 1000.0)


class Corrector(BaseEstimator):
    """Fine-tune a classifier on the training data plus the failure data D_f.

    For each λ in ``lams`` a fresh copy of the classifier is fine-tuned for
    ``epochs`` epochs with Adam on ``get_loss`` = L(D) + λ·L(D_f). Each epoch
    ends with an evaluation on every set in ``eval_sets``; per λ the epoch with
    the best selection score is kept, and overall the λ with the best score.

    Parameters
    ----------
    lams : sequence of float, default=PAPER_LAMS
        λ values, each ≥ 0.
    epochs : int, default=3
        Epochs per λ (paper: 3 for MNIST, 5 for SVHN/GTSRB).
    lr : float, default=1e-3
    batch_size : int, default=256
        Batch size over D; every step also takes a batch of the same size
        from D_f, cycling through it.
    selection : {"interval", "balanced", "validation", "training"}, default="interval"
        Model-selection rule (per λ over its epochs, then over λ; see
        :mod:`~defuse_widgets.stages.correction.lambda_rule`). ``"interval"``: the best
        ``"region_validation"`` accuracy among models whose validation
        accuracy is not significantly below the model before fine-tuning
        (paired interval at ``confidence``), so λ fixes the regions while
        keeping generalisation, without looking at any test set.
        ``"validation"``: validation accuracy (the paper's SVHN/GTSRB rule).
        ``"training"``: accuracy on D ∪ D_f (the paper's MNIST rule).
        ``"balanced"``: as ``"interval"`` with a fixed allowed drop
        ``tolerance`` (the earlier default, kept for old sessions).
    tolerance : float, default=0.005
        Validation-accuracy drop allowed by ``selection="balanced"``.
    confidence : float, default=0.95
        Level of the paired intervals on the change of validation and
        region-validation accuracy (used by ``"interval"`` and by the
        verdict ``corrected_`` under every rule).
    device : str or torch.device, optional
        CUDA when available if not given.
    seed : int, default=0
    callbacks : sequence of Callback, optional
    checkpoint_dir : str or Path, optional
        When given, each finished λ's selected weights are saved there as
        ``<name>_lam_<i>.pt`` (a state_dict) and recorded, with its result and
        history, in ``<name>_sweep.json`` (see
        :mod:`~defuse_widgets.storage.sweep_checkpoints`).
    resume : bool, default=True
        With ``checkpoint_dir``: reuse the λs a killed or stopped sweep already
        finished, when its settings, classifier and data are the same (each
        λ is seeded with ``seed + i`` alone, so the results equal an
        uninterrupted run). A sweep of other settings or data found there is
        moved to ``archive/<time>/`` and the sweep starts over; False archives
        any earlier sweep of this name.
    name : str, default="defuse"
        Shown in progress output; e.g. ``"baseline"``.
    executor : concurrent.futures.Executor, optional
        Run the λs as tasks of this executor (for example Dask's
        ``Client.get_executor()``, or a ``ProcessPoolExecutor``), each on a
        copy of the classifier and data; per-λ results equal an in-process
        sweep. Callbacks see each λ's epochs when it returns, so per-batch
        callbacks do not run and :meth:`stop` acts between λs. Use processes
        (Dask workers, ``ProcessPoolExecutor``): threads share torch's global
        random stream (dropout), so they do not reproduce in-process results.
    progress : bool, default=False
        Show a tqdm bar over λ, advancing as each λ finishes.
    schedule : {"full", "halving"}, default="full"
        ``"full"`` trains every λ for every epoch (the paper's sweep);
        ``"halving"`` is successive halving: after each epoch but the last
        only the best third of the λs, ranked by the selection rule's score,
        trains on (see :mod:`~defuse_widgets.stages.correction.sweep`).
    precision : {"fp32", "bf16", "auto"}, default="fp32"
        bf16 autocast of the training and evaluation passes; ``"auto"`` is
        bf16 where the hardware runs it natively. Weights stay fp32, and an
        evaluation makes every close call (logit margin under
        :data:`~defuse_widgets.models.precision.GUARD`) again in fp32, so the
        reported accuracies are those of the fp32 model a user keeps.
    channels_last : bool, optional
        Train in the channels-last memory format. Default: when ``precision``
        resolves to bf16, where it is about 10 % faster on the CPU (fp32
        trains as before).
    eval_batch_size : int, optional
        Images per evaluation pass; default 256 on the CPU (measured 1.5x
        faster than 1,024 on 2 cores: batches stay in cache), 4,096 on CUDA.

    Attributes
    ----------
    history_ : History
        One record per epoch: lam, epoch, loss, the accuracies on the sets the
        selection rule needs, and the score.
    results_ : list of dict
        The selected epoch's record for each finished λ, with accuracies on
        every eval set (those are computed once per λ, for that epoch), and
        for ``validation`` and ``region_validation`` their change from the
        model before with its interval (``<set>_change``, ``_change_low``,
        ``_change_high``, ``_lost``, ``_gained``; see
        :func:`~defuse_widgets.stages.correction.lambda_rule.change_fields`).
    best_ : dict
        The record of the selected λ.
    corrected_ : bool or None
        Whether the selected λ fixes the regions (region-validation gain
        significant) without a significant validation loss; None without a
        region-validation set. ``verdict_`` says it in a sentence.
    verdict_ : str
    before_correct_ : dict of str -> ndarray of shape (n,), bool
        Per image of ``validation`` and ``region_validation``: whether the
        model before fine-tuning got it right (the paired intervals' base).
    best_model_ : nn.Module
        The classifier with the selected λ's weights.
    cancelled_ : bool
        True when :meth:`stop` ended the sweep early.
    resumed_ : list of int
        Indices of the λs taken from ``checkpoint_dir`` instead of trained.
    lam_index_ : list of int
        The index in ``lams`` of each entry of ``results_`` (all λs under
        ``schedule="full"``; the same under halving, some with fewer epochs).
    steps_done_, steps_total_ : int
        Optimisation steps done and planned (for progress bars).
    precision_ : str
        ``"bf16"`` or ``"fp32"``, as ``precision`` resolved on the device.
    fingerprint_ : str or None
        SHA-256 of settings, classifier and data (with ``checkpoint_dir``).
    """

    def __init__(self, *, lams=PAPER_LAMS, epochs: int = 3, lr: float = 1e-3,
                 batch_size: int = 256, selection: str = "interval",
                 tolerance: float = 0.005, confidence: float = 0.95, device=None,
                 seed: int = 0, callbacks=(),
                 checkpoint_dir=None, name: str = "defuse",
                 progress: bool = False, resume: bool = True, executor=None,
                 schedule: str = "full", precision: str = "fp32",
                 channels_last: bool | None = None, eval_batch_size: int | None = None):
        self.lams = lams
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.selection = selection
        self.tolerance = tolerance
        self.confidence = confidence
        self.device = device
        self.seed = seed
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.name = name
        self.progress = progress
        self.resume = resume
        self.executor = executor
        self.schedule = schedule
        self.precision = precision
        self.channels_last = channels_last
        self.eval_batch_size = eval_batch_size
        self._stop = threading.Event()

    # -- public API ---------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`fit` to stop after the current batch (thread-safe).

        A stop that arrives before ``fit`` starts cancels that ``fit`` too; the
        request is cleared when ``fit`` returns.
        """
        self._stop.set()

    def get_loss(self, logits: torch.Tensor, y: torch.Tensor, logits_f: torch.Tensor,
                 y_f: torch.Tensor, lam: float) -> torch.Tensor:
        """Return L(D) + λ·L(D_f) for one step; override to change the objective.

        Parameters
        ----------
        logits : Tensor of shape (b, n_classes)
        y : Tensor of shape (b,)
        logits_f : Tensor of shape (b_f, n_classes)
        y_f : Tensor of shape (b_f,)
        lam : float
        """
        return F.cross_entropy(logits, y) + lam * F.cross_entropy(logits_f, y_f)

    def sweep_params(self) -> dict:
        """The settings that determine the sweep's results (stored with its checkpoints)."""
        loss = type(self).get_loss
        return dict(lams=[float(v) for v in self.lams], epochs=self.epochs, lr=self.lr,
                    batch_size=self.batch_size, selection=self.selection,
                    tolerance=self.tolerance, confidence=self.confidence, seed=self.seed,
                    name=self.name,
                    loss=f"{loss.__module__}.{loss.__qualname__}", schedule=self.schedule,
                    precision=resolve_precision(self.precision, resolve_device(self.device)),
                    channels_last=self.memory_format(resolve_device(self.device))
                    == torch.channels_last)

    def fit(self, classifier: nn.Module, X, y, X_f, y_f, *, eval_sets=None) -> "Corrector":
        """Run the λ sweep.

        Parameters
        ----------
        classifier : nn.Module
            Not modified; each λ fine-tunes a copy.
        X : Tensor of shape (n, C, H, W)
            Training data D: float32, or uint8 pixels (made float in [0, 1]
            batch by batch, never as a whole).
        y : Tensor of shape (n,)
        X_f : Tensor of shape (n_f, C, H, W)
            Failure data D_f (region samples with their annotator labels).
        y_f : Tensor of shape (n_f,)
        eval_sets : dict of str -> (X, y), optional
            Sets evaluated after every epoch, e.g. ``validation``, ``test``,
            ``region_validation``, ``region_test``.

        Returns
        -------
        self
        """
        check_module("classifier", classifier)
        lams = self._check_params()
        X = check_images("X", X)
        dev = resolve_device(self.device)
        check_images_fit(X, classifier=classifier)
        k = n_outputs(classifier, X, device=dev)
        y = check_labels("y", y, n_samples=len(X), n_classes=k)
        X_f = check_images("X_f", X_f, shape=X.shape[1:])
        y_f = check_labels("y_f", y_f, n_samples=len(X_f), n_classes=k)
        eval_sets = check_eval_sets(eval_sets or {}, X.shape[1:], k, self.selection)
        self.history_, self.results_, self.lam_index_ = History(), [], []
        self.best_, self.best_model_, self.cancelled_ = None, None, False
        self.corrected_, self.verdict_ = None, ""
        self._best_state, self._best_key, self.resumed_, self.fingerprint_ = None, None, [], None
        self.precision_ = resolve_precision(self.precision, dev)
        base = copy_model(classifier).cpu()
        checkpoints = open_checkpoints(self, base, X, y, X_f, y_f, eval_sets)
        self.before_ = self.evaluate(base.to(dev), X, y, X_f, y_f, eval_sets, dev,
                                      {*eval_sets, *self.selection_sets()}, base=True)
        base = base.cpu()
        self._n_batches = math.ceil(len(X) / self.batch_size)
        self.steps_done_ = 0
        self.steps_total_ = (planned_lam_epochs(len(lams), self.epochs, self.schedule)
                             * self._n_batches)
        self.notify("on_train_begin")
        done = checkpoints.finished if checkpoints is not None else {}
        self._bar = tqdm(total=len(lams), desc=self.name, disable=not self.progress)
        try:
            for i in sorted(done):
                self._replay(i, lams[i], checkpoints)
            run_schedule(self, lams, done, base, (X, y, X_f, y_f, eval_sets), dev, checkpoints)
        except Cancelled:
            self.cancelled_ = True
        finally:
            self._bar.close()
            self._stop.clear()
        order = sorted(range(len(self.results_)), key=lambda j: self.lam_index_[j])
        self.results_ = [self.results_[j] for j in order]
        self.lam_index_ = [self.lam_index_[j] for j in order]
        if self.results_:
            i_best = max(range(len(self.results_)),
                         key=lambda i: (*self.rank(self.results_[i]), -self.results_[i]["lam"]))
            self.best_ = self.results_[i_best]
            self.best_model_ = copy_model(base)
            self.best_model_.load_state_dict(self._best_state)   # the same λ: same key
            self.best_model_.eval()
        self._best_state = None
        v = rule.verdict(self.best_, self.confidence, tolerance=self.tolerance
                         if self.selection == "balanced" else None)
        self.corrected_, self.verdict_ = v["corrected"], v["message"]
        self.notify("on_train_end")
        return self

    # -- internals ----------------------------------------------------------------
    def _check_params(self) -> list:
        lams = self._check_lams()
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_number("lr", self.lr, low=0, low_inclusive=False)
        check_choice("selection", self.selection, SELECTIONS)
        check_number("tolerance", self.tolerance, low=0, high=1)
        check_number("confidence", self.confidence, low=0, high=1, low_inclusive=False,
                     high_inclusive=False)
        check_seed("seed", self.seed)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.executor is not None:
            check_executor(self.executor)
        check_choice("precision", self.precision, PRECISIONS)
        if self.eval_batch_size is not None:
            check_int("eval_batch_size", self.eval_batch_size, low=1)
        if self.channels_last is not None and not isinstance(self.channels_last,
                                                             (bool, np.bool_)):
            raise TypeError(f"channels_last must be True, False or None; got "
                            f"{self.channels_last!r}.")
        if not isinstance(self.callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list or tuple of Callback instances; "
                            f"got {self.callbacks!r}.")
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must hold Callback instances; got {cb!r}.")
        return lams

    def _check_lams(self) -> list:
        """``lams`` as a list of floats: a non-empty sequence of finite numbers >= 0."""
        if isinstance(self.lams, (str, bytes, dict)) or not hasattr(self.lams, "__iter__"):
            raise TypeError("lams must be a non-empty sequence of finite numbers >= 0 (the "
                            f"λ values, e.g. [0.1, 1.0, 10.0]); got {describe(self.lams)}.")
        lams = [check_number("lams[%d]" % i, v, low=0) for i, v in enumerate(self.lams)]
        if not lams:
            raise ValueError("lams must hold at least one λ value; got an empty sequence.")
        return lams

    def memory_format(self, dev: torch.device) -> torch.memory_format:
        """The memory format runs train in on ``dev`` (see ``channels_last``)."""
        cl = self.channels_last
        if cl is None:
            cl = resolve_precision(self.precision, dev) == "bf16"
        return torch.channels_last if cl else torch.contiguous_format

    def _replay(self, i: int, lam: float, checkpoints: SweepCheckpoints) -> None:
        """Take a finished λ from its checkpoint; callbacks see it as if it had just run."""
        entry = checkpoints.finished[i]
        state = checkpoints.load(i)
        self.notify("on_lam_begin", lam=lam, resumed=True)
        for rec in entry["history"]:
            self.history_.append(rec)
            self.notify("on_epoch_end", record=rec, resumed=True)
        self.steps_done_ += len(entry["history"]) * self._n_batches
        self.resumed_.append(i)
        self.finish_lam(i, state, entry["result"], resumed=True)

    # -- what the sweep (correction.sweep) reports to and asks of its corrector -----------
    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was asked and the running :meth:`fit` has not yet returned."""
        return self._stop.is_set()

    def finish_lam(self, i: int, state: dict, result: dict, **kw) -> None:
        """Take λ number ``i``'s result; keep its weights ``state`` while it is the best."""
        key = (*self.rank(result), -result["lam"])   # hold only the best λ's weights
        if self._best_key is None or key > self._best_key:
            self._best_state, self._best_key = state, key
        self.results_.append(result)
        self.lam_index_.append(i)
        self._bar.update()
        self.notify("on_lam_end", result=result, **kw)

    def notify(self, hook: str, **kw) -> None:
        """Call ``hook`` (``"on_lam_begin"``, ``"on_epoch_end"``…) of every callback."""
        for cb in self.callbacks:
            getattr(cb, hook)(self, **kw)

    def rank(self, rec: dict) -> tuple:
        """Sort key of a record under the selection rule (larger is better)."""
        return rule.rank(self.selection, rec, self.before_, self.tolerance)

    def selection_sets(self) -> tuple:
        """The eval sets the selection rule scores every epoch on."""
        return rule.selection_sets(self.selection)

    def evaluate(self, model, X, y, X_f, y_f, eval_sets, dev, names=None, *,
                  base: bool = False) -> dict:
        """Accuracies on the sets in ``names`` (all sets when None) plus the score.

        ``base``: ``model`` is the classifier before fine-tuning; its per-image
        correctness on the paired sets becomes ``before_correct_``. Otherwise
        each paired set also gets its change from it (``<set>_change`` ...).
        """
        names = set(eval_sets) | {"finetune", "training"} if names is None else set(names)
        # the numbers describe the fp32 model a user keeps: bf16 evaluation makes
        # its close calls again in fp32 (models.precision.guarded_argmax)
        kw = dict(device=dev, batch_size=self.eval_batch_size
                  or (256 if dev.type == "cpu" else 4096), precision=self.precision)
        rec = {}
        if names & {"finetune", "training"}:
            rec["finetune"] = accuracy(model, X_f, y_f, **kw)
        if "training" in names:  # a full pass over D
            n, n_f = len(y), len(y_f)
            rec["training"] = (accuracy(model, X, y, **kw) * n + rec["finetune"] * n_f) / (n + n_f)
        if base:
            self.before_correct_ = {}
        for k, (Xe, ye) in eval_sets.items():
            if k not in names:
                continue
            r = correct(model, Xe, ye, **kw)   # per image: the paired sets need it
            rec[k] = float(r.mean()) if len(r) else float("nan")
            if k in PAIRED_SETS and base:
                self.before_correct_[k] = r
            elif k in PAIRED_SETS:
                rec.update(rule.change_fields(k, rule.paired_change(
                    self.before_correct_[k], r, self.confidence)))
        if all(k in rec for k in self.selection_sets()):
            rec["score"] = rule.score(self.selection, rec)
        return rec
