"""Tests of the simulated annotator crowd (it stands in for people)."""
import numpy as np
import pytest
import torch
from torch import nn

from defuse_widgets.models import MnistCNN
from defuse_widgets.models.inference import predict
from defuse_widgets.models.training import train_classifier
from defuse_widgets.stages.annotators import SimulatedAnnotator
from defuse_widgets.stages.labeling import decide
from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE, AnnotationStore


class PixelLogits(nn.Module):
    """An oracle whose logits are the pixels of a (n, 1, 1, n_classes) image."""

    def forward(self, x):
        return x.flatten(1)


def _images(logits):
    return torch.as_tensor(np.asarray(logits, dtype=np.float32))[:, None, None, :]


@pytest.fixture(scope="module")
def oracle(digits):
    model = MnistCNN(in_channels=1, image_size=8, n_classes=10)
    return train_classifier(model, digits.X_train, digits.y_train, epochs=2, seed=1,
                            progress=False)


def test_error_free_workers_all_vote_the_oracle_argmax(oracle, digits):
    X = digits.X_test[:60]
    votes = SimulatedAnnotator(oracle, n_workers=4, none_threshold=0.0).vote(X)
    assert votes.shape == (4, 60) and votes.dtype == np.int64
    expected = predict(oracle, X).numpy()
    assert (votes == expected[None, :]).all()
    assert (expected == digits.y_test[:60].numpy()).mean() > 0.5   # oracle is a real classifier


def test_error_rate_one_never_votes_the_argmax_and_spreads_over_other_classes():
    X = _images(np.tile(np.eye(10)[3] * 8.0, (2000, 1)))
    votes = SimulatedAnnotator(PixelLogits(), error_rate=1.0).vote(X)
    assert not (votes == 3).any()
    counts = np.bincount(votes.ravel(), minlength=10)
    assert counts[3] == 0
    assert (np.delete(counts, 3) > 0.8 * votes.size / 9).all()


def test_error_rate_sets_the_share_of_wrong_votes():
    X = _images(np.tile(np.eye(10)[0] * 8.0, (2000, 1)))
    votes = SimulatedAnnotator(PixelLogits(), error_rate=0.3, seed=4).vote(X)
    assert 0.27 < (votes != 0).mean() < 0.33
    assert (votes >= 0).all()


def test_votes_are_deterministic_given_seed():
    X = _images(np.random.default_rng(0).normal(size=(50, 10)) * 3)
    crowd = SimulatedAnnotator(PixelLogits(), error_rate=0.4, seed=7)
    first = crowd.vote(X)
    np.testing.assert_array_equal(first, crowd.vote(X))
    np.testing.assert_array_equal(first, SimulatedAnnotator(PixelLogits(), error_rate=0.4,
                                                            seed=7).vote(X))
    assert (first != SimulatedAnnotator(PixelLogits(), error_rate=0.4, seed=8).vote(X)).any()
    assert (first != crowd.vote(X, key=1)).any()


def test_none_threshold_turns_unsure_images_into_none_votes():
    sure = np.eye(10)[2] * 10.0
    unsure = np.zeros(10)                                  # top probability 0.1
    half = np.full(10, -1e9)
    half[[4, 6]] = 0.0                                     # top probability exactly 0.5
    X = _images([sure, unsure, half])
    votes = SimulatedAnnotator(PixelLogits(), n_workers=3, none_threshold=0.5).vote(X)
    np.testing.assert_array_equal(votes, [[2, NONE_OF_THE_ABOVE, 4]] * 3)
    votes = SimulatedAnnotator(PixelLogits(), n_workers=3, none_threshold=0.0).vote(X)
    np.testing.assert_array_equal(votes[:, 1], [0, 0, 0])
    votes = SimulatedAnnotator(PixelLogits(), n_workers=3, none_threshold=0.51).vote(X)
    assert votes[0, 2] == NONE_OF_THE_ABOVE


def test_label_is_majority_and_none_when_all_workers_say_none():
    X = _images([np.eye(10)[5] * 10.0, np.zeros(10)])
    labels = SimulatedAnnotator(PixelLogits(), none_threshold=0.5).label(X)
    np.testing.assert_array_equal(labels, [5, NONE_OF_THE_ABOVE])
    X = _images(np.tile(np.eye(10)[1] * 10.0, (200, 1)))
    labels = SimulatedAnnotator(PixelLogits(), n_workers=5, error_rate=0.2).label(X)
    assert (labels == 1).mean() > 0.9


def test_annotate_writes_every_worker_vote(tmp_path, oracle, digits):
    X = digits.X_test[:10]
    oracle_pred = predict(oracle, X).numpy()
    crowd = SimulatedAnnotator(oracle, n_workers=5, none_threshold=0.0, name="sim")
    assert crowd.worker_names == [f"sim-{w}" for w in range(5)]
    with AnnotationStore(tmp_path / "v.sqlite", n_classes=10) as store:
        store.set_review_set(0, (oracle_pred + 1) % 10)    # a classifier that is always wrong
        store.set_review_set(1, oracle_pred)               # one that agrees with the oracle
        crowd.annotate(store, 0, X)
        crowd.annotate(store, 1, X)
        assert len(store.votes(region=0)) == 5 * 10
        assert store.annotators() == crowd.worker_names
        names, matrix = store.vote_matrix(0)
        np.testing.assert_array_equal(matrix, np.tile(oracle_pred, (5, 1)))
        r0, r1 = decide(store)
    assert r0.is_misclassification_region and not r1.is_misclassification_region
    assert r0.label == np.bincount(oracle_pred).argmax()


def test_annotate_checks_store_region_and_images(tmp_path, oracle, digits):
    crowd = SimulatedAnnotator(oracle)
    with AnnotationStore(tmp_path / "v.sqlite", n_classes=10) as store:
        store.set_review_set(0, [1, 2, 3])
        with pytest.raises(ValueError, match="region"):
            crowd.annotate(store, 1, digits.X_test[:3])
        with pytest.raises(ValueError, match="images must hold the 3 review samples"):
            crowd.annotate(store, 0, digits.X_test[:4])
        with pytest.raises(TypeError, match="store"):
            crowd.annotate("votes.sqlite", 0, digits.X_test[:3])
        assert store.votes() == []
    with AnnotationStore(tmp_path / "w.sqlite", n_classes=5) as store:
        store.set_review_set(0, [1, 2, 3])
        with pytest.raises(ValueError, match="oracle must output 5 logits"):
            crowd.annotate(store, 0, digits.X_test[:3])


def test_constructor_validates_parameters():
    with pytest.raises(TypeError, match="oracle"):
        SimulatedAnnotator(lambda x: x)
    with pytest.raises(ValueError, match="n_workers"):
        SimulatedAnnotator(PixelLogits(), n_workers=0)
    with pytest.raises(ValueError, match="error_rate"):
        SimulatedAnnotator(PixelLogits(), error_rate=1.5)
    with pytest.raises(ValueError, match="none_threshold"):
        SimulatedAnnotator(PixelLogits(), none_threshold=-0.1)
    with pytest.raises(ValueError, match="name"):
        SimulatedAnnotator(PixelLogits(), name="")
    with pytest.raises(ValueError, match="images"):
        SimulatedAnnotator(PixelLogits()).vote(torch.zeros(3, 10))
