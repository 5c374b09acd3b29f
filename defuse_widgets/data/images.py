"""Your own images as :class:`~defuse_widgets.data.DataSplits`: folders, ``.npz`` files, Datasets.

:func:`load_images` reads

* an ImageFolder tree ``root/<class>/<image>``, one sub-folder per class
  (class names are the sorted folder names; images may sit in nested
  folders below their class folder);
* a split tree ``root/{train,val,test}/<class>/<image>`` (``valid`` and
  ``validation`` name the validation folder too), whose split is kept;
* an ``.npz`` file with arrays ``X`` and ``y`` and optionally ``X_val``,
  ``y_val``, ``X_test``, ``y_test`` and ``class_names``;

``DataSplits.from_dataset`` (:func:`dataset_splits`) reads a
``torch.utils.data.Dataset`` of ``(image, label)`` pairs. Images are stored
as uint8 tensors (n, C, H, W), a quarter of float32's memory, and divided by
255 batch by batch where a model takes them
(:func:`~defuse_widgets.models.inference.to_unit`). A source without its own
split is split seeded and stratified (train, validation, test = 0.7, 0.1, 0.2
unless ``splits`` says otherwise).

Rules
-----
Pixels
    Greyscale images (Pillow modes ``1``, ``L``, ``LA``) give C = 1; every
    other 8-bit mode (``RGB``, ``RGBA``, palette ``P``, ``CMYK``, ...) is
    converted to RGB, C = 3. 16- and 32-bit images (modes ``I``, ``I;16``,
    ``F``) are refused. All images must have one shape (C, H, W): a
    greyscale and an RGB image in one source are an error, not converted.
Files
    Image files are those with the extensions in :data:`IMAGE_EXTENSIONS`
    (any case). Other files (``README.txt``, ``labels.csv``) and hidden files
    and folders (names starting with ``.``, such as ``.DS_Store`` or macOS's
    ``._x.png``) are skipped. A file with an image extension that Pillow
    cannot read is an error.
Arrays (``.npz``, Dataset items)
    A 2-D image (H, W) or 3-D array (n, H, W) is greyscale. With channels,
    the layout is channels-first when the channel axis before the spatial
    axes has size 1 or 3, otherwise channels-last when the last axis has
    size 1 or 3: (n, C, H, W) is read before (n, H, W, C). uint8 pixels are
    kept; other integer pixels must lie in 0..255 and become uint8; float
    pixels must lie in [0, 1], and become uint8 when every value is exactly
    k/255 (so nothing is lost), otherwise they are kept as float32 (for all
    splits of the source).
Labels
    With class names (``class_names`` in the file, the argument, or the
    Dataset's ``classes``), labels must be ``0 <= label < len(class_names)``;
    a class may be absent. Without them, the classes are ``0..K-1`` with
    K = largest label + 1, named ``"0"``, ``"1"``, ..., and every one of
    them must occur in the training labels (a gap would be a class the
    classifier never sees). At least 2 classes are needed.

Every problem raises :class:`ImageDataError`, a ``ValueError`` whose message
names the file, folder, key or index and shows what was expected and found.
Loading never writes a file.
"""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from defuse_widgets._validation import check_seed, describe
from defuse_widgets.data.splits import DataSplits, stratified_split

__all__ = ["DEFAULT_FRACTIONS", "IMAGE_EXTENSIONS", "ImageDataError", "dataset_splits",
           "load_images"]

#: File extensions read as images (compared in lower case).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif",
                              ".tiff", ".webp"})
#: Split folder names; the first is the split's own name.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"),
                 "test": ("test",)}
#: Train, validation and test shares of a source that brings no split.
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
_PART_NAMES = ("train", "validation", "test")
_GREY_MODES = frozenset({"1", "L", "LA", "La"})


class ImageDataError(ValueError):
    """Images, labels or a layout that cannot become :class:`DataSplits`.

    The message names the offending file, folder, key or index.
    """


