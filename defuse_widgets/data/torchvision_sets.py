"""The paper's full datasets read through torchvision: MNIST, FashionMNIST, SVHN, GTSRB.

Splits follow appendix B of the Defuse paper:

* ``mnist`` / ``fashionmnist``: 1x28x28 images zero-padded to 1x32x32; the
  official training set is split (seeded, stratified) 11/12 train and 1/12
  validation (55,000 / 5,000 for MNIST); test is the official test set.
* ``svhn``: 3x32x32; the official test set is split in half (seeded, stratified)
  into validation and test (13,016 each in the paper).
* ``gtsrb``: 3xSxS with S = ``image_size`` (128 in the paper); the official test
  set is split in half into validation and test (6,315 each in the paper).

No file is downloaded unless ``download=True``.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from defuse_widgets._validation import check_choice, check_int, describe
from defuse_widgets.data.embedded import DIGIT_NAMES, pad_to
from defuse_widgets.data.splits import DataSplits, stratified_split

GTSRB_NAMES = (
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)",
    "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop",
    "No vehicles", "Vehicles over 3.5 metric tons prohibited", "No entry",
    "General caution", "Dangerous curve to the left", "Dangerous curve to the right",
    "Double curve", "Bumpy road", "Slippery road", "Road narrows on the right",
    "Road work", "Traffic signals", "Pedestrians", "Children crossing",
    "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing",
    "End of all speed and passing limits", "Turn right ahead", "Turn left ahead",
    "Ahead only", "Go straight or right", "Go straight or left", "Keep right",
    "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                 "Shirt", "Sneaker", "Bag", "Ankle boot")
#: Where torchvision looks for each dataset's files, relative to ``root``.
EXPECTED_FILES = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashionmnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "svhn": "{train,test}_32x32.mat (md5-checked)",
    "gtsrb": "gtsrb/GTSRB/Training/<class>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm "
             "and gtsrb/GT-final_test.csv",
}


class DatasetFilesMissing(ValueError, FileNotFoundError):
    """A dataset's files are not under ``root`` and ``download`` is False.

    Both a ``ValueError`` (bad ``root``/``download`` arguments) and a
    ``FileNotFoundError``, so either ``except`` clause catches it.
    """


def _open(name: str, cls, root: str, download: bool, **kwargs):
    """Build a torchvision dataset, turning its "not found" errors into ours."""
    try:
        return cls(root, download=download, **kwargs)
    except (RuntimeError, FileNotFoundError) as exc:
        if isinstance(exc, RuntimeError) and "not found" not in str(exc).lower():
            raise
        raise DatasetFilesMissing(
            f"dataset {name!r}: files are missing or corrupted under root={root!r} "
            f"(expected {EXPECTED_FILES[name]}). Pass download=True to fetch them, or "
            f"put the files there. torchvision said: {exc}") from exc


def _to_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 images of shape (n, C, H, W) -> float32 in [0, 1]."""
    X = np.asarray(images_uint8).astype(np.float32)
    X /= 255.0
    return X


def _split(name: str, X_train, y_train, X_held, y_held, class_names, *,
           held_is_test: bool, seed: int) -> DataSplits:
    """Carve validation from train (``held_is_test``) or halve the held-out set."""
    X_train, X_held = torch.as_tensor(X_train), torch.as_tensor(X_held)
    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    y_held = torch.as_tensor(np.asarray(y_held), dtype=torch.long)
    if held_is_test:
        tr, va = stratified_split(y_train.numpy(), (11 / 12, 1 / 12), seed)
        return DataSplits(name, X_train[tr], y_train[tr], X_train[va], y_train[va],
                          X_held, y_held, tuple(class_names))
    va, te = stratified_split(y_held.numpy(), (0.5, 0.5), seed)
    return DataSplits(name, X_train, y_train, X_held[va], y_held[va],
                      X_held[te], y_held[te], tuple(class_names))


def _load_mnist_like(name: str, root: str, download: bool, seed: int) -> DataSplits:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    parts = []
    for train in (True, False):
        ds = _open(name, cls, root, download, train=train)
        # ``ds.data`` is the whole uint8 tensor of shape (n, 28, 28): no per-item PIL.
        parts.append((pad_to(_to_float(ds.data.numpy()[:, None]), 32), ds.targets.numpy()))
    names = DIGIT_NAMES if name == "mnist" else FASHION_NAMES
    (Xtr, ytr), (Xte, yte) = parts
    return _split(name, Xtr, ytr, Xte, yte, names, held_is_test=True, seed=seed)


