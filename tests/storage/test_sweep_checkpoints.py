"""A λ sweep killed with SIGKILL resumes from its per-λ checkpoints and matches a full run."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction import Corrector
from defuse_widgets.storage.persistence import SessionFormatError, UnsafeFileError, sha256_file

SWEEP = dict(lams=(0.0, 0.1, 1.0, 10.0), epochs=2, batch_size=64, seed=0, tolerance=1.0)


def sweep_task():
    """A fresh seeded classifier, 600 digits as D, 30 held-out 3s labelled 8 as D_f."""
    from defuse_widgets.data import load_digits8
    from defuse_widgets.models import MnistCNN

    data = load_digits8()
    torch.manual_seed(0)
    clf = MnistCNN(1, 8, 10)
    threes = data.X_test[data.y_test == 3]
    X_f, y_f = threes[:30], torch.full((30,), 8)
    evals = {"validation": (data.X_val, data.y_val), "region_validation": (X_f, y_f)}
    return clf, data.X_train[:600], data.y_train[:600], X_f, y_f, evals


def run_sweep(checkpoint_dir, callbacks=(), **kw):
    clf, X, y, X_f, y_f, evals = sweep_task()
    return Corrector(**{**SWEEP, **kw}, checkpoint_dir=checkpoint_dir,
                     callbacks=callbacks).fit(clf, X, y, X_f, y_f, eval_sets=evals)


CHILD = textwrap.dedent("""
    import sys, time
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_sweep_checkpoints import run_sweep
    from defuse_widgets.callbacks import Callback
    torch.set_num_threads(1)

    class HangInSecondLam(Callback):
        def on_lam_end(self, corrector, *, result, **kw):
            print("finished", result["lam"], flush=True)

        def on_batch_end(self, corrector, *, batch, **kw):
            if len(corrector.results_) == 1 and batch == 3:   # mid-way through λ #2
                print("mid", flush=True)
                time.sleep(600)

    run_sweep(sys.argv[2], callbacks=[HangInSecondLam()])
    print("not killed", flush=True)