def load_images(path: str | os.PathLike, *, splits: Sequence[float] | None = None,
                seed: int = 0, name: str | None = None) -> DataSplits:
    """Read an image folder, a split folder or an ``.npz`` file as DataSplits.

    Parameters
    ----------
    path : str or PathLike
        A folder ``path/<class>/<image>``, a folder
        ``path/{train,val,test}/<class>/<image>`` (``valid`` or
        ``validation`` for ``val``), or an ``.npz`` file holding ``X``
        (n, H, W), (n, C, H, W) or (n, H, W, C) with C in {1, 3}, ``y`` (n,),
        and optionally ``X_val``/``y_val`` and ``X_test``/``y_test`` (both
        pairs or neither) and ``class_names``. The module docstring gives
        the rules for pixels, files and labels.
    splits : tuple of 3 floats, optional
        Train, validation and test fractions, each > 0, summing to 1, for a
        source without its own split; default ``(0.7, 0.1, 0.2)``. Refused
        when the source brings its split (split folders, ``X_val``/``X_test``).
    seed : int, default=0
        Seed of the stratified split: the same seed gives the same split.
    name : str, optional
        Dataset name; default the folder's name or the file's stem.

    Returns
    -------
    DataSplits
        Images as uint8 tensors of shape (n, C, H, W) (float32 in [0, 1] only
        for float arrays that are not exactly k/255), labels int64 (n,),
        class names.

    Raises
    ------
    ImageDataError
        A ``ValueError`` naming the file, folder or key at fault: a missing
        or empty path, a file Pillow cannot read, images of different shapes
        or channel counts, a class folder without images, fewer than two
        classes, split folders with different classes, labels out of range,
        arrays whose lengths or shapes disagree, missing ``X``/``y``.

    Examples
    --------
    >>> data = load_images("my_images/")   # doctest: +SKIP
    >>> data.X_train.dtype, data.class_names   # doctest: +SKIP
    (torch.uint8, ('cat', 'dog'))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a folder or an .npz "
                        f"file; got {describe(path)}.")
    root = Path(path)
    if not str(path) or not root.exists():
        raise ImageDataError(f"path must name an existing folder or .npz file; {str(path)!r} "
                             "does not exist.")
    fractions = _check_fractions(splits)
    seed = check_seed("seed", seed)
    if name is None:
        name = root.stem if root.is_file() else root.resolve().name
    elif not isinstance(name, str):
        raise TypeError(f"name must be a str; got {describe(name)}.")
    if root.is_file():
        return _load_npz(root, fractions, seed, name)
    return _load_tree(root, fractions, seed, name)


def dataset_splits(ds: Any, *, splits: Sequence[float] | None = None, seed: int = 0,
                   class_names: Sequence[str] | None = None, name: str = "dataset",
                   val: Any = None, test: Any = None) -> DataSplits:
    """DataSplits of a Dataset of ``(image, label)`` pairs.

    The work of :meth:`DataSplits.from_dataset
    <defuse_widgets.data.DataSplits.from_dataset>`, which documents the
    parameters; the module docstring gives the rules. Errors name the
    Dataset and index: ``ds[7] is 1x28x28 but ds[0] is 3x32x32``.
    """
    seed = check_seed("seed", seed)
    fractions = _check_fractions(splits)
    if (val is None) != (test is None):
        raise ImageDataError("val and test must be given together or not at all; got "
                             f"val={describe(val)} and test={describe(test)}.")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {describe(name)}.")
    if class_names is None and hasattr(ds, "classes"):
        class_names = list(ds.classes)
    if val is not None:
        _refuse_fractions(fractions, "ds with val and test")
    sources = {"ds": ds} if val is None else {"ds": ds, "val": val, "test": test}
    ref: dict = {}
    arrays = {key: _dataset_arrays(key, d, ref) for key, d in sources.items()}
    Xs, ys = [a[0] for a in arrays.values()], [a[1] for a in arrays.values()]
    names = _class_names({f"labels of {k}": y for k, y in zip(sources, ys)},
                         class_names, "labels of ds", "class_names")
    Xs = _stored(Xs)
    if val is not None:
        return _splits(name, Xs, ys, names)
    return _split(name, Xs[0], ys[0], names, fractions, seed, "ds")


# ------------------------------------------------------------------ arguments
def _check_fractions(splits) -> tuple | None:
    if splits is None:
        return None
    msg = ("splits must be 3 fractions (train, validation, test), each > 0, summing to 1; "
           f"got {describe(splits)}.")
    try:
        fractions = tuple(float(f) for f in splits)
    except (TypeError, ValueError) as exc:
        raise ImageDataError(msg) from exc
    if (len(fractions) != 3 or not all(math.isfinite(f) and f > 0 for f in fractions)
            or abs(sum(fractions) - 1) > 1e-6):
        raise ImageDataError(msg)
    return fractions


def _refuse_fractions(fractions, source: str) -> None:
    if fractions is not None:
        raise ImageDataError(f"splits must be None for {source}: it brings its own "
                             f"train/validation/test split; got {fractions}.")


# ------------------------------------------------------------------ folder trees
def _load_tree(root: Path, fractions, seed: int, name: str) -> DataSplits:
    if not any(not _hidden(p) for p in root.iterdir()):
        raise ImageDataError(f"path {str(root)!r} must hold class folders of images (or "
                             "train, val and test folders of them); the folder is empty.")
    folders = _split_folders(root)
    if folders is None:
        files, y, names = _scan_classes(root, root)
        parts = stratified_split(y, fractions or DEFAULT_FRACTIONS, seed)
        _check_parts(parts, fractions, f"folder {str(root)!r}")
        lists = [([files[i] for i in p], y[p]) for p in parts]
    else:
        _refuse_fractions(fractions, f"the split folders of {str(root)!r}")
        lists, names = _scan_splits(folders, root)
    ref: dict = {}
    Xs = [_read_files(files, root, ref) for files, _ in lists]
    return _splits(name, Xs, [y for _, y in lists], names)


def _scan_splits(folders: dict, root: Path) -> tuple:
    """[(image paths, labels)] of train, val and test, and the class names they share."""
    scans = {split: _scan_classes(folder, root) for split, folder in folders.items()}
    names = scans["train"][2]
    for split, (_, _, other) in scans.items():
        missing, extra = sorted(set(names) - set(other)), sorted(set(other) - set(names))
        if missing or extra:
            diff = " and ".join(f"{what} {c}" for what, c in (("lacks", missing),
                                                              ("adds", extra)) if c)
            raise ImageDataError(f"split folder {folders[split].name!r} must hold the class "
                                 f"folders of {folders['train'].name!r}; it {diff}.")
    return [(files, y) for files, y, _ in scans.values()], names   # same sorted names


def _split_folders(root: Path) -> dict | None:
    """The split folders under ``root`` by split, or None when there are none."""
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not _hidden(d)]
    by_name = {d.name.lower(): d for d in subdirs}
    found = {split: [by_name[a] for a in aliases if a in by_name]
             for split, aliases in SPLIT_FOLDERS.items()}
    if not any(found.values()):
        return None
    for split, dirs in found.items():
        if len(dirs) > 1:
            raise ImageDataError(f"path {str(root)!r} must hold one {split} folder; got "
                                 f"{[d.name for d in dirs]}.")
    missing = [SPLIT_FOLDERS[s][0] for s, dirs in found.items() if not dirs]
    if missing:
        raise ImageDataError(
            f"path {str(root)!r} has split folders {[d[0].name for d in found.values() if d]} "
            f"but no {missing}: give train, val and test folders, or only class folders "
            "(then the images are split with splits=...).")
    used = {d[0] for d in found.values()}
    others = [d.name for d in subdirs if d not in used]
    if others:
        raise ImageDataError(f"path {str(root)!r} must hold only the split folders next to "
                             f"train, val and test; it also has folders {others}.")
    return {split: dirs[0] for split, dirs in found.items()}


def _hidden(p: Path) -> bool:
    return p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p) and p.is_file()


def _image_files(folder: Path) -> list:
    """Image files under ``folder``, nested folders included, hidden ones skipped, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath, f) for f in sorted(filenames) if _is_image(Path(dirpath, f)))
    return out


