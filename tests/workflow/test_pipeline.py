"""run_defuse: a short loop over the Session's stages, on the tiny models."""
import json

import pytest
import torch

from defuse_widgets.storage.annotations import AnnotationStore
from defuse_widgets.workflow import DefuseConfig, Session, SessionMismatchError, run_defuse
from defuse_widgets.workflow.report import figure4_table
from defuse_widgets.workflow.report import report as session_report


def _cfg(**kw):
    base = dict(dataset="digits", Q=6, a=4, b=4, centered=True, max_per_instance=3,
                n_components=4, max_samples=500, lams=(0.0, 5.0), epochs=1, n_finetune=64,
                n_region_test=32, batch_size=128, selection="balanced", tolerance=1.0)
    return DefuseConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits, tiny_models, contrarian):
    clf, vae = tiny_models
    out = tmp_path_factory.mktemp("pipe") / "s"
    res = run_defuse(_cfg(), out=out, classifier=clf, vae=vae, oracle=contrarian,
                     data=digits, progress=False, log=lambda *a: None)
    return out, res


def test_all_four_stages_run_and_write_a_session(run):
    out, res = run
    for f in ("session.json", "adversarial.npz", "regions.npz", "annotations.sqlite",
              "decisions.json", "failure_data.npz", "correction.json", "results.json",
              "corrected_classifier.pt"):
        assert (out / f).exists(), f
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["figure4"] == json.loads(json.dumps(res["figure4"]))
    n_regions = res["status"]["n_regions"]
    assert res["labeling"]["n_misclassification_regions"] == n_regions > 0
    with AnnotationStore(out / "annotations.sqlite") as store:
        assert len(store.votes()) == 5 * 10 * n_regions  # 5 workers x review set of 10


def test_correction_improves_the_region_and_table_is_shaped_like_figure4(run):
    _, res = run
    f4 = res["figure4"]
    assert f4["defuse"]["region_test"] > f4["before"]["region_test"]
    assert f4["before"]["region_test"] == 0.0  # the contrarian oracle never agrees
    table = figure4_table(res)
    for row in ("Before finetuning", "Unrestricted adversarial examples", "Defuse"):
        assert row in table
    assert len(res["correction"]["defuse"]["tradeoff"]) == 2
    assert res["novelty"]["n_queries"] == 10 * res["figure4"]["defuse"]["n_regions"]


def test_interval_rule_says_when_no_lambda_corrects_and_a_person_can_choose_one(
        tmp_path, digits, tiny_models, contrarian):
    """λ = 5 with the contrarian oracle fixes the regions but costs 66 validation points:
    the interval rule refuses it, says so, and saves no "corrected" model; a person
    can still choose it, and the session records who did.
    """
    clf, vae = tiny_models
    out, lines = tmp_path / "s", []
    res = run_defuse(_cfg(selection="interval"), out=out, classifier=clf, vae=vae,
                     oracle=contrarian, data=digits, progress=False, log=lines.append)
    model = res["corrected_model"]
    assert (model["arm"], model["lam"], model["chosen_by"]) == ("defuse", 0.0, "rule")
    assert model["corrected"] is False and model["saved"] is False
    assert not (out / "corrected_classifier.pt").exists()
    assert any("No λ fixes the regions without a significant validation loss" in line
               for line in lines)
    high = res["correction"]["defuse"]["tradeoff"][1]
    assert high["lam"] == 5.0 and high["validation_change_high"] < 0
    session = Session(out, classifier=clf, vae=vae, data=digits)
    try:
        with pytest.raises(ValueError, match="lam must be a finished λ"):
            session.choose_lam(3.0, by="alice")
        choice = session.choose_lam(5.0, by="alice")
        assert (choice["rule_lam"], choice["by"]) == (0.0, "alice")
        model = session.load_corrected_classifier()
        state = torch.load(out / "checkpoints" / "defuse_lam_1.pt", weights_only=True)
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        again = session_report(session)
    finally:
        session.close()
    assert again["corrected_model"]["chosen_by"] == "alice"
    assert again["figure4"]["defuse"]["lam"] == 5.0
    assert again["figure4"]["defuse"]["chosen_by"] == "alice"
    assert "chosen by alice, by hand" in figure4_table(again)


def test_a_finished_run_resumes_without_work_and_refuses_other_settings(run, digits,
                                                                          tiny_models,
                                                                          contrarian):
    out, res = run
    clf, vae = tiny_models
    log = []
    again = run_defuse(None, out=out, classifier=clf, vae=vae, oracle=contrarian,
                       data=digits, progress=False, log=log.append)
    assert again["figure4"] == res["figure4"]
    assert any("resumed" in line for line in log)
    with pytest.raises(SessionMismatchError, match="'Q'"):
        run_defuse(_cfg(Q=7), out=out, classifier=clf, vae=vae, data=digits,
                   log=lambda *a: None)
    assert Session.saved_config(out) == _cfg()


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        run_defuse(_cfg(dataset="imagenet"), out=tmp_path / "s", log=lambda *a: None)
