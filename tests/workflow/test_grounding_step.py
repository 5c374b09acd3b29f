"""Grounding in a session: saved through the folder, reloaded, reported, archived with regions."""
import json

import numpy as np
import pytest

from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.workflow import DefuseConfig, Session
from defuse_widgets.workflow.report import report

TINY = dict(dataset="digits", Q=4, a=5.0, b=5.0, max_per_instance=3, n_components=3,
            eps=0.0, max_samples=3000, lams=(1.0,), epochs=1, n_finetune=16,
            n_region_test=16, map_size=150, tsne_iter=50)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, digits, tiny_models):
    """A session folder after identification and distillation."""
    clf, vae = tiny_models
    path = tmp_path_factory.mktemp("grounding") / "s"
    s = Session(path, DefuseConfig(**TINY), classifier=clf, vae=vae, data=digits)
    s.identify()
    s.distill()
    s.close()
    return path


@pytest.fixture
def session(distilled, digits, tiny_models, tmp_path):
    import shutil

    clf, vae = tiny_models
    shutil.copytree(distilled, tmp_path / "s")
    s = Session(tmp_path / "s", classifier=clf, vae=vae, data=digits)
    yield s
    s.close()


def test_ground_regions_saves_and_reloads(session, digits):
    assert session.load_grounding() is None
    g = session.ground_regions()
    assert isinstance(g, RegionGrounding) and g.splits == ("validation", "test")
    assert g.n_regions == len(session.load_regions())
    assert len(g.assignment["validation"]) == len(digits.y_val)
    assert len(g.assignment["test"]) == len(digits.y_test)
    assert session.folder.listed("grounding.json")
    back = Session(session.path, classifier=session.classifier, vae=session.vae,
                   data=digits).load_grounding()
    assert back.summary() == g.summary()
    for s in g.splits:
        np.testing.assert_array_equal(back.assignment[s], g.assignment[s])


def test_a_grounding_of_other_regions_is_not_loaded(session):
    regions = session.load_regions()
    session.ground_regions()
    from dataclasses import replace

    other = replace(regions, means=regions.means + 1.0)
    assert session.load_grounding(other) is None
    assert session.load_grounding(regions) is not None


def test_report_holds_grounding_as_json_without_nan(session):
    res = report(session)
    assert len(res["grounding"]) == len(session.load_regions())
    first = res["grounding"][0]
    assert set(first) == {"region", "validation", "test", "verdict", "sentence"}
    assert first["verdict"] in ("confirmed", "not_confirmed", "no_support")
    json.loads((session.path / "results.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"results.json holds {c}"))


def test_a_new_distillation_archives_the_grounding(session):
    session.ground_regions()
    session.distill()
    assert not session.folder.listed("grounding.json")
    assert session.load_grounding() is None
