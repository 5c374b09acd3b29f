"""Atomic writes, loaders that never run code from a file, and contained paths."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from defuse_widgets.storage import manifest as manifest_io
from defuse_widgets.storage import persistence
from defuse_widgets.storage.persistence import SessionFormatError, UnsafeFileError


class Exploit:
    """Unpickling this creates ``marker``: the payload a hostile file would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a loader ran code from a file"


def evil_pt(path, marker):
    torch.save({"weight": torch.zeros(2), "extra": Exploit(marker)}, path)
    return path


def evil_npz(path, marker):
    with open(path, "wb") as f:
        np.savez(f, X_f=np.array([Exploit(marker)], dtype=object), y_f=np.zeros(1, np.int64))
    return path


def raw_pickle(path, marker):
    path.write_bytes(pickle.dumps(Exploit(marker)))
    return path


# ------------------------------------------------------------------ atomic writes
def test_failed_write_leaves_the_previous_file(tmp_path):
    path = persistence.save_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(RuntimeError):
        with persistence.atomic_write(path) as f:
            f.write(b'{"v": 2, "half')
            raise RuntimeError("crash mid-save")
    assert persistence.load_json(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]   # no temp file left


def test_sigkill_during_repeated_saves_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "big.npz"
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from defuse_widgets.storage.persistence import save_npz
        for i in range(10_000):
            save_npz(sys.argv[1], {"x": np.full(400_000, i, dtype=np.int64)})
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if int(line) >= 3:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    x = persistence.load_npz(path, required=["x"])["x"]
    assert x.shape == (400_000,) and len(np.unique(x)) == 1 and x[0] >= 3


def test_save_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match=r"arrays\['a'\] must hold numbers"):
        persistence.save_npz(tmp_path / "a.npz", {"a": np.array([{}], dtype=object)})
    assert not (tmp_path / "a.npz").exists()


# -------------------------------------------------------------- untrusted files
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("make", [evil_pt, raw_pickle])
def test_load_state_dict_refuses_code(tmp_path, marker, make):
    path = make(tmp_path / "model.pt", marker)
    with pytest.raises(UnsafeFileError, match=r"model\.pt.*run code"):
        persistence.load_state_dict(path)


@pytest.mark.parametrize("make", [evil_npz, raw_pickle])
def test_load_npz_refuses_pickles(tmp_path, marker, make):
    path = make(tmp_path / "arrays.npz", marker)
    with pytest.raises(UnsafeFileError, match=r"arrays\.npz.*pickle"):
        persistence.load_npz(path)


def test_every_package_loader_refuses_code(tmp_path, marker):
    from defuse_widgets.models import pretrained
    from defuse_widgets.stages import failure_data
    from defuse_widgets.stages.latent_map import LatentMap
    from defuse_widgets.workflow.session import Session

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("classifier", "vae", "oracle"):
        evil_pt(weights / f"mnist5k_{name}.pt", marker)
    with pytest.raises(UnsafeFileError, match="mnist5k_classifier.pt"):
        pretrained.load_pretrained(weights_dir=weights)
    with pytest.raises(UnsafeFileError, match="X_f.npz"):
        failure_data.load_failure_data(evil_npz(tmp_path / "X_f.npz", marker))
    with pytest.raises(UnsafeFileError, match="map.npz"):
        LatentMap.load(evil_npz(tmp_path / "map.npz", marker))
    folder = tmp_path / "s"
    folder.mkdir()
    names = ("adversarial.npz", "regions.npz", "latent_map.npz")
    for name in names:   # planted and listed, as if the manifest had been forged too
        evil_npz(folder / name, marker)
    evil_pt(folder / "corrected_classifier.pt", marker)
    manifest_io.record_files(folder, {n: "x" for n in (*names, "corrected_classifier.pt")})
    session = Session(folder)
    with pytest.raises(UnsafeFileError, match="adversarial.npz"):
        session.load_adversarial()
    with pytest.raises(UnsafeFileError, match="regions.npz"):
        session.load_regions()
    with pytest.raises(UnsafeFileError, match="latent_map.npz"):
        session.load_latent_map()
    with pytest.raises(UnsafeFileError, match="corrected_classifier.pt"):
        session.folder.load("corrected_classifier.pt")


@pytest.mark.parametrize("content, match", [
    (b"", "truncated or corrupted"),
    (b"PK\x03\x04garbage", "truncated or corrupted"),
])
def test_damaged_files_give_clear_errors(tmp_path, content, match):
    for name, load in (("a.npz", persistence.load_npz), ("m.pt", persistence.load_state_dict)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SessionFormatError, match=f"{name}.*{match}"):
            load(tmp_path / name)


def test_truncated_checkpoint_and_missing_keys(tmp_path):
    path = persistence.save_state_dict(tmp_path / "m.pt", torch.nn.Linear(3, 2).state_dict())
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(SessionFormatError, match=r"m\.pt.*truncated or corrupted"):
        persistence.load_state_dict(path)
    persistence.save_npz(tmp_path / "a.npz", {"x": np.zeros(3)})
    with pytest.raises(SessionFormatError, match=r"a\.npz.*missing \['y'\]"):
        persistence.load_npz(tmp_path / "a.npz", required=["x", "y"])
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(SessionFormatError, match="must hold a state_dict"):
        persistence.load_state_dict(tmp_path / "list.pt")
    with pytest.raises(SessionFormatError, match="missing"):
        persistence.load_json(tmp_path / "nothing.json")


# --------------------------------------------------------------------- paths
@pytest.mark.parametrize("relative, match", [
    ("../outside.npz", "'..'"), ("a/../../b", "'..'"), ("/etc/passwd", "absolute"),
    ("", "non-empty"),
])
def test_paths_that_leave_the_folder_are_rejected(tmp_path, relative, match):
    with pytest.raises(UnsafeFileError, match=match):
        persistence.resolve_inside(tmp_path, relative)


def test_symlink_out_of_the_folder_is_rejected(tmp_path):
    root, outside = tmp_path / "session", tmp_path / "secret.npz"
    root.mkdir()
    persistence.save_npz(outside, {"x": np.zeros(2)})
    (root / "adversarial.npz").symlink_to(outside)
    (root / "inner.npz").symlink_to(root / "real.npz")
    with pytest.raises(UnsafeFileError, match="symlink"):
        persistence.resolve_inside(root, "adversarial.npz")
    assert persistence.resolve_inside(root, "inner.npz") == root / "inner.npz"   # inside is fine
    assert persistence.resolve_inside(root, "sub/x.npz") == root / "sub" / "x.npz"
