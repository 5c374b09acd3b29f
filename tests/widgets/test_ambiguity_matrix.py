"""AmbiguityMatrix without a browser: set traits, click cells, check state."""
import io

import numpy as np
import pytest
from PIL import Image

from defuse_widgets.bayes_trex.level_sets import LevelSetSampler, Target
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.widgets import AmbiguityMatrix


@pytest.fixture(scope="module")
def sampler():
    clf, vae, _ = load_pretrained()
    return LevelSetSampler(targets=[Target.ambiguous(1, 7), Target.ambiguous(0, 9)], n_chains=4,
                           n_warmup=60, n_samples=20, n_init=512, device="cpu").fit(clf, vae)


@pytest.fixture
def matrix(sampler):
    baseline = np.zeros((10, 10), int)
    baseline[3, 5] = baseline[5, 3] = 2
    return AmbiguityMatrix(sampler, baseline=baseline, n_show=8)


def test_heatmap_counts_sampled_pairs_and_marks_the_baseline(matrix, sampler):
    assert matrix.counts_[1, 7] > 0 and matrix.counts_[2, 3] == 0
    assert list(matrix.figure.data[0].customdata[1])[7] == matrix.counts_[1, 7]
    assert len(matrix.figure.data) == 2 and len(matrix.figure.data[1].x) == 2


def test_heatmap_is_valid_json_with_a_blank_diagonal(matrix):
    """Issue 15: NaN on the diagonal is not JSON; the widget must send null instead."""
    import json

    z = [list(row) for row in matrix.figure.data[0].z]
    json.dumps(z, allow_nan=False)   # raises on NaN or inf
    assert all(z[i][i] is None for i in range(len(z)))
    counts = matrix.counts_
    off = [(i, j) for i in range(len(z)) for j in range(len(z)) if i != j]
    assert all((z[i][j] > 0) == (counts[i, j] > 0) for i, j in off)


def test_select_shows_that_pairs_samples(matrix):
    assert matrix._image.value == b""
    matrix.select(7, 1)
    assert matrix.pair == (1, 7) and "1 vs 7" in matrix._caption.value
    w, h = Image.open(io.BytesIO(matrix._image.value)).size
    assert w > h > 0
    first = matrix._image.value
    matrix.select(2, 3)                                    # not sampled: says so, no images
    assert "not sampled" in matrix._caption.value and matrix._image.value == b""
    matrix.select(1, 7)
    assert matrix._image.value == first


def test_click_handler_selects_the_cell(matrix):
    class Points:
        xs, ys = ["9"], ["0"]
    matrix._clicked(None, Points(), None)
    assert matrix.pair == (0, 9)


def test_bad_input(matrix, sampler):
    with pytest.raises(ValueError, match="j must differ"):
        matrix.select(3, 3)
    with pytest.raises(TypeError, match="sampler"):
        AmbiguityMatrix("not a sampler")
    with pytest.raises(ValueError, match="baseline"):
        AmbiguityMatrix(sampler, baseline=np.zeros((3, 3)))


def test_colour_bar_reads_in_draws_and_axes_are_named(matrix):
    heat, layout = matrix.figure.data[0], matrix.figure.layout
    assert heat.showscale is not False and "ambiguous" in heat.colorbar.title.text
    top = int(matrix.counts_.max())
    assert heat.colorbar.ticktext[0] == "1" and len(heat.colorbar.ticktext) == len(str(top))
    # a tick sits where a cell of that many draws is coloured
    for text, val in zip(heat.colorbar.ticktext, heat.colorbar.tickvals):
        assert np.isclose(val, np.log10(int(text.replace(",", ""))) + 1)
    assert layout.xaxis.title.text and layout.yaxis.title.text
