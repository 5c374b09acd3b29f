"""Shared fixtures: every test is seeded, and tiny real data and models are built once."""
import numpy as np
import pytest
import torch

from defuse_widgets.seeding import seed_everything

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    seed_everything(0)
    yield


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits as DataSplits (1x8x8 images)."""
    from defuse_widgets.data import load_digits8

    return load_digits8()
