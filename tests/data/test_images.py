"""Tests of defuse_widgets.data.images: image folders, split folders, .npz files, Datasets.

Every test writes real files with Pillow or numpy under ``tmp_path``; every
bad input must raise a ValueError naming the file, folder or key, and leave
``tmp_path`` as the test wrote it.
"""
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from defuse_widgets.data import DataSplits, ImageDataError, load_images

CLASSES = ("cat", "dog", "eel")


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _tree(root, *, n=12, shape=(8, 8, 3), classes=CLASSES, seed=0):
    """``root/<class>/<i>.png``; returns {(class, i): pixels (C, H, W)}."""
    rng, written = np.random.default_rng(seed), {}
    for c in classes:
        for i in range(n):
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            _write(root / c / f"{i}.png", arr)
            written[c, i] = arr.transpose(2, 0, 1) if arr.ndim == 3 else arr[None]
    return written


def _listing(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))
                  for d, _, files in os.walk(root) for f in files)


def _refused(tmp_path, path, *fragments, **kw):
    """load_images(path) raises an ImageDataError whose message matches every regex fragment;
    nothing is written.
    """
    before = _listing(tmp_path)
    with pytest.raises(ImageDataError) as info:
        load_images(path, **kw)
    assert isinstance(info.value, ValueError)
    for fragment in fragments:
        assert re.search(fragment, str(info.value)), (fragment, str(info.value))
    assert _listing(tmp_path) == before
    return str(info.value)


def _rows(X):
    return {x.numpy().tobytes() for x in X}


# --------------------------------------------------------------------------- folders

def test_image_folder_reads_uint8_images_with_class_names(tmp_path):
    written = _tree(tmp_path / "pets")
    (tmp_path / "pets" / "README.txt").write_text("not an image")
    (tmp_path / "pets" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "pets" / "dog" / "notes.csv").write_text("a,b")
    data = load_images(tmp_path / "pets")
    assert data.name == "pets" and data.class_names == CLASSES
    assert data.X_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert data.image_shape == (3, 8, 8)
    # stratified 0.7 / 0.1 / 0.2 of 12 per class: 8 / 2 / 2 (rounded per class)
    for y, k in ((data.y_train, 8), (data.y_val, 2), (data.y_test, 2)):
        assert torch.bincount(y, minlength=3).tolist() == [k] * 3
    X = torch.cat([data.X_train, data.X_val, data.X_test])
    y = torch.cat([data.y_train, data.y_val, data.y_test])
    assert _rows(X) == {a.tobytes() for a in written.values()}
    for x, label in zip(X, y):   # each image sits under its own class's label
        assert any(np.array_equal(x.numpy(), written[CLASSES[label], i]) for i in range(12))


