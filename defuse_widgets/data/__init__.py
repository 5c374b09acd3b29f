"""Datasets: the embedded defaults, torchvision's full datasets and your own images."""
from defuse_widgets.data.embedded import load_digits8, load_mnist5k
from defuse_widgets.data.images import ImageDataError, load_images
from defuse_widgets.data.registry import DATASETS, load_dataset
from defuse_widgets.data.splits import DataSplits

__all__ = ["DATASETS", "DataSplits", "ImageDataError", "load_dataset", "load_digits8",
           "load_images", "load_mnist5k"]
