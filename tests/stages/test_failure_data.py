
import numpy as np
import pytest
import torch

from defuse_widgets.stages.failure_data import (
    build_failure_sets,
    export_failure_data,
    load_failure_data,
    review_seed,
    review_set,
)
from defuse_widgets.stages.labeling import RegionDecision


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    from defuse_widgets.stages.distillation import distill

    return distill(tiny_adversarial, n_components=3, eps=0.0, n_classes=10)


def _decision(region, accepted, label):
    return RegionDecision(region=region, is_misclassification_region=accepted, label=label,
                          disagreement=1.0 if accepted else 0.0, agreement=1.0, n_votes=10,
                          n_none=0)


@pytest.fixture
def decisions():
    return [_decision(0, True, 7), _decision(1, False, 2), _decision(2, True, 4)]


def test_review_set_is_deterministic_per_region(regions, tiny_models):
    clf, vae = tiny_models
    a, pred_a = review_set(regions, 0, vae, clf, size=10)
    b, pred_b = review_set(regions, 0, vae, clf, size=10)
    c, _ = review_set(regions, 1, vae, clf, size=10)
    assert a.shape == (10, 1, 8, 8) and pred_a.shape == (10,) and pred_a.dtype == np.int64
    assert torch.equal(a, b) and np.array_equal(pred_a, pred_b)
    assert not torch.equal(a, c)
    assert review_seed(3, seed=1) == 1030


def test_build_failure_sets_uses_accepted_regions_only(regions, tiny_models, decisions):
    _, vae = tiny_models
    sets = build_failure_sets(regions, decisions, vae, n_finetune=5, n_region_test=3)
    assert set(sets) == {"finetune", "region_validation", "region_test"}
    X_f, y_f = sets["finetune"]
    assert X_f.shape == (10, 1, 8, 8) and y_f.tolist() == [7] * 5 + [4] * 5
    assert sets["region_test"][1].tolist() == [7] * 3 + [4] * 3
    assert not torch.equal(sets["region_validation"][0], sets["region_test"][0])
    only = build_failure_sets(regions, decisions, vae, n_finetune=5, sets=("finetune",))
    assert list(only) == ["finetune"] and torch.equal(only["finetune"][0], X_f)
    assert build_failure_sets(regions, [decisions[1]], vae) == {}


def test_build_failure_sets_is_seeded(regions, tiny_models, decisions):
    _, vae = tiny_models
    a = build_failure_sets(regions, decisions, vae, n_finetune=4, n_region_test=3, seed=2)
    b = build_failure_sets(regions, decisions, vae, n_finetune=4, n_region_test=3, seed=2)
    c = build_failure_sets(regions, decisions, vae, n_finetune=4, n_region_test=3, seed=3)
    assert all(torch.equal(a[k][0], b[k][0]) for k in a)
    assert not torch.equal(a["finetune"][0], c["finetune"][0])


def test_invalid_decisions(regions, tiny_models):
    _, vae = tiny_models
    with pytest.raises(TypeError, match="RegionDecision"):
        build_failure_sets(regions, [{"region": 0}], vae)
    with pytest.raises(ValueError, match="regions in"):
        build_failure_sets(regions, [_decision(len(regions), True, 1)], vae)
    with pytest.raises(ValueError, match="sets must"):
        build_failure_sets(regions, [], vae, sets=("train",))


def test_export_failure_data_writes_npz(regions, tiny_models, decisions, tmp_path):
    _, vae = tiny_models
    path = tmp_path / "out" / "d_f.npz"
    X_f, y_f = export_failure_data(path, regions, decisions, vae, n_finetune=6)
    assert len(X_f) == len(y_f) == 12
    with np.load(path) as data:
        assert data["X_f"].dtype == np.float32 and data["X_f"].shape == (12, 1, 8, 8)
        assert data["y_f"].tolist() == [7] * 6 + [4] * 6
        assert data["region"].tolist() == [0] * 6 + [2] * 6
    X, y = load_failure_data(path)
    assert torch.equal(X, X_f) and torch.equal(y, y_f)
    assert [p.name for p in path.parent.iterdir()] == ["d_f.npz"]  # no temporary left


def test_export_without_accepted_region_raises(regions, tiny_models, tmp_path):
    _, vae = tiny_models
    with pytest.raises(ValueError, match="at least one"):
        export_failure_data(tmp_path / "d_f.npz", regions, [_decision(0, False, 1)], vae)
    assert not (tmp_path / "d_f.npz").exists()