def test_split_is_seeded_and_stratified(tmp_path):
    _tree(tmp_path)
    a, b, c = (load_images(tmp_path, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert _rows(a.X_test) != _rows(c.X_test)
    assert not _rows(a.X_train) & _rows(a.X_test) and not _rows(a.X_val) & _rows(a.X_test)
    d = load_images(tmp_path, splits=(0.5, 0.25, 0.25))
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (18, 9, 9)


def test_greyscale_and_colour_modes(tmp_path):
    _tree(tmp_path / "grey", shape=(6, 5))
    assert load_images(tmp_path / "grey").image_shape == (1, 6, 5)
    rng = np.random.default_rng(0)
    for c in CLASSES:   # RGBA and palette images become RGB
        for i in range(4):
            _write(tmp_path / "mixed" / c / f"a{i}.png",
                   rng.integers(0, 256, (6, 6, 4), dtype=np.uint8))
            pal = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).convert("P")
            pal.save(tmp_path / "mixed" / c / f"p{i}.gif")
    data = load_images(tmp_path / "mixed", splits=(0.5, 0.25, 0.25))
    assert data.image_shape == (3, 6, 6) and data.X_train.dtype == torch.uint8


def test_split_folders_are_kept(tmp_path):
    written = {split: _tree(tmp_path / "s" / split, n=n, seed=k)
               for k, (split, n) in enumerate((("train", 5), ("valid", 2), ("test", 3)))}
    (tmp_path / "s" / "LICENSE").write_text("x")
    data = load_images(tmp_path / "s")
    assert data.class_names == CLASSES
    for X, y, split in ((data.X_train, data.y_train, "train"), (data.X_val, data.y_val, "valid"),
                        (data.X_test, data.y_test, "test")):
        assert _rows(X) == {a.tobytes() for a in written[split].values()}
        assert torch.bincount(y).tolist() == [len(X) // 3] * 3
    _refused(tmp_path, tmp_path / "s", "splits", splits=(0.6, 0.2, 0.2))


def test_split_folders_must_share_classes(tmp_path):
    _tree(tmp_path / "train")
    _tree(tmp_path / "val")
    _tree(tmp_path / "test", classes=("cat", "dog"))
    _refused(tmp_path, tmp_path, "'test'", r"\['eel'\]")


def test_split_folders_must_all_be_there(tmp_path):
    _tree(tmp_path / "train")
    _tree(tmp_path / "test")
    _refused(tmp_path, tmp_path, r"\['val'\]")


# --------------------------------------------------------------------------- bad folders

def test_mixed_sizes_name_both_files_and_shapes(tmp_path):
    _tree(tmp_path)
    _write(tmp_path / "dog" / "big.png", np.zeros((9, 8, 3), np.uint8))
    _refused(tmp_path, tmp_path, "dog/big.png is 3x9x8", r"but cat/\d+\.png is 3x8x8")


def test_mixed_channels_are_an_error(tmp_path):
    _tree(tmp_path)
    _write(tmp_path / "eel" / "grey.png", np.zeros((8, 8), np.uint8))
    _refused(tmp_path, tmp_path, "eel/grey.png is 1x8x8", r"but cat/\d+\.png is 3x8x8")


def test_unreadable_image_is_named(tmp_path):
    _tree(tmp_path)
    (tmp_path / "dog" / "broken.png").write_text("this is not a png")
    _refused(tmp_path, tmp_path, "dog/broken.png")
    (tmp_path / "dog" / "broken.png").write_bytes(
        (tmp_path / "dog" / "0.png").read_bytes()[:40])   # truncated
    _refused(tmp_path, tmp_path, "dog/broken.png")


def test_sixteen_bit_image_is_refused(tmp_path):
    _tree(tmp_path, shape=(8, 8))
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "cat" / "deep.png")
    _refused(tmp_path, tmp_path, "cat/deep.png", "8-bit")


def test_class_folder_without_images_is_named(tmp_path):
    _tree(tmp_path)
    (tmp_path / "fox").mkdir()
    (tmp_path / "fox" / "README.txt").write_text("soon")
    _refused(tmp_path, tmp_path, "class folder 'fox'")


def test_fewer_than_two_classes(tmp_path):
    _tree(tmp_path, classes=("cat",))
    _refused(tmp_path, tmp_path, "at least 2 class folders", r"\['cat'\]")


def test_empty_or_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    _refused(tmp_path, tmp_path / "empty", "empty")
    _refused(tmp_path, tmp_path / "nowhere", "nowhere", "does not exist")
    _refused(tmp_path, "", "does not exist")


def test_loose_images_and_bad_splits(tmp_path):
    _tree(tmp_path / "a")
    _write(tmp_path / "a" / "stray.png", np.zeros((8, 8, 3), np.uint8))
    _refused(tmp_path, tmp_path / "a", "stray.png")
    _tree(tmp_path / "b")
    for bad in ((0.5, 0.5), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0)):
        _refused(tmp_path, tmp_path / "b", "splits", splits=bad)
    _refused(tmp_path, tmp_path / "b", "validation part is empty", splits=(0.97, 0.01, 0.02))


# --------------------------------------------------------------------------- npz

def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_layouts_and_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (30, 3, 5, 6), dtype=np.uint8)
    y = np.arange(30) % 3
    first = load_images(_npz(tmp_path / "first.npz", X=X, y=y))
    last = load_images(_npz(tmp_path / "last.npz", X=X.transpose(0, 2, 3, 1), y=y))
    assert first.name == "first" and first.image_shape == last.image_shape == (3, 5, 6)
    assert torch.equal(first.X_train, last.X_train) and first.X_train.dtype == torch.uint8
    assert first.class_names == ("0", "1", "2")
    grey = load_images(_npz(tmp_path / "grey.npz", X=X[:, 0], y=y, class_names=["a", "b", "c"]))
    assert grey.image_shape == (1, 5, 6) and grey.class_names == ("a", "b", "c")
    exact = load_images(_npz(tmp_path / "exact.npz", X=X.astype(np.float32) / 255, y=y))
    assert exact.X_train.dtype == torch.uint8 and torch.equal(exact.X_train, first.X_train)
    soft = load_images(_npz(tmp_path / "soft.npz", X=X.astype(np.float64) / 256, y=y))
    assert soft.X_train.dtype == torch.float32 and float(soft.X_train.max()) < 1


def test_npz_given_split_is_kept(tmp_path):
    rng = np.random.default_rng(1)
    parts = {k: (rng.integers(0, 256, (n, 4, 4), dtype=np.uint8), np.arange(n) % 2)
             for k, n in (("", 10), ("_val", 4), ("_test", 6))}
    path = _npz(tmp_path / "given.npz", **{f"{a}{k}": v for k, pair in parts.items()
                                           for a, v in zip("Xy", pair)})
    data = load_images(path)
    assert torch.equal(data.X_val[:, 0], torch.from_numpy(parts["_val"][0]))
    assert torch.equal(data.y_test, torch.from_numpy(parts["_test"][1]))
    _refused(tmp_path, path, "splits", splits=(0.5, 0.25, 0.25))