def _scan_classes(folder: Path, root: Path) -> tuple:
    """Image paths (list), labels (ndarray (n,), int64) and class names of one class tree."""
    loose = [p for p in sorted(folder.iterdir()) if _is_image(p)]
    if loose:
        raise ImageDataError(f"folder {_rel(folder, root)!r} must hold one sub-folder per "
                             f"class; it holds images itself, e.g. {_rel(loose[0], root)!r}.")
    classes = [d for d in sorted(folder.iterdir()) if d.is_dir() and not _hidden(d)]
    if len(classes) < 2:
        raise ImageDataError(f"folder {_rel(folder, root)!r} must hold at least 2 class "
                             f"folders; got {[d.name for d in classes]}.")
    files, labels = [], []
    for c, d in enumerate(classes):
        found = _image_files(d)
        if not found:
            raise ImageDataError(
                f"class folder {_rel(d, root)!r} must hold images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); it holds none.")
        files.extend(found)
        labels.extend([c] * len(found))
    return files, np.asarray(labels, dtype=np.int64), tuple(d.name for d in classes)


def _rel(p: Path, root: Path) -> str:
    """``p`` relative to ``root`` for messages; ``root`` itself as given."""
    return p.relative_to(root).as_posix() if p != root else str(root)


def _read_files(files: list, root: Path, ref: dict) -> np.ndarray:
    """Read ``files`` into one preallocated uint8 array of shape (n, C, H, W)."""
    stack = _Stack(len(files), ref)
    for i, f in enumerate(files):
        where = _rel(f, root)
        try:
            with Image.open(f) as im:
                pixels = _pil_pixels(im, where)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                Image.DecompressionBombError) as exc:
            if isinstance(exc, ImageDataError):
                raise
            raise ImageDataError(f"{where} must be an image Pillow can read; it raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        stack.put(i, pixels, where)
    return stack.out


def _pil_pixels(im, where: str) -> np.ndarray:
    """Pixels of a PIL image as a uint8 array of shape (C, H, W): greyscale C=1, else RGB."""
    if im.mode.startswith(("I", "F")):
        raise ImageDataError(f"{where} must be an 8-bit image; it has Pillow mode "
                             f"{im.mode!r} (16 or 32 bits per pixel).")
    if im.mode in _GREY_MODES:
        return np.asarray(im.convert("L") if im.mode != "L" else im)[None]
    arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    return arr.transpose(2, 0, 1)


class _Stack:
    """Images of one shape and dtype, written into an array allocated at the first one.

    ``ref`` is shared by the stacks of one source, so all its splits agree.
    """

    def __init__(self, n: int, ref: dict):
        self.n, self.ref, self.out = n, ref, None

    def put(self, i: int, pixels: np.ndarray, where: str) -> None:
        if not self.ref:
            self.ref.update(where=where, shape=pixels.shape, dtype=pixels.dtype)
        ref = self.ref
        if pixels.shape != ref["shape"]:
            hint = (" (greyscale and colour images are not mixed: save them in one mode)"
                    if pixels.shape[1:] == ref["shape"][1:] else "")
            raise ImageDataError(f"images must all have one shape: {where} is "
                                 f"{_fmt(pixels.shape)} but {ref['where']} is "
                                 f"{_fmt(ref['shape'])}{hint}.")
        if pixels.dtype != ref["dtype"]:
            raise ImageDataError(f"images must all have one pixel type: {where} is "
                                 f"{pixels.dtype} but {ref['where']} is {ref['dtype']}.")
        if self.out is None:
            self.out = np.empty((self.n, *ref["shape"]), dtype=ref["dtype"])
        self.out[i] = pixels


def _fmt(shape: tuple) -> str:
    return "x".join(map(str, shape))


# ------------------------------------------------------------------ npz files
_PAIRS = (("X", "y"), ("X_val", "y_val"), ("X_test", "y_test"))


def _load_npz(path: Path, fractions, seed: int, name: str) -> DataSplits:
    if path.suffix.lower() != ".npz":
        raise ImageDataError(f"path must be a folder or an .npz file; got file {str(path)!r}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            _check_npz_keys(keys, path)
            pairs = [p for p in _PAIRS if p[0] in keys]
            arrays = {k: f[k] for p in pairs for k in p}   # object arrays raise ValueError
            names = f["class_names"] if "class_names" in keys else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:   # not an npz
        if isinstance(exc, ImageDataError):
            raise
        raise ImageDataError(f"{path.name} must be an .npz file numpy can read; it raised "
                             f"{type(exc).__name__}: {exc}") from exc
    Xs = [_array_images(x, arrays[x], path.name) for x, _ in pairs]
    ys = [_array_labels(y, arrays[y], len(X), x, path.name) for (x, y), X in zip(pairs, Xs)]
    for (x, _), X in zip(pairs[1:], Xs[1:]):
        if X.shape[1:] != Xs[0].shape[1:]:
            raise ImageDataError(f"{path.name}: {x} must hold images shaped like X's; "
                                 f"{x} is (n, {_fmt(X.shape[1:])}) but X is "
                                 f"(n, {_fmt(Xs[0].shape[1:])}).")
    if names is not None:
        names = _npz_names(names, path.name)
    names = _class_names({f"{path.name}[{y!r}]": v for (_, y), v in zip(pairs, ys)},
                         names, f"{path.name}['y']", f"{path.name}['class_names']")
    Xs = _stored(Xs)
    if len(pairs) == 3:
        _refuse_fractions(fractions, f"{path.name} (it holds X_val and X_test)")
        return _splits(name, Xs, ys, names)
    return _split(name, Xs[0], ys[0], names, fractions, seed, path.name)


def _check_npz_keys(keys: set, path: Path) -> None:
    if not {"X", "y"} <= keys:
        raise ImageDataError(f"{path.name} must hold arrays 'X' and 'y'; it holds "
                             f"{sorted(keys)}.")
    given = [k for pair in _PAIRS[1:] for k in pair if k in keys]
    if given and len(given) != 4:
        raise ImageDataError(f"{path.name} must hold X_val, y_val, X_test and y_test "
                             f"together or none of them; it holds only {given}.")


def _npz_names(names: np.ndarray, file: str) -> tuple:
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise ImageDataError(f"{file}['class_names'] must be a 1-D array of strings; got "
                             f"{describe(names)}.")
    return tuple(str(n) for n in names)


# ------------------------------------------------------------------ arrays
def _array_images(key: str, X: np.ndarray, file: str) -> np.ndarray:
    """Images of an array as (n, C, H, W), uint8 or float (module docstring's rules)."""
    where = f"{file}[{key!r}]"
    X = _channels_first(X, where, batched=True)
    if len(X) == 0:
        raise ImageDataError(f"{where} must hold at least one image; got shape {X.shape}.")
    return np.ascontiguousarray(_pixel_values(X, where))


def _channels_first(X: np.ndarray, where: str, *, batched: bool) -> np.ndarray:
    """([n,] H, W), ([n,] C, H, W) or ([n,] H, W, C) as ([n,] C, H, W): the layout rule."""
    o = int(batched)   # the first axis of an image
    if X.ndim == o + 2:
        return np.expand_dims(X, o)
    if X.ndim == o + 3 and X.shape[o] not in (1, 3) and X.shape[-1] in (1, 3):
        return np.moveaxis(X, -1, o)
    if X.ndim != o + 3 or X.shape[o] not in (1, 3):
        n = "n, " if batched else ""
        raise ImageDataError(f"{where} must have shape ({n}H, W), ({n}C, H, W) or "
                             f"({n}H, W, C) with C in {{1, 3}}; got shape {X.shape}.")
    return X


def _pixel_values(X: np.ndarray, where: str) -> np.ndarray:
    """uint8 pixels as they are, other integers in 0..255 as uint8, floats in [0, 1]."""
    if X.dtype == np.uint8:
        return X
    if X.dtype.kind in "iu":
        lo, hi = int(X.min()), int(X.max())
        if lo < 0 or hi > 255:
            raise ImageDataError(f"{where} must hold integer pixels in 0..255; got values in "
                                 f"{lo}..{hi}.")
        return X.astype(np.uint8)
    if X.dtype.kind != "f":
        raise ImageDataError(f"{where} must hold uint8 or float pixels; got dtype {X.dtype}.")
    if not np.isfinite(X).all():
        raise ImageDataError(f"{where} must not contain NaN or inf.")
    lo, hi = float(X.min()), float(X.max())
    if lo < 0 or hi > 1:
        raise ImageDataError(f"{where} must hold float pixels in [0, 1]; got values in "
                             f"[{lo:.4g}, {hi:.4g}].")
    return X


def _stored(Xs: list) -> list:
    """uint8 when every array is uint8 or exactly k/255, else all float32 (as torch tensors)."""
    out = [X if X.dtype == np.uint8 else _exact_uint8(X) for X in Xs]
    if all(X is not None for X in out):
        return [torch.from_numpy(X) for X in out]
    return [torch.from_numpy(X).float().div_(255) if X.dtype == np.uint8
            else torch.from_numpy(X.astype(np.float32, copy=False)) for X in Xs]


def _exact_uint8(X: np.ndarray) -> np.ndarray | None:
    """X as uint8 when every value is exactly k/255 in X's dtype, else None."""
    k = np.rint(X * 255)
    if np.array_equal(k.astype(X.dtype) / X.dtype.type(255), X):
        return k.astype(np.uint8)
    return None


def _array_labels(key: str, y: np.ndarray, n: int, x_key: str, file: str) -> np.ndarray:
    where = f"{file}[{key!r}]"
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ImageDataError(f"{where} must be a 1-D array of integer labels; got "
                             f"{describe(y)}.")
    if len(y) != n:
        raise ImageDataError(f"{file}: {key!r} must have one label per image of {x_key!r}; "
                             f"{key} has length {len(y)} but {x_key} has {n} images.")
    return y.astype(np.int64)


def _class_names(ys: dict, class_names, train_key: str, names_key: str) -> tuple:
    """Check labels (name -> int64 array) against ``class_names`` and return the names."""
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        if len(set(class_names)) != len(class_names):
            raise ImageDataError(f"{names_key} must name each class once; got {class_names}.")
    for key, y in ys.items():
        k = len(class_names) if class_names is not None else None
        bad = np.flatnonzero((y < 0) | (y >= k if k is not None else False))
        if len(bad):
            allowed = f"in 0..{k - 1} (the {k} classes of {names_key})" if k else ">= 0"
            raise ImageDataError(f"{key} must hold labels {allowed}; got label "
                                 f"{int(y[bad[0]])} at index {int(bad[0])}.")
    if class_names is None:
        k = int(max(int(y.max()) for y in ys.values())) + 1
        missing = sorted(set(range(k)) - set(np.unique(ys[train_key]).tolist()))
        if missing:
            raise ImageDataError(
                f"{train_key} must hold every label 0..{k - 1} when no class names are "
                f"given; labels {missing[:10]} never occur (give class names to allow "
                "absent classes).")
        class_names = tuple(str(c) for c in range(k))
    if len(class_names) < 2:
        raise ImageDataError(f"{train_key} must hold at least 2 classes; got "
                             f"{len(class_names)}: {class_names}.")
    return class_names


# ------------------------------------------------------------------ Datasets
def _dataset_arrays(key: str, ds: Any, ref: dict) -> tuple:
    """Images (n, C, H, W) and labels (n,) of every item of a Dataset."""
    try:
        n = len(ds)
    except TypeError as exc:
        raise ImageDataError(f"{key} must be a map-style Dataset with len(); got "
                             f"{describe(ds)}.") from exc
    if n == 0:
        raise ImageDataError(f"{key} must hold at least one item; it is empty.")
    stack, labels = _Stack(n, ref), np.empty(n, dtype=np.int64)
    for i in range(n):
        item = ds[i]
        where = f"{key}[{i}]"
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ImageDataError(f"{where} must be an (image, label) pair; got "
                                 f"{describe(item)}.")
        stack.put(i, _item_pixels(item[0], where), where)
        labels[i] = _item_label(item[1], where)
    return stack.out, labels


def _item_pixels(image: Any, where: str) -> np.ndarray:
    """One Dataset image as (C, H, W): uint8, or float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        return _pil_pixels(image, where)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ImageDataError(f"{where} must hold a PIL image, a tensor or an ndarray; got "
                             f"{describe(image)}.")
    image = _pixel_values(_channels_first(image, where, batched=False), where)
    return image if image.dtype == np.uint8 else image.astype(np.float32, copy=False)


def _item_label(label: Any, where: str) -> int:
    arr = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if arr.size != 1 or arr.dtype.kind not in "iu":   # bool, float, str, several values
        raise ImageDataError(f"{where} must have an integer label; got {describe(label)}.")
    return int(arr.reshape(()))


# ------------------------------------------------------------------ assembling
def _check_parts(parts: list, fractions, source: str) -> None:
    for part, idx in zip(_PART_NAMES, parts):
        if len(idx) == 0:
            raise ImageDataError(
                f"{source} has too few images for splits={fractions or DEFAULT_FRACTIONS}: "
                f"its {part} part is empty.")


def _split(name: str, X: torch.Tensor, y: np.ndarray, names: tuple, fractions, seed: int,
           source: str) -> DataSplits:
    parts = stratified_split(y, fractions or DEFAULT_FRACTIONS, seed)
    _check_parts(parts, fractions, source)
    return _splits(name, [X[torch.from_numpy(p)] for p in parts], [y[p] for p in parts], names)


def _splits(name: str, Xs: list, ys: list, names: tuple) -> DataSplits:
    Xs = [torch.from_numpy(X) if isinstance(X, np.ndarray) else X for X in Xs]
    ys = [torch.as_tensor(np.asarray(y, dtype=np.int64)) for y in ys]
    return DataSplits(name, Xs[0], ys[0], Xs[1], ys[1], Xs[2], ys[2], tuple(names))
