"""One entry point, :func:`load_dataset`, for every dataset by name."""
from __future__ import annotations

from defuse_widgets._validation import check_choice, check_seed
from defuse_widgets.data.embedded import load_digits8, load_mnist5k
from defuse_widgets.data.splits import DataSplits

EMBEDDED = ("mnist5k", "digits")
TORCHVISION = ("mnist", "fashionmnist", "svhn", "gtsrb")
DATASETS = EMBEDDED + TORCHVISION


def load_dataset(name: str, *, root: str | None = None, download: bool = False,
                 seed: int = 0, image_size: int | None = None) -> DataSplits:
    """Load a dataset by name.

    Parameters
    ----------
    name : {"mnist5k", "digits", "mnist", "fashionmnist", "svhn", "gtsrb"}
        ``mnist5k`` (default of the CLI) and ``digits`` ship with installed
        packages; the others are read through torchvision from ``root``.
    root : str, optional
        Folder holding (or receiving) torchvision's files. Required for the
        torchvision datasets.
    download : bool, default=False
        Let torchvision download missing files (needs internet).
    seed : int, default=0
        Seed of the deterministic train/validation/test split.
    image_size : int, optional
        GTSRB only: side of the resized images (default 128, the paper's).

    Returns
    -------
    DataSplits
    """
    check_choice("dataset", name, DATASETS)
    check_seed("seed", seed)
    if name == "mnist5k":
        return load_mnist5k(seed=seed)
    if name == "digits":
        return load_digits8(seed=seed)
    from defuse_widgets.data.torchvision_sets import load_torchvision

    return load_torchvision(name, root=root, download=download, seed=seed, image_size=image_size)
