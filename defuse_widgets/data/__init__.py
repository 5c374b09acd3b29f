"""Datasets: the embedded defaults and torchvision's full datasets."""
from .embedded import load_digits8, load_mnist5k
from .registry import DATASETS, load_dataset
from .splits import DataSplits

__all__ = ["DATASETS", "DataSplits", "load_dataset", "load_digits8", "load_mnist5k"]
