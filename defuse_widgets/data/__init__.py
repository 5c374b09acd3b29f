"""Datasets: the embedded defaults and torchvision's full datasets."""
from defuse_widgets.data.embedded import load_digits8, load_mnist5k
from defuse_widgets.data.registry import DATASETS, load_dataset
from defuse_widgets.data.splits import DataSplits

__all__ = ["DATASETS", "DataSplits", "load_dataset", "load_digits8", "load_mnist5k"]
