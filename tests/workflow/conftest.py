"""Fixtures of the workflow tests."""
import pytest
import torch
from torch import nn


class Contrarian(nn.Module):
    """An oracle that always names the class after the classifier's: every region is a bug."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        logits = self.classifier(x)
        return 10 * torch.roll(nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float(),
                               1, dims=1)


@pytest.fixture(scope="session")
def contrarian(tiny_models):
    """A :class:`Contrarian` oracle around the tiny classifier."""
    return Contrarian(tiny_models[0])