def _load_svhn(root: str, download: bool, seed: int) -> DataSplits:
    from torchvision import datasets

    parts = []
    for split in ("train", "test"):
        ds = _open("svhn", datasets.SVHN, root, download, split=split)
        # ``ds.data`` is uint8 of shape (n, 3, 32, 32); labels already map 10 -> 0.
        parts.append((_to_float(ds.data), ds.labels))
    (Xtr, ytr), (Xte, yte) = parts
    return _split("svhn", Xtr, ytr, Xte, yte, DIGIT_NAMES, held_is_test=False, seed=seed)


def _gtsrb_tensors(ds, image_size: int, label_of_target) -> tuple:
    """Read every image of a torchvision GTSRB split into a preallocated tensor."""
    X = torch.empty((len(ds), 3, image_size, image_size), dtype=torch.float32)
    y = np.empty(len(ds), dtype=np.int64)
    for i in range(len(ds)):
        X[i], target = ds[i]
        y[i] = label_of_target[target]
    return X, y


def _load_gtsrb(root: str, download: bool, seed: int, image_size: int) -> DataSplits:
    from torchvision import datasets, transforms

    to_tensor = transforms.Compose([transforms.Resize((image_size, image_size)),
                                    transforms.ToTensor()])
    train = _open("gtsrb", datasets.GTSRB, root, download, split="train",
                  transform=to_tensor)
    test = _open("gtsrb", datasets.GTSRB, root, download, split="test",
                 transform=to_tensor)
    # torchvision numbers training classes by rank of the sorted folder names
    # (find_classes), not by the number in the name; map rank -> ClassId so a
    # tree with some classes absent still gets the paper's ids.
    folder = os.path.join(root, "gtsrb", "GTSRB", "Training")
    ranks = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    Xtr, ytr = _gtsrb_tensors(train, image_size, [int(r) for r in ranks])
    Xte, yte = _gtsrb_tensors(test, image_size, range(len(GTSRB_NAMES)))
    return _split("gtsrb", Xtr, ytr, Xte, yte, GTSRB_NAMES, held_is_test=False, seed=seed)


def load_torchvision(name: str, *, root, download: bool = False, seed: int = 0,
                     image_size: int | None = None) -> DataSplits:
    """Load MNIST, FashionMNIST, SVHN or GTSRB through torchvision, split as in the paper.

    Parameters
    ----------
    name : {"mnist", "fashionmnist", "svhn", "gtsrb"}
        Dataset to load.
    root : str or path-like
        Folder holding torchvision's files for the dataset (or receiving them when
        ``download=True``); see ``EXPECTED_FILES`` for the layout.
    download : bool, default=False
        Let torchvision download missing files (needs internet).
    seed : int, default=0
        Seed of the deterministic stratified split.
    image_size : int, optional
        Side of the square GTSRB images; defaults to 128, the paper's size.
        The 32x32 datasets accept only ``None`` or 32.

    Returns
    -------
    DataSplits
        Images float32 in [0, 1] of shape (n, 1, 32, 32) for MNIST and
        FashionMNIST, (n, 3, 32, 32) for SVHN and (n, 3, image_size, image_size)
        for GTSRB; labels int64 of shape (n,).

    Raises
    ------
    DatasetFilesMissing
        A ``ValueError`` (and ``FileNotFoundError``) when the files are not
        under ``root`` and ``download`` is False.

    Notes
    -----
    GTSRB is read image by image (torchvision keeps file paths only), and at
    128x128 in float32 it is large: about 5.2 GB for the 26,640 training images
    plus 2.5 GB for the 12,630 test images. Pass a smaller ``image_size`` (e.g.
    64, a quarter of the memory) to lower it.

    Examples
    --------
    >>> splits = load_torchvision("mnist", root="~/data")  # doctest: +SKIP
    >>> splits.X_train.shape  # doctest: +SKIP
    torch.Size([55000, 1, 32, 32])
    """
    check_choice("dataset", name, ("mnist", "fashionmnist", "svhn", "gtsrb"))
    if root is None:
        raise ValueError(f"root must be the folder holding the {name!r} files "
                         "(or receiving them with download=True); got None.")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or path-like folder; got {describe(root)}.")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False; got {describe(download)}.")
    seed = check_int("seed", seed, low=0)
    root = os.path.expanduser(os.fspath(root))
    if name == "gtsrb":
        size = 128 if image_size is None else check_int("image_size", image_size, low=1)
        return _load_gtsrb(root, download, seed, size)
    if image_size not in (None, 32):
        raise ValueError(f"image_size must be None or 32 for {name!r}, whose images are "
                         f"32x32; got {describe(image_size)}.")
    if name == "svhn":
        return _load_svhn(root, download, seed)
    return _load_mnist_like(name, root, download, seed)
