"""Batched MCMC kernels recover known Gaussians; diagnostics; bad input."""
import numpy as np
import pytest
import torch

from defuse_widgets.bayes_trex.samplers import HMC, MALA, RandomWalkMetropolis, effective_sample_size

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