def test_npz_missing_keys_are_listed(tmp_path):
    path = _npz(tmp_path / "bad.npz", images=np.zeros((4, 4, 4), np.uint8), y=np.arange(4))
    _refused(tmp_path, path, "'X' and 'y'", r"\['images', 'y'\]")
    X, y = np.zeros((6, 4, 4), np.uint8), np.arange(6) % 2
    path = _npz(tmp_path / "half.npz", X=X, y=y, X_val=X)
    _refused(tmp_path, path, "X_val, y_val, X_test and y_test", r"\['X_val'\]")
    path = _npz(tmp_path / "val_only.npz", X=X, y=y, X_val=X, y_val=y)
    _refused(tmp_path, path, "X_test", r"\['X_val', 'y_val'\]")


def test_npz_shapes_must_agree(tmp_path):
    X = np.zeros((6, 4, 4), np.uint8)
    _refused(tmp_path, _npz(tmp_path / "a.npz", X=X, y=np.arange(5) % 2),
             "'y'", "length 5", "6 images")
    _refused(tmp_path, _npz(tmp_path / "b.npz", X=X, y=np.arange(6) % 2, X_val=X[:, :3],
                            y_val=np.arange(6) % 2, X_test=X, y_test=np.arange(6) % 2),
             "X_val", "1x3x4", "1x4x4")
    _refused(tmp_path, _npz(tmp_path / "c.npz", X=np.zeros((6, 2, 4, 4)), y=np.arange(6) % 2),
             "'X'", r"\(6, 2, 4, 4\)")


def test_npz_pixels_and_labels_out_of_range(tmp_path):
    X, y = np.zeros((6, 4, 4), np.float32), np.arange(6) % 2
    _refused(tmp_path, _npz(tmp_path / "a.npz", X=X + 2, y=y), "'X'", r"\[0, 1\]", "2")
    _refused(tmp_path, _npz(tmp_path / "b.npz", X=X, y=np.array([0, 1, 0, 1, 0, 5]),
                            class_names=["a", "b"]), r"\['y'\]", "label 5", "index 5")
    _refused(tmp_path, _npz(tmp_path / "c.npz", X=X, y=np.array([0, 2, 0, 2, 0, 2])),
             r"\['y'\]", r"\[1\]")
    _refused(tmp_path, _npz(tmp_path / "d.npz", X=X, y=-y), r"\['y'\]", "label -1")
    _refused(tmp_path, _npz(tmp_path / "e.npz", X=X, y=y * 0), "at least 2 classes")
    (tmp_path / "f.npz").write_text("not a zip")
    _refused(tmp_path, tmp_path / "f.npz", "f.npz")


# --------------------------------------------------------------------------- Datasets

class _Items(torch.utils.data.Dataset):
    def __init__(self, items, classes=None):
        self.items = items
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_from_dataset_pil_and_tensors(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(30)]
    pil = _Items([(Image.fromarray(a), i % 3) for i, a in enumerate(arrays)], list(CLASSES))
    data = DataSplits.from_dataset(pil, name="pets", seed=1)
    assert data.X_train.dtype == torch.uint8 and data.image_shape == (3, 5, 5)
    assert data.class_names == CLASSES and data.name == "pets"
    floats = _Items([(torch.from_numpy(a).permute(2, 0, 1).float() / 255, torch.tensor(i % 3))
                     for i, a in enumerate(arrays)])
    again = DataSplits.from_dataset(floats, seed=1)
    assert again.X_train.dtype == torch.uint8 and torch.equal(again.X_train, data.X_train)
    assert again.class_names == ("0", "1", "2")
    split = DataSplits.from_dataset(pil, val=_Items(pil.items[:6]), test=_Items(pil.items[6:9]))
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (30, 6, 3)
    with pytest.raises(ValueError, match="splits"):
        DataSplits.from_dataset(pil, val=pil, test=pil, splits=(0.5, 0.25, 0.25))


def test_from_dataset_errors_name_the_index():
    good = [(np.zeros((3, 4, 4), np.uint8), i % 2) for i in range(8)]
    with pytest.raises(ImageDataError, match=r"ds\[5\] is 1x4x4 but ds\[0\] is 3x4x4"):
        DataSplits.from_dataset(_Items(good[:5] + [(np.zeros((4, 4), np.uint8), 1)]))
    normalised = [(torch.full((3, 4, 4), -0.5), i % 2) for i in range(8)]
    with pytest.raises(ImageDataError, match=r"ds\[0\].*\[0, 1\]"):
        DataSplits.from_dataset(_Items(normalised))
    with pytest.raises(ImageDataError, match=r"labels of ds.*label 2 at index 1"):
        DataSplits.from_dataset(_Items([good[0], (good[1][0], 2)] + good[2:]),
                                class_names=["a", "b"])
    with pytest.raises(ImageDataError, match=r"ds\[3\].*integer label"):
        DataSplits.from_dataset(_Items(good[:3] + [(good[3][0], 0.5)]))