""")


class Events(Callback):
    def __init__(self):
        self.events = []

    def on_lam_begin(self, corrector, *, lam, **kw):
        self.events.append(("begin", lam, kw.get("resumed", False)))

    def on_epoch_end(self, corrector, *, record, **kw):
        self.events.append(("epoch", record["lam"], record["epoch"]))

    def on_lam_end(self, corrector, *, result, **kw):
        self.events.append(("end", result["lam"], kw.get("resumed", False)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_sweep(tmp_path_factory.mktemp("full"))


def _assert_same_sweep(a, b):
    assert [r["lam"] for r in a.results_] == [r["lam"] for r in b.results_]
    for ra, rb in zip(a.results_, b.results_):
        assert ra.keys() == rb.keys()
        assert ra == pytest.approx(rb, abs=1e-6)
    assert [r["epoch"] for r in a.history_] == [r["epoch"] for r in b.history_]
    assert a.best_["lam"] == b.best_["lam"]
    sa, sb = a.best_model_.state_dict(), b.best_model_.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5) for k in sa)


def test_sigkill_mid_sweep_resumes_from_last_finished_lambda(tmp_path, uninterrupted):
    folder = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(Path(__file__).parent),
                             str(folder)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.strip() == "mid":
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert lines == ["finished 0.0", "mid"]
    record = json.loads((folder / "defuse_sweep.json").read_text())
    assert list(record["finished"]) == ["0"]                 # λ #2 was killed mid-way
    assert not (folder / "defuse_lam_1.pt").exists()

    events = Events()
    resumed = run_sweep(folder, callbacks=[events])
    assert resumed.resumed_ == [0]                           # λ #1 was not trained again
    assert events.events[:4] == [("begin", 0.0, True), ("epoch", 0.0, 1), ("epoch", 0.0, 2),
                                 ("end", 0.0, True)]
    assert ("begin", 0.1, False) in events.events
    _assert_same_sweep(resumed, uninterrupted)
    assert resumed.fingerprint_ == uninterrupted.fingerprint_
    record = json.loads((folder / "defuse_sweep.json").read_text())
    assert list(record["finished"]) == ["0", "1", "2", "3"]
    again = run_sweep(folder)                                # all finished: nothing retrained
    assert again.resumed_ == [0, 1, 2, 3]
    _assert_same_sweep(again, uninterrupted)


def test_stop_then_fit_again_continues_the_sweep(tmp_path, uninterrupted):
    class StopInThirdLam(Callback):
        def on_batch_end(self, corrector, **kw):
            if len(corrector.results_) == 2:
                corrector.stop()

    stopped = run_sweep(tmp_path, callbacks=[StopInThirdLam()])
    assert stopped.cancelled_ and len(stopped.results_) == 2
    resumed = run_sweep(tmp_path)
    assert resumed.resumed_ == [0, 1] and not resumed.cancelled_
    _assert_same_sweep(resumed, uninterrupted)


def test_other_settings_or_data_start_over_and_archive_the_old_sweep(tmp_path):
    first = run_sweep(tmp_path, lams=(0.0, 1.0), epochs=1)
    assert first.resumed_ == []
    other = run_sweep(tmp_path, lams=(0.0, 1.0), epochs=1, lr=2e-3)   # other settings
    assert other.resumed_ == [] and other.fingerprint_ != first.fingerprint_
    archived = list((tmp_path / "archive").iterdir())
    assert len(archived) == 1
    assert {p.name for p in archived[0].iterdir()} == {
        "defuse_sweep.json", "defuse_lam_0.pt", "defuse_lam_1.pt"}

    clf, X, y, X_f, y_f, evals = sweep_task()
    y_f = torch.full_like(y_f, 5)                                       # other data
    c = Corrector(lams=(0.0, 1.0), epochs=1, lr=2e-3, batch_size=64, tolerance=1.0,
                  checkpoint_dir=tmp_path).fit(clf, X, y, X_f, y_f, eval_sets=evals)
    assert c.resumed_ == [] and len(list((tmp_path / "archive").iterdir())) == 2

    fresh = run_sweep(tmp_path, lams=(0.0, 1.0), epochs=1, lr=2e-3, resume=False)
    assert fresh.resumed_ == [] and len(list((tmp_path / "archive").iterdir())) == 3


def test_damaged_checkpoint_is_retrained_not_loaded(tmp_path):
    full = run_sweep(tmp_path, lams=(0.0, 1.0), epochs=1)
    path = tmp_path / "defuse_lam_0.pt"
    path.write_bytes(path.read_bytes()[:100])                           # truncated
    again = run_sweep(tmp_path, lams=(0.0, 1.0), epochs=1)
    assert again.resumed_ == [1]
    _assert_same_sweep(again, full)


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    run_sweep(tmp_path, lams=(0.0,), epochs=1)
    marker = tmp_path / "pwned"
    path = tmp_path / "defuse_lam_0.pt"
    torch.save({"weight": _Exploit(marker)}, path)
    record = json.loads((tmp_path / "defuse_sweep.json").read_text())
    record["finished"]["0"].update(size=path.stat().st_size, sha256=sha256_file(path))
    (tmp_path / "defuse_sweep.json").write_text(json.dumps(record))  # a forged record
    with pytest.raises(UnsafeFileError, match="defuse_lam_0.pt.*run code"):
        run_sweep(tmp_path, lams=(0.0,), epochs=1)
    assert not marker.exists()


def test_forged_record_cannot_point_outside_the_folder(tmp_path):
    run_sweep(tmp_path / "ck", lams=(0.0,), epochs=1)
    record = json.loads((tmp_path / "ck" / "defuse_sweep.json").read_text())
    record["finished"]["0"]["file"] = "../elsewhere.pt"
    (tmp_path / "ck" / "defuse_sweep.json").write_text(json.dumps(record))
    with pytest.raises(UnsafeFileError, match=r"'\.\.'"):
        run_sweep(tmp_path / "ck", lams=(0.0,), epochs=1)


def test_unreadable_record_is_a_clear_error(tmp_path):
    run_sweep(tmp_path, lams=(0.0,), epochs=1)
    (tmp_path / "defuse_sweep.json").write_text('{"format_version": 1, "fing')
    with pytest.raises(SessionFormatError, match="defuse_sweep.json.*not valid JSON"):
        run_sweep(tmp_path, lams=(0.0,), epochs=1)
    assert run_sweep(tmp_path, lams=(0.0,), epochs=1, resume=False).resumed_ == []


@pytest.mark.parametrize("kw, exc, match", [
    (dict(resume="yes"), TypeError, "resume must be True or False"),
    (dict(name="../x"), ValueError, "name must be a non-empty identifier"),
])
def test_bad_resume_parameters(tmp_path, kw, exc, match):
    with pytest.raises(exc, match=match):
        run_sweep(tmp_path, lams=(0.0,), epochs=1, **kw)


class _Exploit:
    """Unpickling this would create ``marker``: the payload a hostile checkpoint carries."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_fingerprint_hashes_batchnorm_counters_and_sees_their_change():
    from defuse_widgets.storage.sweep_checkpoints import fingerprint

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    X = torch.rand(4, 1, 8, 8)
    before = fingerprint({"lams": [1.0]}, model, {"X": X})
    assert before == fingerprint({"lams": [1.0]}, model, {"X": X})
    model.train()(X)    # one forward pass bumps num_batches_tracked (a 0-d int64 tensor)
    assert fingerprint({"lams": [1.0]}, model, {"X": X}) != before
