"""The session folder: every stage round-trips, the manifest guards it, crashes lose nothing."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import defuse_widgets
from defuse_widgets.correction import Corrector
from defuse_widgets.distillation import Distiller
from defuse_widgets.embedding import LatentMap
from defuse_widgets.labeling import decide
from defuse_widgets.models import MnistCNN
from defuse_widgets.persistence import FORMAT_VERSION, SessionFormatError, UnsafeFileError
from defuse_widgets.session import Session


@pytest.fixture(scope="module")
def regions(tiny_adversarial):
    return Distiller(n_components=3, eps=0.0).fit(tiny_adversarial, n_classes=10).regions_


@pytest.fixture(scope="module")
def corrector(digits, tiny_models):
    X_f, y_f = digits.X_test[:20], torch.full((20,), 8)
    evals = {"validation": (digits.X_val, digits.y_val), "region_validation": (X_f, y_f)}
    return Corrector(lams=[0.0, 1.0], epochs=1, batch_size=256, tolerance=1.0).fit(
        tiny_models[0], digits.X_train[:300], digits.y_train[:300], X_f, y_f, eval_sets=evals)


@pytest.fixture
def session(tmp_path, tiny_adversarial, regions):
    s = Session(tmp_path / "s")
    s.save_adversarial(tiny_adversarial, {"Q": 8})
    s.save_regions(regions, {"n_components": 3})
    yield s
    s.close()


def test_every_stage_round_trips(session, tiny_adversarial, regions, corrector):
    store = session.open_store(10)
    store.set_review_set(0, [1, 1, 2])
    store.cast_vote("ada", 0, 0, 7)
    store.cast_vote("ada", 0, 1, 7)
    decisions = decide(store, rho=0.5)
    session.save_decisions(decisions, rho=0.5)
    session.save_correction(corrector)
    latent = LatentMap(n_iter=30, early_exaggeration_iter=10).fit(
        np.random.default_rng(0).normal(size=(30, 4)))
    session.save_latent_map(latent)
    session.close()

    again = Session(session.path)
    adv = again.load_adversarial()
    for f in ("codes", "source_index", "true_label", "predicted_label", "noise_norm"):
        np.testing.assert_array_equal(getattr(adv, f), getattr(tiny_adversarial, f))
        assert getattr(adv, f).dtype == getattr(tiny_adversarial, f).dtype
    assert adv.params == tiny_adversarial.params and adv.n_decoded == tiny_adversarial.n_decoded
    loaded = again.load_regions(adv)
    for f in regions.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(loaded, f), getattr(regions, f))
    assert again.load_settings() == {"identification": {"Q": 8},
                                     "distillation": {"n_components": 3}}
    assert [v.label for v in again.open_store(10).votes()] == [7, 7]
    loaded_decisions = again.load_decisions()
    assert [d.region for d in loaded_decisions] == [d.region for d in decisions]
    assert loaded_decisions[0].is_misclassification_region and loaded_decisions[0].label == 7
    assert np.isnan(loaded_decisions[0].sample_agreement[2])     # NaN survives JSON
    sweep = again.load_correction()
    assert sweep["results"] == corrector.results_ and sweep["best"] == corrector.best_
    assert list(sweep["history"]) == list(corrector.history_)
    assert sweep["history"].column("epoch") == [1, 1]
    assert sweep["params"]["lams"] == [0.0, 1.0] and sweep["before"] == corrector.before_
    model = again.load_model(MnistCNN(1, 8, 10))
    for k, v in corrector.best_model_.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    m = again.load_latent_map()
    np.testing.assert_array_equal(m.embedding_, latent.embedding_)
    again.close()


def test_manifest_lists_every_file_with_hash_and_versions(session, corrector):
    session.open_store(10)
    session.save_correction(corrector)
    manifest = json.loads(session.manifest_path.read_text())
    assert manifest["format"] == "defuse_widgets.session"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["package_version"] == defuse_widgets.__version__
    assert manifest["created"] <= manifest["updated"]
    files = manifest["files"]
    assert set(files) == {"adversarial.npz", "regions.npz", "settings.json",
                          "annotations.sqlite", "correction.json", "corrected_classifier.pt"}
    entry = files["adversarial.npz"]
    assert entry["kind"] == "adversarial"
    assert entry["size"] == session.adversarial_path.stat().st_size and len(entry["sha256"]) == 64
    assert "sha256" not in files["annotations.sqlite"]   # changes with every vote
    assert session.verify() == manifest


def test_new_identification_archives_votes_and_updates_the_manifest(session, tiny_adversarial):
    store = session.open_store(10)
    store.set_review_set(0, [1])
    store.cast_vote("ada", 0, 0, 3)
    archived = session.save_adversarial(tiny_adversarial, {"Q": 8})
    assert (archived / "annotations.sqlite").exists() and (archived / "regions.npz").exists()
    assert set(session.manifest["files"]) == {"adversarial.npz", "settings.json"}
    assert session.load_regions() is None
    session.verify()


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[: len(b) // 2], "bytes as recorded in manifest.json"),
    (lambda b: b[:-9] + bytes([b[-9] ^ 1]) + b[-8:], "SHA-256 must match"),
])
def test_truncated_or_corrupted_file_is_refused(session, damage, match):
    path = session.adversarial_path
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SessionFormatError, match=f"adversarial.npz.*{match}") as info:
        session.load_adversarial()
    assert info.value.path == path
    with pytest.raises(SessionFormatError, match="adversarial.npz"):
        session.verify()


def test_newer_format_version_is_refused(session):
    manifest = json.loads(session.manifest_path.read_text())
    manifest.update(format_version=FORMAT_VERSION + 1, package_version="9.0")
    session.manifest_path.write_text(json.dumps(manifest))
    for load in (session.load_adversarial, session.load_regions, session.verify):
        with pytest.raises(SessionFormatError, match=r"manifest.json.*format version 2.*9\.0"):
            load()
    with pytest.raises(SessionFormatError, match="format version"):
        session.save_decisions([])   # a newer session is never overwritten


def test_manifest_paths_that_escape_are_rejected(session, tmp_path):
    manifest = json.loads(session.manifest_path.read_text())
    for bad, match in (("../../etc/passwd", "'..'"), (str(tmp_path / "x.npz"), "absolute")):
        session.manifest_path.write_text(json.dumps(
            {**manifest, "files": {**manifest["files"], bad: {"kind": "x"}}}))
        with pytest.raises(UnsafeFileError, match=match):
            session.verify()


def test_session_file_symlinked_outside_is_rejected(tmp_path, session):
    outside = tmp_path / "elsewhere.npz"
    session.regions_path.rename(outside)
    session.regions_path.symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="regions.npz.*symlink"):
        session.load_regions()


def test_inconsistent_arrays_name_the_file(session, tiny_adversarial):
    arrays = tiny_adversarial.to_npz()
    arrays["true_label"] = arrays["true_label"][:-1]
    session._save_npz(session.adversarial_path, arrays)
    with pytest.raises(SessionFormatError, match="adversarial.npz.*true_label must have shape"):
        session.load_adversarial()


def test_session_without_manifest_still_loads(tmp_path, tiny_adversarial):
    folder = tmp_path / "old"
    folder.mkdir()
    with open(folder / "adversarial.npz", "wb") as f:   # as written before manifests
        np.savez(f, **tiny_adversarial.to_npz())
    s = Session(folder)
    assert s.manifest is None and s.verify() == {}
    assert len(s.load_adversarial()) == len(tiny_adversarial)
    assert s.load_regions() is None and s.load_decisions() is None
    assert s.load_correction() is None and s.load_model(MnistCNN(1, 8, 10)) is None


def test_votes_cast_through_a_session_survive_sigkill(tmp_path):
    folder = tmp_path / "s"
    s = Session(folder)
    s.open_store(10).set_review_set(0, [0] * 5000)
    s.close()
    script = textwrap.dedent("""
        import sys
        from defuse_widgets.session import Session
        store = Session(sys.argv[1]).open_store(10)
        for i in range(5000):
            store.cast_vote("ada", 0, i, 1 + i % 9)
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(folder)],
                            stdout=subprocess.PIPE, text=True)
    reported = []
    for line in proc.stdout:
        reported.append(int(line))
        if len(reported) >= 50:
            break
    os.kill(proc.pid, signal.SIGKILL)
    reported += [int(x) for x in proc.stdout.read().split()]
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    again = Session(folder)
    again.verify()
    votes = {v.sample: v.label for v in again.open_store(10).votes()}
    assert all(votes[i] == 1 + i % 9 for i in reported)
    assert len(votes) in (len(reported), len(reported) + 1)   # at most one unreported vote
    decision, = decide(again.store)
    assert decision.n_votes == len(votes) and decision.is_misclassification_region
    again.close()


def test_bad_arguments_name_the_parameter(session):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        session.save_model("weights")
    with pytest.raises(TypeError, match="decisions must hold RegionDecision"):
        session.save_decisions([{"region": 0}])
    with pytest.raises(TypeError, match="corrector must be a fitted Corrector"):
        session.save_correction(Corrector())
    with pytest.raises(ValueError, match="model must have the architecture"):
        session.save_model(MnistCNN(1, 8, 10))
        session.load_model(torch.nn.Linear(2, 2))
