"""Batched MCMC kernels recover known Gaussians; diagnostics; bad input."""
import numpy as np
import pytest
import torch

from defuse_widgets.bayes_trex.samplers import (
    HMC,
    MALA,
    RandomWalkMetropolis,
    effective_sample_size,
)

MEAN = torch.tensor([1.0, -2.0])
SD = torch.tensor([0.5, 2.0])


def gaussian(z):
    return -0.5 * (((z - MEAN) / SD) ** 2).sum(1)


@pytest.mark.parametrize("kernel", [HMC(n_leapfrog=5), MALA(), RandomWalkMetropolis()],
                         ids=["hmc", "mala", "rwm"])
def test_recovers_mean_and_variance_of_a_known_gaussian(kernel):
    kernel.device, kernel.n_warmup, kernel.n_samples = "cpu", 200, 200
    kernel.run(gaussian, torch.zeros(256, 2))
    draws = kernel.samples_.reshape(-1, 2)
    assert kernel.samples_.shape == (200, 256, 2)
    assert torch.allclose(draws.mean(0), MEAN, atol=0.1)
    assert torch.allclose(draws.std(0), SD, rtol=0.1)
    target = kernel.default_accept
    assert abs(kernel.accept_rate_.mean() - target) < 0.2
    d = kernel.diagnostics()
    assert d["n_chains"] == 256 and d["ess_per_s"] > 0 and d["ess_min"] > 256


def test_chains_adapt_their_own_step_sizes():
    scales = torch.ones(256, 1)
    scales[128:] = 0.01            # half the chains sample a 100x narrower Gaussian
    mala = MALA(n_warmup=150, n_samples=20, device="cpu").run(
        lambda z: -0.5 * ((z / scales) ** 2).sum(1), torch.zeros(256, 2))
    assert np.median(mala.step_size_[:128]) > 20 * np.median(mala.step_size_[128:])


def test_aux_is_kept_with_the_accepted_state():
    rwm = RandomWalkMetropolis(n_warmup=10, n_samples=30, device="cpu").run(
        lambda z: (-0.5 * (z ** 2).sum(1), 3 * z), torch.zeros(8, 2))
    assert torch.allclose(rwm.aux_, 3 * rwm.samples_)


def test_ess_of_independent_draws_is_close_to_their_number_and_smaller_when_correlated():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(1000, 4, 1))
    ar = np.zeros_like(iid)
    for t in range(1, 1000):
        ar[t] = 0.9 * ar[t - 1] + iid[t]
    assert 3000 < effective_sample_size(iid)[0] < 5000
    assert effective_sample_size(ar)[0] < 600        # theory: 4000 * 0.1 / 1.9 = 210


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="step_size"):
        MALA(step_size=0, device="cpu").run(gaussian, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="target_accept"):
        HMC(target_accept=1.5, device="cpu").run(gaussian, torch.zeros(4, 2))
    with pytest.raises(TypeError, match="n_leapfrog"):
        HMC(n_leapfrog=2.5, device="cpu").run(gaussian, torch.zeros(4, 2))
    with pytest.raises(TypeError, match="log_prob"):
        MALA(device="cpu").run("not callable", torch.zeros(4, 2))
    with pytest.raises(ValueError, match="init"):
        MALA(device="cpu").run(gaussian, torch.zeros(4))
    with pytest.raises(ValueError, match="draws"):
        effective_sample_size(np.zeros((10, 2)))


def test_callback_sees_every_iteration_and_can_stop():
    from defuse_widgets.callbacks import Stopped
    seen = []
    MALA(n_warmup=5, n_samples=4, device="cpu").run(
        gaussian, torch.zeros(8, 2), callback=lambda *a: seen.append(a), stage="demo")
    assert seen == [("demo", k, 9) for k in range(1, 10)]
    calls = []
    with pytest.raises(Stopped):
        RandomWalkMetropolis(n_warmup=5, n_samples=5, device="cpu").run(
            gaussian, torch.zeros(8, 2), callback=lambda s, d, t: calls.append(d) or d == 3)
    assert calls == [1, 2, 3]


def test_schedule_changes_the_target_and_states_are_reevaluated():
    shift = {"mean": 10.0}

    def moving(z):
        return -0.5 * ((z - shift["mean"]) ** 2).sum(1)

    def schedule(it):                  # target moves to the origin after 5 iterations
        if it == 5:
            shift["mean"] = 0.0
            return True
        return False
    kernel = MALA(n_warmup=60, n_samples=60, device="cpu").run(moving, torch.full((64, 2), 10.0),
                                                               schedule=schedule)
    assert kernel.n_evaluations_ == 1 + 120 + 1
    # the stored log densities are those of the final target, not stale ones
    np.testing.assert_allclose(kernel.log_prob_.numpy(),
                               (-0.5 * (kernel.samples_ ** 2).sum(-1)).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert abs(float(kernel.samples_.mean())) < 0.3
