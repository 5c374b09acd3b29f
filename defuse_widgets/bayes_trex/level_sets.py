"""Bayes-TrEx level-set sampling in the VAE latent space (Booth et al., AAAI 2021).

Bayes-TrEx samples inputs whose prediction confidence hits a target ``p`` from
the relaxed posterior (paper eqs. 8-10)

    p(z | u = u*) ∝ N(z; 0, I) · N(u*; g(f(dec(z))), σ²),

where ``f`` is the classifier's softmax, ``dec`` the generator and ``g`` maps
the prediction to the auxiliary variables ``u`` of the target kind:

* high confidence for class i (eq. 5): ``u = f_i``, ``u* = 1``;
* ambiguous between i and j (eqs. 6-7): ``u1 = |f_i - f_j|``, ``u1* = 0`` and
  ``u2 = min(f_i, f_j) - max_{k≠i,j} f_k``, ``u2* = 0.5``;
* graded confidence: ``u = f_i``, ``u* = c``;
* general: ``u = f`` (all classes), ``u* = p``.

Unlike Defuse's identification, which perturbs the codes of training images,
the search is global: chains start from the prior. One :class:`LevelSetSampler`
samples many targets at once, each chain with its own target, so the whole
ambiguity matrix is one batched MCMC run (see :mod:`defuse_widgets.bayes_trex.samplers`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from defuse_widgets._validation import (
    check_choice,
    check_codes,
    check_int,
    check_module,
    check_number,
    check_seed,
    describe,
    resolve_device,
)
from defuse_widgets.bayes_trex.samplers import HMC, MALA, RandomWalkMetropolis
from defuse_widgets.bayes_trex.targets import KINDS, Target, level_set_log_likelihood, pack_targets
from defuse_widgets.callbacks import ProgressCallback, Stopped
from defuse_widgets.models.inference import decode
from defuse_widgets.models.probes import check_decoder_fit, check_logits, latent_size
from defuse_widgets.stages.identification import AdversarialExamples

__all__ = ["Target", "LevelSetSampler", "KINDS"]

_SAMPLERS = {"mala": MALA, "hmc": HMC, "rwm": RandomWalkMetropolis}


class LevelSetSampler(BaseEstimator):
    """Sample latent codes whose decodes the classifier predicts at target confidences.

    Parameters
    ----------
    targets : sequence of Target
        What to sample; every target gets ``n_chains`` chains of its own.
    n_chains : int, default=10
        Chains per target (Bayes-TrEx's "trials").
    sigma : float, default=0.05
        Level-set relaxation σ (the paper's value for every experiment).
    method : {"mala", "hmc", "rwm"}, default="mala"
        Gradient kernel (MALA or HMC) or gradient-free random-walk Metropolis.
    n_warmup, n_samples : int, default=200, 100
        Warm-up iterations per chain (step size adapted, draws discarded) and
        draws kept per chain.
    thin : int, default=1
    step_size : float, optional
        Initial step size (adapted); 0.05 for the gradient kernels, 0.1 for RWM.
    n_leapfrog : int, default=3
        Leapfrog steps per HMC proposal (``method="hmc"`` only).
    n_init : int, default=4096
        Pool of prior draws the chains start from: each target's chains start
        at distinct pool points drawn ∝ the level-set likelihood (importance
        resampling, Gumbel top-k). From plain prior draws (``n_init=0``) chains
        sit where the softmax saturates and rarely reach ambiguous level sets.
    sigma_start : float, optional
        Anneal σ during warm-up: it falls geometrically from ``sigma_start``
        to ``sigma`` over the first half of the warm-up, then stays at
        ``sigma`` (kept draws always use ``sigma``). A wide start lets chains
        cross low-likelihood regions before the level set tightens.
    n_optimize : int, default=0
        Adam steps that climb the level-set posterior from the starting codes
        before the chains start (0: none). MALA's adapted steps are small,
        so chains barely leave where they start; climbing first lets chains
        of ambiguous targets start on the level set instead of beside it.
    optimize_candidates : int, default=1
        With ``n_optimize``, climb this many starting codes per chain and
        start each target's chains at its ``n_chains`` best (highest
        posterior density).
    optimize_lr : float, default=0.05
        Adam learning rate of the climb.
    init_codes : array-like of shape (n_codes, n_latent), optional
        Extra candidate starting codes added to the prior pool, e.g. encodings
        of test images or interpolations between two classes' encodings
        (:func:`~defuse_widgets.bayes_trex.evaluation.pair_interpolation_codes`).
    n_latent : int, optional
        Read from ``decoder.n_latent`` (else the decoder's first ``Linear``
        layer) when not given; a decoder that takes another size is refused.
    device : str or torch.device, optional
        CUDA when available by default.
    seed : int, default=0

    Attributes
    ----------
    targets_ : list of Target
    target_index_ : ndarray of shape (n_chains_total,)
        Index into ``targets_`` of each chain.
    init_codes_ : ndarray of shape (n_chains_total, n_latent), float32
        Where the chains started (after the climb, if any); pass it as
        ``init_codes`` with ``n_init=0`` to start another kernel at the same codes.
    codes_ : ndarray of shape (n_samples, n_chains_total, n_latent), float32
    probs_ : ndarray of shape (n_samples, n_chains_total, n_classes), float32
        Classifier softmax of each draw's decode.
    sampler_ : HMC, MALA or RandomWalkMetropolis
        The fitted kernel, with ``accept_rate_``, ``ess_``, ``ess_per_s_``.
    accept_rate_ : float
    ess_per_s_ : float
    n_classes_ : int
    classifier_, decoder_ : nn.Module
        What was sampled against, for decoding draws later.

    Examples
    --------
    >>> ls = LevelSetSampler(targets=[Target.ambiguous(1, 7)]).fit(clf, vae)  # doctest: +SKIP
    >>> ls.confidence_table()[0]["mean"]  # doctest: +SKIP
    """

    def __init__(self, *, targets: Sequence[Target], n_chains: int = 10, sigma: float = 0.05,
                 method: str = "mala", n_warmup: int = 200, n_samples: int = 100,
                 thin: int = 1, step_size: float | None = None, n_leapfrog: int = 3,
                 n_init: int = 4096, sigma_start: float | None = None, n_optimize: int = 0,
                 optimize_candidates: int = 1, optimize_lr: float = 0.05, init_codes=None,
                 n_latent: int | None = None, device=None, seed: int = 0):
        self.targets = targets
        self.n_chains = n_chains
        self.sigma = sigma
        self.method = method
        self.n_warmup = n_warmup
        self.n_samples = n_samples
        self.thin = thin
        self.step_size = step_size
        self.n_leapfrog = n_leapfrog
        self.n_init = n_init
        self.sigma_start = sigma_start
        self.n_optimize = n_optimize
        self.optimize_candidates = optimize_candidates
        self.optimize_lr = optimize_lr
        self.init_codes = init_codes
        self.n_latent = n_latent
        self.device = device
        self.seed = seed

    def _kernel(self, dev):
        method = check_choice("method", self.method, list(_SAMPLERS))
        step = self.step_size if self.step_size is not None else (0.1 if method == "rwm" else 0.05)
        kw = dict(step_size=step, n_warmup=self.n_warmup, n_samples=self.n_samples,
                  thin=self.thin, device=dev, seed=self.seed)
        if method == "hmc":
            kw["n_leapfrog"] = self.n_leapfrog
        return _SAMPLERS[method](**kw)

    def fit(self, classifier: nn.Module, decoder: nn.Module, *,
            callback: ProgressCallback | None = None) -> "LevelSetSampler":
        """Run the chains of every target in one batch.

        Parameters
        ----------
        classifier : nn.Module
            Maps images (n, C, H, W) to logits (n, n_classes).
        decoder : BetaVAE or nn.Module
            Its ``decode(z)`` (or ``forward(z)`` when it has no ``decode``) maps
            codes (n, n_latent) to images (n, C, H, W). Both are put in eval
            mode and moved to ``device`` in place.
        callback : ProgressCallback, optional
            The package's progress/stop protocol, ``callback("level sets",
            iteration, n_iterations)`` after every MCMC iteration; True stops
            (raises :class:`~defuse_widgets.callbacks.Stopped`, nothing is fitted).
            :class:`~defuse_widgets.callbacks.ProgressLine` prints it.

        Returns
        -------
        self
        """
        check_module("classifier", classifier)
        check_module("decoder", decoder)
        targets = list(self.targets) if isinstance(self.targets, (list, tuple)) else None
        if not targets or not all(isinstance(t, Target) for t in targets):
            raise TypeError("targets must be a non-empty list of Target (e.g. "
                            f"[Target.high_confidence(4)]); got {describe(self.targets)}.")
        n_chains = check_int("n_chains", self.n_chains, low=1)
        sigma = check_number("sigma", self.sigma, low=0, low_inclusive=False)
        sigma_start = (sigma if self.sigma_start is None else
                       check_number("sigma_start", self.sigma_start, low=sigma))
        check_seed("seed", self.seed)
        n_latent = self._latent_size(decoder)
        dev = resolve_device(self.device)
        kernel = self._kernel(dev)
        decode_fn = decoder.decode if hasattr(decoder, "decode") else decoder
        classifier.eval().to(dev)
        decoder.eval().to(dev)
        with torch.no_grad():
            logits = check_logits(classifier(decode_fn(torch.zeros(1, n_latent, device=dev))))
            n_classes = int(logits.shape[1])
        target_index = np.repeat(np.arange(len(targets)), n_chains)
        packed = pack_targets(targets, target_index, n_classes, dev)

        n_anneal = check_int("n_warmup", self.n_warmup, low=0) // 2 if sigma_start > sigma else 0
        current = {"sigma": sigma_start if n_anneal else sigma}

        def log_prob(z):
            probs = torch.softmax(classifier(decode_fn(z)).float(), dim=1)
            prior = -0.5 * (z ** 2).sum(1)
            return prior + level_set_log_likelihood(probs, packed, current["sigma"]), probs

        def schedule(it):          # geometric σ annealing over the first half of warm-up
            if it == 0 or it > n_anneal:
                return False
            current["sigma"] = sigma_start * (sigma / sigma_start) ** (it / n_anneal)
            return True

        n_opt = check_int("n_optimize", self.n_optimize, low=0)
        n_cand = check_int("optimize_candidates", self.optimize_candidates, low=1) if n_opt else 1
        init = self._initial_codes(targets, n_chains * n_cand, n_latent, n_classes, sigma,
                                   classifier, decode_fn, dev)
        if n_opt:
            init = self._climb(init, targets, n_chains, n_cand, n_classes, sigma, classifier,
                               decode_fn, dev, callback)
        kernel.run(log_prob, init, callback=callback, schedule=schedule if n_anneal else None,
                   stage="level sets")
        self.targets_ = targets
        self.target_index_ = target_index
        self.init_codes_ = init.cpu().numpy().astype(np.float32)
        self.codes_ = kernel.samples_.numpy().astype(np.float32)
        self.probs_ = kernel.aux_.numpy().astype(np.float32)
        self.sampler_ = kernel
        self.accept_rate_ = float(kernel.accept_rate_.mean())
        self.ess_per_s_ = float(kernel.ess_per_s_)
        self.n_classes_ = n_classes
        self.classifier_, self.decoder_ = classifier, decoder
        return self

    def _latent_size(self, decoder: nn.Module) -> int:
        """``n_latent``, else the decoder's; checked to be what the decoder takes."""
        if self.n_latent is None:
            n_latent, source = latent_size(decoder), "the decoder's n_latent"
            if n_latent is None:
                raise ValueError("n_latent must be given: the decoder has no n_latent "
                                 "attribute and its first layer does not tell; got None.")
        else:
            n_latent = check_int("n_latent", self.n_latent, low=1)
            source = f"n_latent={n_latent}"
        check_decoder_fit("decoder", decoder, n_latent, source=source)
        return n_latent

    def _climb(self, z, targets, n_chains, n_cand, n_classes, sigma, classifier, decode_fn,
               dev, callback) -> torch.Tensor:
        """Adam ascent of the posterior from every candidate; each target keeps its best chains."""
        lr = check_number("optimize_lr", self.optimize_lr, low=0, low_inclusive=False)
        n_opt = int(self.n_optimize)
        packed = pack_targets(targets, np.repeat(np.arange(len(targets)), n_chains * n_cand),
                              n_classes, dev)
        z = z.to(dev).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)

        def log_post(z):
            probs = torch.softmax(classifier(decode_fn(z)).float(), dim=1)
            return -0.5 * (z ** 2).sum(1) + level_set_log_likelihood(probs, packed, sigma)
        for step in range(n_opt):
            with torch.enable_grad():
                grad, = torch.autograd.grad(-log_post(z).sum(), z)
            z.grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
            opt.step()
            if callback is not None and callback("level sets: climb", step + 1, n_opt):
                raise Stopped(f"level sets: climb stopped at step {step + 1} of {n_opt}")
        with torch.no_grad():
            lp = log_post(z).view(len(targets), n_chains * n_cand)
            lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -float("inf")))
            best = lp.topk(n_chains, dim=1).indices + (torch.arange(len(targets), device=dev)
                                                       * n_chains * n_cand)[:, None]
        return z.detach()[best.reshape(-1)].cpu()

    @torch.no_grad()
    def _initial_codes(self, targets, n_chains, n_latent, n_classes, sigma, classifier,
                       decode_fn, dev) -> torch.Tensor:
        """Starting codes (n_targets * n_chains, n_latent): SIR from a pool of prior draws."""
        n_init = check_int("n_init", self.n_init, low=0)
        gen = torch.Generator().manual_seed(int(self.seed))
        if n_init == 0 and self.init_codes is None:
            return torch.randn(len(targets) * n_chains, n_latent, generator=gen)
        pool = torch.randn(n_init, n_latent, generator=gen)
        if self.init_codes is not None:
            extra = check_codes("init_codes", self.init_codes, n_latent=n_latent)
            pool = torch.cat([pool, torch.from_numpy(extra).float()])
        n_init = len(pool)
        if n_init < n_chains:
            raise ValueError(f"n_init plus the rows of init_codes must be 0 or >= n_chains "
                             f"({n_chains}); got {n_init}.")
        probs = torch.cat([torch.softmax(classifier(decode_fn(pool[s:s + 1024].to(dev))).float(), 1)
                           for s in range(0, n_init, 1024)])
        zeros = np.zeros(n_init, np.int64)
        starts = []
        for t in targets:
            ll = level_set_log_likelihood(probs, pack_targets([t], zeros, n_classes, dev),
                                          sigma).cpu()
            gumbel = -torch.log(-torch.log(torch.rand(n_init, generator=gen).clamp_min(1e-12)))
            starts.append(pool[(ll + gumbel).topk(n_chains).indices])
        return torch.cat(starts)

    # -- reading the samples -------------------------------------------------------------
    def _target_number(self, target) -> int:
        if isinstance(target, Target):
            if target not in self.targets_:
                raise ValueError(f"target must be one of the fitted targets; got {target.label}.")
            return self.targets_.index(target)
        return check_int("target", target, low=0, high=len(self.targets_) - 1)

    def samples(self, target: "Target | int") -> tuple[np.ndarray, np.ndarray]:
        """Draws of one target's chains (a fitted Target or its index in ``targets_``).

        Returns
        -------
        codes : ndarray of shape (n_draws, n_latent)
        probs : ndarray of shape (n_draws, n_classes)
        """
        chains = self.target_index_ == self._target_number(target)
        return (self.codes_[:, chains].reshape(-1, self.codes_.shape[-1]),
                self.probs_[:, chains].reshape(-1, self.n_classes_))

    def decode_samples(self, codes) -> torch.Tensor:
        """Decode codes of shape (n, n_latent) to images (n, C, H, W) with the fitted decoder."""
        return decode(self.decoder_, torch.as_tensor(np.asarray(codes), dtype=torch.float32),
                      device=resolve_device(self.device))

    def confidence_table(self) -> list[dict]:
        """Bayes-TrEx Table 1: mean ± std of the target classes' confidence per target.

        Statistics pool every kept draw of the target's ``n_chains`` chains
        (the paper's 10 trials).

        Returns
        -------
        list of dict
            One per target: ``target`` (label), ``kind``, ``classes``,
            ``goal``, ``mean``, ``std`` (lists over the reported classes),
            ``n_chains``, ``n_draws`` and ``accept_rate``.
        """
        rows = []
        for k, t in enumerate(self.targets_):
            _, probs = self.samples(k)
            cls = list(t.reported_classes)
            goal = [t.confidence[t.classes.index(c)] for c in cls]
            chains = self.target_index_ == k
            rows.append({"target": t.label, "kind": t.kind, "classes": cls, "goal": goal,
                         "mean": probs[:, cls].mean(0).tolist(),
                         "std": probs[:, cls].std(0).tolist(), "n_chains": int(chains.sum()),
                         "n_draws": len(probs),
                         "accept_rate": float(self.sampler_.accept_rate_[chains].mean())})
        return rows

    def to_adversarial_examples(self, *, targets: Sequence[int] | None = None,
                                min_confidence: float = 0.0, labels=None,
                                ) -> AdversarialExamples:
        """Draws as an :class:`AdversarialExamples`, so they feed distillation and labeling.

        Parameters
        ----------
        targets : sequence of int, optional
            Indices into ``targets_`` to keep; all by default.
        min_confidence : float, default=0.0
            Keep draws whose top predicted confidence is at least this.
        labels : callable, optional
            Maps images (n, C, H, W) to labels (n,), e.g. a
            :class:`~defuse_widgets.stages.annotators.SimulatedAnnotator`'s ``label``;
            they become ``true_label``. Without it ``true_label`` copies the
            predicted label (level-set draws have no ground truth). Draws
            labelled -1 ("none of the above") are dropped.

        Returns
        -------
        AdversarialExamples
            ``source_index`` is -1 (draws come from the prior, not from a
            training image) and ``noise_norm`` is ‖z‖₂.
        """
        check_number("min_confidence", min_confidence, low=0, high=1)
        keep = np.isin(self.target_index_, list(range(len(self.targets_))) if targets is None
                       else [self._target_number(t) for t in targets])
        codes = self.codes_[:, keep].reshape(-1, self.codes_.shape[-1])
        probs = self.probs_[:, keep].reshape(-1, self.n_classes_)
        sel = probs.max(1) >= min_confidence
        codes, pred = codes[sel], probs[sel].argmax(1).astype(np.int64)
        true = pred.copy()
        if labels is not None and len(codes):
            if not callable(labels):
                raise TypeError(f"labels must be callable; got {describe(labels)}.")
            true = np.asarray(labels(self.decode_samples(codes)), dtype=np.int64)
            known = true >= 0          # drop "none of the above" (-1): no class to record
            codes, pred, true = codes[known], pred[known], true[known]
        return AdversarialExamples(
            codes=codes.astype(np.float32), source_index=np.full(len(codes), -1, np.int64),
            true_label=true, predicted_label=pred,
            noise_norm=np.linalg.norm(codes, axis=1).astype(np.float32),
            n_decoded=int(self.codes_.shape[0] * keep.sum()),
            params={"source": "bayes-trex level sets", "sigma": float(self.sigma),
                    "method": self.method,
                    "targets": [self.targets_[k].label
                                for k in np.unique(self.target_index_[keep])],
                    "min_confidence": float(min_confidence),
                    "true_label_source": "labels" if labels is not None else "predicted",
                    "seed": int(self.seed)})
