"""Classifiers of the paper's appendix B.

Any ``nn.Module`` that maps images of shape (n, C, H, W) to logits of shape
(n, n_classes) works with the rest of the package; these are the defaults.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defuse_widgets._validation import check_int


class MnistCNN(nn.Module):
    """The PyTorch-examples MNIST CNN the paper cites, for any input size.

    conv3x3(32) - ReLU - conv3x3(64) - ReLU - maxpool2 - dropout(0.25) -
    fc(128) - ReLU - dropout(0.5) - fc(n_classes).

    Parameters
    ----------
    in_channels : int, default=1
    image_size : int, default=32
        Height and width of the square input images.
    n_classes : int, default=10
    """

    def __init__(self, in_channels: int = 1, image_size: int = 32, n_classes: int = 10):
        super().__init__()
        check_int("in_channels", in_channels, low=1)
        check_int("image_size", image_size, low=6)
        check_int("n_classes", n_classes, low=2)
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        side = (image_size - 4) // 2
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.fc2 = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (n, C, H, W) to logits (n, n_classes)."""
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout1(torch.flatten(x, 1))
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


class OracleCNN(nn.Module):
    """A second, independently designed CNN that backs the simulated annotator.

    conv(32)-BN-ReLU x2, maxpool, conv(64)-BN-ReLU x2, maxpool, global average
    pool, fc(n_classes). Its architecture differs from :class:`MnistCNN` on
    purpose, so its errors are less correlated with the classifier's.

    Parameters
    ----------
    in_channels : int, default=1
    n_classes : int, default=10
    width : int, default=32
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 32):
        super().__init__()
        check_int("in_channels", in_channels, low=1)
        check_int("n_classes", n_classes, low=2)

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(0.3))
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (n, C, H, W) to logits (n, n_classes)."""
        return self.head(self.features(x))


def resnet18_classifier(n_classes: int, *, in_channels: int = 3,
                        weights=None) -> nn.Module:
    """Torchvision's ResNet18 with a new ``n_classes`` head (paper: SVHN, GTSRB).

    Parameters
    ----------
    n_classes : int
    in_channels : int, default=3
        A first convolution for other channel counts replaces the stock one.
    weights : torchvision weights enum or str, optional
        For example ``"IMAGENET1K_V1"`` (needs internet or a cached file), as
        the paper fine-tunes an ImageNet-pretrained model. ``None`` starts
        from random weights.

    Returns
    -------
    nn.Module
        Maps (n, in_channels, H, W) to logits (n, n_classes).
    """
    from torchvision.models import resnet18

    check_int("n_classes", n_classes, low=2)
    model = resnet18(weights=weights)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model
