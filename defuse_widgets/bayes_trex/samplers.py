"""Batched MCMC kernels for level-set sampling: HMC, MALA and random-walk Metropolis.

Every kernel runs ``n_chains`` *independent* chains as one batch on one device:
one forward (and, for the gradient kernels, one backward) pass of the target
moves every chain by a step, and every chain keeps its own step size, adapted
during warm-up by dual averaging (Hoffman and Gelman 2014, Alg. 5) towards a
target acceptance rate. Diagnostics are the acceptance rate per chain, the
effective sample size (ESS) and effective samples per second.

Why not Pyro? Bayes-TrEx used Pyro's NUTS. Pyro's ``MCMC(num_chains=n)`` runs
chains in n worker processes (or one after another), not as one tensor batch,
so 256 chains mean 256 processes each doing batch-1 passes. Writing the chains
as a batch dimension of one Pyro model does not help either: Pyro's HMC/NUTS
then treats the batch as *one* state of 256 × d dimensions with one step size,
one trajectory length and one accept/reject, so a single bad chain rejects all
of them. (NumPyro has ``chain_method="vectorized"``, but it is JAX, and our
classifiers and decoders are torch modules.) The kernels below are therefore
written here, in plain torch, vectorised over chains.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from defuse_widgets._validation import check_int, check_number, check_seed, describe, resolve_device
from defuse_widgets.callbacks import ProgressCallback, Stopped

__all__ = ["HMC", "MALA", "RandomWalkMetropolis", "effective_sample_size"]

LogProb = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


def effective_sample_size(draws) -> np.ndarray:
    """ESS of each dimension, summed over independent chains.

    Per chain, the integrated autocorrelation time is estimated with Geyer's
    initial monotone positive sequence (the estimator of Stan and ArviZ, applied
    within each chain); the chain's ESS is ``n_draws / tau``. A chain that
    never moved counts as one draw. The ESS of the run is the sum over chains,
    which is the right measure for independent replicas started from the
    prior; it does not penalise chains that settled in different modes (a
    level-set posterior usually has many).

    Parameters
    ----------
    draws : ndarray or Tensor of shape (n_draws, n_chains, n_dims)

    Returns
    -------
    ndarray of shape (n_dims,)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ess = effective_sample_size(rng.normal(size=(500, 4, 2)))
    >>> bool(1500 < ess.min() and ess.max() < 2500)
    True
    """
    x = draws.detach().cpu().numpy() if isinstance(draws, torch.Tensor) else np.asarray(draws)
    if x.ndim != 3 or x.shape[0] < 4:
        raise ValueError("draws must have shape (n_draws, n_chains, n_dims) with n_draws >= 4; "
                         f"got {describe(x)}.")
    x = x.astype(np.float64)
    n = x.shape[0]
    x = x - x.mean(axis=0, keepdims=True)
    f = np.fft.rfft(x, n=2 * n, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=2 * n, axis=0)[:n] / n
    var0 = acov[0]
    stuck = var0 <= 1e-20
    rho = acov / np.where(stuck, 1.0, var0)
    m = (n - 1) // 2
    pairs = rho[0:2 * m:2] + rho[1:2 * m:2]                    # (m, chains, dims)
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)      # initial positive sequence
    monotone = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.where(positive, monotone, 0.0).sum(axis=0)
    tau = np.maximum(tau, 1.0 / math.log10(max(n, 10)))
    ess = np.where(stuck, 1.0, n / tau)
    return ess.sum(axis=0)


def _split(out):
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


class _Kernel:
    """Shared warm-up, dual averaging, bookkeeping and diagnostics."""

    default_accept = 0.65
    uses_gradient = True

    def __init__(self, *, step_size: float = 0.1, target_accept: float | None = None,
                 n_warmup: int = 200, n_samples: int = 200, thin: int = 1,
                 adapt: bool = True, device=None, seed: int = 0):
        self.step_size = step_size
        self.target_accept = target_accept
        self.n_warmup = n_warmup
        self.n_samples = n_samples
        self.thin = thin
        self.adapt = adapt
        self.device = device
        self.seed = seed

    # -- one evaluation of the target ----------------------------------------------------
    def _evaluate(self, log_prob: LogProb, z: torch.Tensor):
        if not self.uses_gradient:
            with torch.no_grad():
                lp, aux = _split(log_prob(z))
            return lp.detach(), None, None if aux is None else aux.detach()
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            lp, aux = _split(log_prob(z))
            grad, = torch.autograd.grad(lp.sum(), z)
        lp = lp.detach()
        grad = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
        return lp, grad.detach(), None if aux is None else aux.detach()

    def _check(self):
        check_number("step_size", self.step_size, low=0, low_inclusive=False)
        acc = self.default_accept if self.target_accept is None else self.target_accept
        check_number("target_accept", acc, low=0, high=1, low_inclusive=False,
                     high_inclusive=False)
        check_int("n_warmup", self.n_warmup, low=0)
        check_int("n_samples", self.n_samples, low=1)
        check_int("thin", self.thin, low=1)
        check_seed("seed", self.seed)
        return acc

    def run(self, log_prob: LogProb, init, *, callback: ProgressCallback | None = None,
            schedule: Callable[[int], bool] | None = None, stage: str = "mcmc") -> "_Kernel":
        """Run warm-up, then keep ``n_samples`` draws of every chain.

        Parameters
        ----------
        log_prob : callable
            Maps codes z of shape (n_chains, d) to the unnormalised log density,
            shape (n_chains,), or to a tuple ``(log_density, aux)`` where ``aux``
            of shape (n_chains, k) is stored with each kept draw (for example the
            classifier's probabilities, so they need not be recomputed).
        init : Tensor or ndarray of shape (n_chains, d)
            Starting state of each chain.
        callback : ProgressCallback, optional
            The package's progress/stop protocol: ``callback(stage, it, total)``
            after every iteration (warm-up included); True stops the run by
            raising :class:`~defuse_widgets.callbacks.Stopped`.
        schedule : callable(it) -> bool, optional
            Called before iteration ``it``; it may change the target that
            ``log_prob`` evaluates (annealing or tempering during warm-up) and
            returns True when it did, so the current states are re-evaluated.
        stage : str, default="mcmc"
            Stage name passed to ``callback``.

        Returns
        -------
        self

        Raises
        ------
        Stopped
            When ``callback`` returned True.
        """
        if not callable(log_prob):
            raise TypeError(f"log_prob must be callable; got {describe(log_prob)}.")
        target = self._check()
        dev = resolve_device(self.device)
        z = torch.as_tensor(init, dtype=torch.float32).to(dev)
        if z.ndim != 2 or z.shape[0] < 1:
            raise ValueError(f"init must have shape (n_chains, d); got {describe(z)}.")
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        n_chains = z.shape[0]
        t0 = time.perf_counter()
        lp, grad, aux = self._evaluate(log_prob, z)
        self.n_evaluations_ = 1
        log_eps = torch.full((n_chains,), math.log(float(self.step_size)), device=dev)
        mu = log_eps + math.log(10.0)
        h_bar = torch.zeros(n_chains, device=dev)
        log_eps_bar = log_eps.clone()
        kept_z, kept_aux, kept_lp, accepts = [], [], [], []
        total = self.n_warmup + self.n_samples * self.thin
        for it in range(total):
            if schedule is not None and schedule(it):
                lp, grad, aux = self._evaluate(log_prob, z)
                self.n_evaluations_ += 1
            z, lp, grad, aux, alpha = self._step(log_prob, z, lp, grad, aux,
                                                 log_eps.exp(), gen)
            if it < self.n_warmup:
                if self.adapt:     # dual averaging, Hoffman & Gelman (2014) Alg. 5
                    m = it + 1
                    w = 1.0 / (m + 10.0)
                    h_bar = (1 - w) * h_bar + w * (target - alpha)
                    log_eps = mu - math.sqrt(m) / 0.05 * h_bar
                    eta = m ** -0.75
                    log_eps_bar = eta * log_eps + (1 - eta) * log_eps_bar
                    if it == self.n_warmup - 1:
                        log_eps = log_eps_bar.clone()
                if callback is not None and callback(stage, it + 1, total):
                    raise Stopped(f"{stage} stopped at iteration {it + 1} of {total}")
                continue
            accepts.append(alpha)
            if (it - self.n_warmup) % self.thin == self.thin - 1:
                kept_z.append(z.cpu())
                kept_lp.append(lp.cpu())
                if aux is not None:
                    kept_aux.append(aux.cpu())
            if callback is not None and callback(stage, it + 1, total):
                raise Stopped(f"{stage} stopped at iteration {it + 1} of {total}")
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        self.elapsed_s_ = time.perf_counter() - t0
        self.samples_ = torch.stack(kept_z)                  # (n_samples, n_chains, d)
        self.log_prob_ = torch.stack(kept_lp)                # (n_samples, n_chains)
        self.aux_ = torch.stack(kept_aux) if kept_aux else None
        self.accept_rate_ = torch.stack(accepts).mean(0).cpu().numpy()
        self.step_size_ = log_eps.exp().cpu().numpy()
        self.ess_ = effective_sample_size(self.samples_)
        self.ess_per_s_ = float(self.ess_.min()) / self.elapsed_s_
        self.n_chains_ = n_chains
        return self

    def diagnostics(self) -> dict:
        """Acceptance rate, step size, ESS (min and mean over dims) and ESS per second."""
        return {"sampler": type(self).__name__, "n_chains": int(self.n_chains_),
                "n_draws": int(self.samples_.shape[0]),
                "accept_rate": float(self.accept_rate_.mean()),
                "step_size_median": float(np.median(self.step_size_)),
                "ess_min": float(self.ess_.min()), "ess_mean": float(self.ess_.mean()),
                "elapsed_s": float(self.elapsed_s_), "ess_per_s": float(self.ess_per_s_),
                "n_evaluations": int(self.n_evaluations_)}

    @staticmethod
    def _accept(log_ratio: torch.Tensor, gen: torch.Generator):
        log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -math.inf),
                                log_ratio)
        alpha = log_ratio.clamp(max=0).exp()
        u = torch.rand(alpha.shape, generator=gen, device=alpha.device)
        return u < alpha, alpha


class HMC(_Kernel):
    """Hamiltonian Monte Carlo over a batch of independent chains (identity mass).

    Parameters
    ----------
    step_size : float, default=0.1
        Initial leapfrog step size of every chain (adapted during warm-up).
    n_leapfrog : int, default=5
        Leapfrog steps per proposal.
    target_accept : float, default=0.65
    n_warmup, n_samples : int, default=200
        Warm-up iterations (discarded, step size adapted) and kept draws.
    thin : int, default=1
    adapt : bool, default=True
    device : str or torch.device, optional
        CUDA when available by default; ``log_prob`` must work on it.
    seed : int, default=0

    Attributes
    ----------
    samples_ : Tensor of shape (n_samples, n_chains, d)
    log_prob_ : Tensor of shape (n_samples, n_chains)
    aux_ : Tensor of shape (n_samples, n_chains, k) or None
    accept_rate_ : ndarray of shape (n_chains,)
        Mean Metropolis acceptance probability after warm-up.
    step_size_ : ndarray of shape (n_chains,)
    ess_ : ndarray of shape (d,)
        :func:`effective_sample_size` of the kept draws.
    ess_per_s_ : float
        Smallest ESS over dimensions per second of wall time (warm-up included).
    elapsed_s_ : float
    n_evaluations_ : int
        Batched evaluations of ``log_prob`` (each with its gradient).

    Examples
    --------
    >>> hmc = HMC(n_warmup=100, n_samples=100, device="cpu").run(
    ...     lambda z: -0.5 * (z ** 2).sum(1), torch.zeros(256, 2))
    >>> hmc.samples_.shape
    torch.Size([100, 256, 2])
    """

    def __init__(self, *, step_size: float = 0.1, n_leapfrog: int = 5,
                 target_accept: float | None = None, n_warmup: int = 200,
                 n_samples: int = 200, thin: int = 1, adapt: bool = True, device=None,
                 seed: int = 0):
        super().__init__(step_size=step_size, target_accept=target_accept, n_warmup=n_warmup,
                         n_samples=n_samples, thin=thin, adapt=adapt, device=device, seed=seed)
        self.n_leapfrog = n_leapfrog

    def _check(self):
        check_int("n_leapfrog", self.n_leapfrog, low=1)
        return super()._check()

    def _step(self, log_prob, z, lp, grad, aux, eps, gen):
        e = eps[:, None]
        p0 = torch.randn(z.shape, generator=gen, device=z.device)
        p = p0 + 0.5 * e * grad
        z_new = z
        for k in range(self.n_leapfrog):
            z_new = z_new + e * p
            lp_new, grad_new, aux_new = self._evaluate(log_prob, z_new)
            self.n_evaluations_ += 1
            p = p + (e if k < self.n_leapfrog - 1 else 0.5 * e) * grad_new
        log_ratio = (lp_new - 0.5 * (p ** 2).sum(1)) - (lp - 0.5 * (p0 ** 2).sum(1))
        ok, alpha = self._accept(log_ratio, gen)
        okc = ok[:, None]
        z = torch.where(okc, z_new, z)
        grad = torch.where(okc, grad_new, grad)
        lp = torch.where(ok, lp_new, lp)
        if aux is not None:
            aux = torch.where(okc, aux_new, aux)
        return z, lp, grad, aux, alpha


class MALA(HMC):
    """Metropolis-adjusted Langevin: HMC with one leapfrog step, target acceptance 0.574.

    Same parameters and attributes as :class:`HMC`, without ``n_leapfrog``.
    One gradient evaluation per iteration, so it is the cheapest gradient
    kernel per draw.
    """

    default_accept = 0.574

    def __init__(self, *, step_size: float = 0.1, target_accept: float | None = None,
                 n_warmup: int = 200, n_samples: int = 200, thin: int = 1,
                 adapt: bool = True, device=None, seed: int = 0):
        super().__init__(step_size=step_size, n_leapfrog=1, target_accept=target_accept,
                         n_warmup=n_warmup, n_samples=n_samples, thin=thin, adapt=adapt,
                         device=device, seed=seed)


class RandomWalkMetropolis(_Kernel):
    """Gradient-free random-walk Metropolis, for classifiers without gradients.

    Proposals are ``z + step_size * N(0, I)``; the step size of each chain is
    adapted by dual averaging towards ``target_accept`` = 0.234 (the optimal
    rate for high-dimensional random walks). Parameters and attributes as in
    :class:`HMC`, without ``n_leapfrog``; ``log_prob`` is called under
    ``torch.no_grad()``.
    """

    default_accept = 0.234
    uses_gradient = False

    def _step(self, log_prob, z, lp, grad, aux, eps, gen):
        z_new = z + eps[:, None] * torch.randn(z.shape, generator=gen, device=z.device)
        lp_new, _, aux_new = self._evaluate(log_prob, z_new)
        self.n_evaluations_ += 1
        ok, alpha = self._accept(lp_new - lp, gen)
        z = torch.where(ok[:, None], z_new, z)
        lp = torch.where(ok, lp_new, lp)
        if aux is not None:
            aux = torch.where(ok[:, None], aux_new, aux)
        return z, lp, None, aux, alpha
