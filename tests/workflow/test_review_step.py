"""Label review in the session: the simulated reviewer, answers in the store, the review arm."""
import numpy as np
import pytest
import torch

from defuse_widgets.storage.label_review_store import LabelReviewStore
from defuse_widgets.workflow import DefuseConfig, Session, run_defuse


def test_label_review_runs_in_the_workflow_and_is_stored(tmp_path, digits, tiny_models,
                                                         contrarian):
    clf, vae = tiny_models
    cfg = DefuseConfig(dataset="digits", Q=6, a=4, b=4, max_per_instance=3, n_components=4,
                       max_samples=500, lams=(0.0, 5.0), epochs=1, n_finetune=64,
                       n_region_test=32, batch_size=128, label_review=5, baseline=False)
    out, lines = tmp_path / "s", []
    oracle = contrarian
    res = run_defuse(cfg, out=out, classifier=clf, vae=vae, oracle=oracle, data=digits,
                     progress=False, log=lines.append)
    assert any(line.startswith("[label review] train:") for line in lines)
    assert set(res["correction"]) == {"defuse", "review"}
    assert res["corrected_model"]["arm"] == "review"
    assert "Defuse + label review" in "\n".join(lines)
    session = Session(out, classifier=clf, vae=vae, data=digits, oracle=oracle)
    try:
        sets = session.label_review_sets()
        n_train = len(digits.y_train)
        assert set(sets) == {"train", "validation"} and len(sets["train"]) > 0
        with LabelReviewStore(out / "annotations.sqlite") as store:
            answers = store.answers()
        keys = np.concatenate([sets["train"].index, sets["validation"].index + n_train])
        assert set(answers) == set(keys.tolist())   # every review image answered, once
        assert all(len(v) == 1 for v in answers.values())
        # The contrarian oracle names the class after the classifier's prediction,
        # and those answers relabel D.
        rows = sets["train"].index
        expected = (clf(digits.X_train[rows]).argmax(1) + 1) % 10
        y_rev, keep, changed = session.reviewed_labels()["train"]
        assert torch.equal(y_rev[rows], expected) and keep.all()
        assert set(changed.tolist()) == set(rows[(expected != digits.y_train[rows]).numpy()]
                                            .tolist())
        # The review arm is selected on the validation images nobody contested.
        _, _, contested = session.reviewed_labels()["validation"]
        assert len(contested) > 0
        mask = np.ones(len(digits.y_val), bool)
        mask[contested] = False
        acc = (clf(digits.X_val[mask]).argmax(1) == digits.y_val[mask]).float().mean().item()
        saved = session.load_correction()["review"]["before"]["validation"]
        assert saved == pytest.approx(acc, abs=1e-6)
        # Answering again is a no-op: the stored answers are kept, not duplicated.
        session.review_labels_simulated()
        with LabelReviewStore(out / "annotations.sqlite") as store:
            assert store.answers() == answers
    finally:
        session.close()
