"""pair_interpolation_codes: lines between two classes' encodings."""
import numpy as np
import pytest
import torch

from defuse_widgets.bayes_trex.evaluation import pair_interpolation_codes
from defuse_widgets.models.inference import encode_mean


def test_lines_run_from_a_class_i_encoding_to_a_class_j_encoding(digits, tiny_models):
    _, vae = tiny_models
    X, y = digits.X_val, digits.y_val
    codes = pair_interpolation_codes(vae, X, y, [(1, 7), (3, 8)], n_per_pair=4, n_steps=5)
    assert codes.shape == (2 * 4 * 5, 4) and codes.dtype == np.float32
    mu = encode_mean(vae, X).numpy()
    lines = codes.reshape(2, 4, 5, 4)
    for p, (i, j) in enumerate([(1, 7), (3, 8)]):
        for line in lines[p]:
            start = np.abs(mu - line[0]).sum(1).argmin()
            end = np.abs(mu - line[-1]).sum(1).argmin()
            assert int(y[start]) == i and int(y[end]) == j
            np.testing.assert_allclose(line[2], (line[0] + line[-1]) / 2, atol=1e-5)


def test_bad_pairs_are_named(digits, tiny_models):
    _, vae = tiny_models
    y = torch.zeros(len(digits.X_val), dtype=torch.long)
    with pytest.raises(ValueError, match="pairs must name classes present in y"):
        pair_interpolation_codes(vae, digits.X_val, y, [(1, 2)])
    with pytest.raises(ValueError, match="n_steps must be >= 2"):
        pair_interpolation_codes(vae, digits.X_val, digits.y_val, [(1, 2)], n_steps=1)
