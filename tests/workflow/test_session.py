"""The workflow Session: one writer, identity by content, integrity on every open."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import defuse_widgets as dw
from defuse_widgets.storage.persistence import FORMAT_VERSION, SessionFormatError, UnsafeFileError
from defuse_widgets.workflow import DefuseConfig, Session, SessionMismatchError
from defuse_widgets.workflow.report import status

TINY = dict(dataset="digits", Q=4, a=5.0, b=5.0, max_per_instance=3, n_components=3,
            eps=0.0, max_samples=3000, lams=(1.0,), epochs=1, n_finetune=16,
            n_region_test=16, map_size=150, tsne_iter=50)


@pytest.fixture(scope="module")
def tiny_config():
    return DefuseConfig(**TINY)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, digits, tiny_models, tiny_config):
    """A session folder after identify, distill and two annotators' votes."""
    clf, vae = tiny_models
    path = tmp_path_factory.mktemp("labelled") / "s"
    s = Session(path, tiny_config, classifier=clf, vae=vae, data=digits)
    s.identify()
    s.distill()
    store = s.open_store()
    for k in range(2):
        _, predicted = s.review_set(k)
        store.set_review_set(k, predicted)
        wrong = min(set(range(10)) - set(predicted.tolist()))
        for i in range(len(predicted)):
            store.cast_vote("ada", k, i, wrong)
            store.cast_vote("bo", k, i, wrong)
    s.decide()
    s.close()
    return path


