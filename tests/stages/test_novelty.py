import numpy as np
import torch
from torch import nn

from defuse_widgets.models.inference import predict
from defuse_widgets.stages.novelty import nearest_misclassified


def test_finds_the_nearest_misclassified_image(digits, tiny_models):
    clf, _ = tiny_models
    X, y = digits.X_train, digits.y_train.clone()
    y[:20] = (y[:20] + 1) % 10  # make 20 training images 'misclassified'
    wrong = np.flatnonzero((predict(clf, X) != y).numpy())
    queries = X[wrong[:5]] + 0.01
    res = nearest_misclassified(queries, clf, X, y)
    np.testing.assert_array_equal(res.neighbour_index, wrong[:5])
    assert res.n_misclassified_train == len(wrong)
    assert (res.distance < 0.2).all()
    assert res.summary()["n_queries"] == 5


def test_no_misclassified_training_images(digits):
    class Perfect(nn.Module):  # predicts the label stored in the first pixel, as label / 10
        def forward(self, x):
            return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 10).round().long(), 10).float()
    X = torch.zeros(10, 1, 4, 4)
    X[:, 0, 0, 0] = torch.arange(10).float() / 10
    res = nearest_misclassified(X[:2], Perfect(), X, torch.arange(10))
    assert res.n_misclassified_train == 0 and (res.neighbour_index == -1).all()
