"""bf16 decisions with an fp32 re-check of close calls (models.precision.guarded_argmax)."""
import pytest
import torch

from defuse_widgets.models.inference import predict
from defuse_widgets.models.precision import GUARD, guarded_argmax


def _logits(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=g)


def test_guard_remakes_exactly_the_close_calls():
    exact = _logits()
    noise = (torch.rand(exact.shape, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.2
    fast_logits = exact + noise                      # every logit off by < 0.1
    rows = torch.arange(len(exact))
    fast = lambda x: fast_logits[x]                  # noqa: E731  (inputs are row indices)
    calls = []

    def exact_fn(x):
        calls.append(len(x))
        return exact[x]
    top = fast_logits.topk(2, 1).values
    close = int(((top[:, 0] - top[:, 1]) < 0.2).sum())
    pred, n = guarded_argmax(fast, exact_fn, rows, batch_size=256, guard=0.2)
    assert n == close == sum(calls) > 0
    assert torch.equal(pred, exact.argmax(1))        # errors < guard / 2 never flip a decision
    raw, n0 = guarded_argmax(fast, exact_fn, rows, batch_size=256, guard=0.0)
    assert n0 == 0 and not torch.equal(raw, exact.argmax(1))
    every, n_all = guarded_argmax(fast, exact_fn, rows, batch_size=256, guard=float("inf"))
    assert n_all == len(rows) and torch.equal(every, exact.argmax(1))


def test_no_rows():
    pred, n = guarded_argmax(lambda x: x, lambda x: x, torch.zeros(0, 10), batch_size=8)
    assert pred.shape == (0,) and n == 0


@pytest.mark.parametrize("guard", [GUARD])
def test_bf16_predict_equals_fp32_on_a_trained_classifier(tiny_models, digits, guard):
    clf, vae = tiny_models
    X = torch.cat([digits.X_test, vae.decode(torch.randn(500, vae.n_latent)).detach()])
    fp32 = predict(clf, X, batch_size=256)
    bf16 = predict(clf, X, batch_size=256, precision="bf16")
    assert torch.equal(bf16, fp32)
    assert not clf.training