def _copy(labelled, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(labelled, dst)
    return dst


def _open(path, digits, tiny_models, config=None, **kw):
    clf, vae = tiny_models
    return Session(path, config, classifier=clf, vae=vae, data=digits, **kw)


def _n_votes(path):
    with dw.AnnotationStore(path / "annotations.sqlite") as store:
        return len(store.votes())


def test_stages_round_trip_and_manifest_lists_them(labelled, digits, tiny_models, tiny_config,
                                                    tmp_path):
    s = _open(_copy(labelled, tmp_path), digits, tiny_models)
    assert s.config == tiny_config   # the folder's own settings, none given
    assert [st for st in dw.workflow.STAGES if s.done(st)] == ["identification", "distillation",
                                                               "labeling"]
    manifest = json.loads((s.path / "manifest.json").read_text())
    assert manifest["format"] == "defuse_widgets.session"
    assert manifest["format_version"] == FORMAT_VERSION
    assert set(manifest["files"]) == {"session.json", "adversarial.npz", "regions.npz",
                                      "annotations.sqlite", "decisions.json"}
    assert len(s.load_regions()) == 3 and len(s.load_decisions()) == 3   # one per region
    info = status(s)
    assert info["votes"] == {"ada": 20, "bo": 20} and info["n_accepted"] == 2
    s.close()


def test_moved_renamed_and_respelled_folders_resume(labelled, digits, tiny_models, tmp_path,
                                                    monkeypatch):
    moved = _copy(labelled, tmp_path / "elsewhere", "renamed")
    before = _n_votes(moved)
    monkeypatch.chdir(tmp_path)
    for spelling in (moved, "elsewhere/renamed/", "./elsewhere/../elsewhere/renamed"):
        s = _open(spelling, digits, tiny_models)
        assert s.load_adversarial() is not None and len(s.open_store().votes()) == before
        s.close()
    assert _n_votes(moved) == before


def test_other_settings_are_refused_without_deleting_anything(labelled, digits, tiny_models,
                                                             tiny_config, tmp_path):
    path = _copy(labelled, tmp_path)
    before = _n_votes(path)
    with pytest.raises(SessionMismatchError, match="n_components") as info:
        _open(path, digits, tiny_models, tiny_config.replace(n_components=4))
    message = str(info.value)
    assert "nothing is deleted" in message and "delete it" not in message
    assert _n_votes(path) == before
    # Settings of a stage with no result yet (correction) are accepted.
    s = _open(path, digits, tiny_models, tiny_config.replace(lams=(0.5,)))
    assert s.config.lams == (0.5,)
    s.close()
    # overwrite archives the distillation and everything after it; votes survive there.
    s = _open(path, digits, tiny_models, tiny_config.replace(n_components=4), overwrite=True)
    assert not s.done("distillation") and s.done("identification")
    archived = s.archived
    assert (archived / "regions.npz").exists()
    with dw.AnnotationStore(archived / "annotations.sqlite") as store:
        assert len(store.votes()) == before
    s.close()


def test_other_models_or_data_are_refused(labelled, digits, tiny_models, tmp_path):
    path = _copy(labelled, tmp_path)
    clf, vae = tiny_models
    other = dw.models.MnistCNN(1, 8, 10)
    with pytest.raises(SessionMismatchError, match="classifier"):
        Session(path, classifier=other, vae=vae, data=digits)
    with pytest.raises(SessionMismatchError, match="data"):
        Session(path, classifier=clf, vae=vae, data=digits.__class__(
            **{**digits.__dict__, "y_train": digits.y_train.flip(0)}))


@pytest.mark.parametrize("damage", ["missing", "truncated_npz", "sqlite_header",
                                    "sqlite_middle", "missing_store"])
def test_damaged_listed_files_get_a_named_error_and_keep_the_votes(
        labelled, digits, tiny_models, tmp_path, damage):
    path = _copy(labelled, tmp_path)
    store = path / "annotations.sqlite"
    before = _n_votes(path)
    name = {"missing": "adversarial.npz", "truncated_npz": "regions.npz"}.get(
        damage, "annotations.sqlite")
    target = path / name
    if damage == "missing":
        target.unlink()
    elif damage == "truncated_npz":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "sqlite_header":
        data = bytearray(store.read_bytes())
        data[:16] = b"garbage garbage!"
        store.write_bytes(bytes(data))
    elif damage == "sqlite_middle":
        data = bytearray(store.read_bytes())
        page = 4096   # the second page holds tables: overwrite it with noise
        data[page:page + 2048] = np.random.default_rng(0).integers(0, 256, 2048,
                                                                    dtype=np.uint8).tobytes()
        store.write_bytes(bytes(data))
    else:
        saved = store.read_bytes()
        store.unlink()
    snapshot = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with pytest.raises(SessionFormatError, match=name) as info:
        _open(path, digits, tiny_models)
    assert info.value.path.name == name
    after = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    assert after == snapshot   # nothing written, nothing recreated
    if damage == "missing_store":
        store.write_bytes(saved)
    if damage not in ("sqlite_header", "sqlite_middle"):
        assert _n_votes(path) == before


def test_symlinks_are_refused_before_any_write(labelled, digits, tiny_models, tmp_path):
    path = _copy(labelled, tmp_path)
    foreign = tmp_path / "foreign.sqlite"
    (path / "annotations.sqlite").rename(foreign)
    (path / "annotations.sqlite").symlink_to(foreign)
    size = foreign.stat().st_size
    with pytest.raises(UnsafeFileError, match="symlink"):
        _open(path, digits, tiny_models)
    assert foreign.stat().st_size == size
    # An unlisted symlink, and a symlinked session folder, are refused too.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "annotations.sqlite").symlink_to(foreign)
    with pytest.raises(UnsafeFileError, match="symlink"):
        _open(fresh, digits, tiny_models)
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(UnsafeFileError, match="symlink"):
        _open(tmp_path / "link", digits, tiny_models)
    assert foreign.stat().st_size == size


def test_stop_interrupts_distillation_and_saves_nothing(labelled, digits, tiny_models,
                                                        tmp_path):
    s = _open(_copy(labelled, tmp_path), digits, tiny_models)
    seen = []
    regions_before = (s.path / "regions.npz").read_bytes()
    assert s.distill(callback=lambda stage, done, total: seen.append((stage, done)) or True) \
        is None
    assert seen == [("distillation", 1)]   # stopped after the first EM iteration
    assert (s.path / "regions.npz").read_bytes() == regions_before and s.done("labeling")
    s.close()


def test_correct_runs_both_arms_and_saves_them(labelled, digits, tiny_models, tmp_path):
    clf, vae = tiny_models
    oracle = dw.models.MnistCNN(1, 8, 10)
    oracle.load_state_dict(clf.state_dict())
    s = Session(_copy(labelled, tmp_path), classifier=clf, vae=vae, data=digits, oracle=oracle)
    steps = []
    sweeps = s.correct(callback=lambda stage, done, total: steps.append((stage, done, total)))
    assert list(sweeps) == ["defuse", "baseline"]
    assert {"correction:defuse", "correction:baseline"} == {st for st, _, _ in steps}
    defuse = [(done, total) for st, done, total in steps if st == "correction:defuse"]
    assert defuse[0][0] == 1 and defuse[-1][0] == defuse[-1][1]   # counts steps 1..total
    saved = s.load_correction()
    assert saved["defuse"]["best"]["lam"] == 1.0
    assert saved["defuse"]["results"] == sweeps["defuse"].results_
    # λ = 1 fixes the regions but costs the tiny model 34 validation points, a
    # significant loss: nothing is saved as corrected until a person chooses it.
    assert sweeps["defuse"].corrected_ is False and s.load_corrected_classifier() is None
    s.choose_lam(1.0, by="bob")
    model = s.load_corrected_classifier()
    for k, v in sweeps["defuse"].best_model_.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    # The baseline set has one definition: seeded, labelled one by one by the annotator.
    X1, y1 = s.baseline_set(16)
    X2, y2 = s.baseline_set(16)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert torch.equal(y1, clf(X1).argmax(1))   # the oracle (a copy of clf) labelled them
    s.close()


def test_review_and_baseline_sets_are_kept_by_their_inputs(labelled, digits, tiny_models,
                                                           tmp_path):
    clf, vae = tiny_models
    s = Session(_copy(labelled, tmp_path), classifier=clf, vae=vae, data=digits, oracle=clf)
    images, predicted = s.review_set(0)
    X, y = s.baseline_set(16)
    misses = s.memo.misses
    images[:] = 0   # a caller's change never reaches the kept set
    again, again_pred = s.review_set(0)
    assert s.memo.misses == misses and s.memo.hits == 1
    assert again.abs().sum() > 0 and np.array_equal(predicted, again_pred)
    assert torch.equal(s.baseline_set(16)[1], y) and s.memo.misses == misses
    s.memo.clear()   # computed again from scratch: the same sets
    assert torch.equal(s.review_set(0)[0], again) and torch.equal(s.baseline_set(16)[0], X)
    s.configure(tau=s.config.tau * 2)   # another τ is another review set, computed anew
    assert not torch.equal(s.review_set(0)[0], again) and s.memo.misses == misses + 3
    s.close()


def test_only_the_session_writes_into_its_folder():
    """Static check: no module outside the session's storage writes session files."""
    from pathlib import Path

    root = Path(dw.__file__).parent
    writers = ("save_npz(", "save_json(", "save_state_dict(", "atomic_write(", "record_files(",
               "move_to_archive(", "export_failure_data(", ".save(self.folder")
    allowed = {"storage/persistence.py", "storage/session_folder.py", "storage/manifest.py",
               "stages/failure_data.py", "storage/sweep_checkpoints.py",
               "stages/latent_map.py", "models/pretrained.py",
               # Write where their caller says, outside any session: a standalone
               # panel's export path and the reproductions' model cache.
               "widgets/labeling_panel/panel.py", "evaluation/reproduce.py",
               # train-vae / train-oracle write the user's --out model and its report.
               "models/recipes.py",
               # `copy` writes a new folder (the copy), never into the session.
               "storage/session_copy.py"}
    offenders = []
    for p in root.rglob("*.py"):
        rel = str(p.relative_to(root))
        if rel in allowed:
            continue
        for line in p.read_text().splitlines():
            code = line.split("#")[0]
            if any(w in code for w in writers) and "def " not in code:
                offenders.append(f"{rel}: {line.strip()}")
    assert not offenders, offenders


def test_votes_cast_through_a_session_survive_sigkill(labelled, tmp_path):
    folder = _copy(labelled, tmp_path)
    before = _n_votes(folder)
    script = textwrap.dedent("""
        import sys
        from defuse_widgets.storage.session_folder import SessionFolder
        store = SessionFolder(sys.argv[1]).open_store(10)
        store.set_review_set(5, [0] * 5000)
        for i in range(5000):
            store.cast_vote("cy", 5, i, 1 + i % 9)
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
    votes = {v.sample: v.label for v in dw.AnnotationStore(folder / "annotations.sqlite")
             .votes(annotator="cy")}
    assert all(votes[i] == 1 + i % 9 for i in reported)
    assert len(votes) in (len(reported), len(reported) + 1)
    assert _n_votes(folder) == before + len(votes)


def test_bad_arguments_name_the_parameter(tmp_path):
    with pytest.raises(TypeError, match="config must be a DefuseConfig"):
        Session(tmp_path / "s", {"Q": 3})
    with pytest.raises(TypeError, match="session must be a str or os.PathLike"):
        Session(3)
    with pytest.raises(TypeError, match="unknown.*'K'"):
        DefuseConfig().replace(K=3)
    with pytest.raises(ValueError, match="stage must be one of"):
        Session(tmp_path / "t").archive_from("labelling")


def test_a_session_json_from_before_precision_and_schedule_reads_as_fp32_full():
    """Settings added later take what old sessions ran, not today's defaults."""
    from defuse_widgets.workflow.config import DefuseConfig

    old = DefuseConfig().to_dict()
    del old["precision"], old["schedule"]
    cfg = DefuseConfig.from_dict(old)
    assert (cfg.precision, cfg.schedule) == ("fp32", "full")
    assert DefuseConfig().first_changed_stage(cfg) == "identification"
    with pytest.raises(ValueError, match="precision"):
        DefuseConfig(precision="fp16")
    with pytest.raises(ValueError, match="schedule"):
        DefuseConfig(schedule="fast")
