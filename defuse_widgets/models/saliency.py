"""SmoothGrad saliency maps (Smilkov et al. 2017), as Bayes-TrEx pairs with its examples.

For each image x and target class c, SmoothGrad averages the input gradient of
the class-c logit over ``n_samples`` noisy copies ``x + N(0, (noise · (max x -
min x))²)``. The map of an image is the absolute value of that average, summed
over channels: non-negative, of shape (H, W), and large where the classifier's
answer depends on the pixels.

This module imports no UI code; a widget renders the maps it returns.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from defuse_widgets._validation import (
    check_images,
    check_int,
    check_labels,
    check_module,
    check_number,
    check_seed,
    resolve_device,
)
from defuse_widgets.models.inference import to_unit
from defuse_widgets.models.probes import check_logits

__all__ = ["smoothgrad"]


def smoothgrad(classifier: nn.Module, images, *, target=None, n_samples: int = 25,
               noise: float = 0.15, batch_size: int = 256, seed: int = 0,
               device=None) -> np.ndarray:
    """SmoothGrad saliency of the classifier's target-class logit for each image.

    Parameters
    ----------
    classifier : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes). Put in eval mode;
        its parameters receive no gradient.
    images : Tensor or ndarray of shape (n, C, H, W)
        E.g. adversarial decodes, region samples or level-set draws.
    target : int or array-like of shape (n,), optional
        Class whose logit is explained, one for all images or one per image.
        By default each image's predicted class.
    n_samples : int, default=25
        Noisy copies averaged per image (1 gives the plain gradient with noise).
    noise : float, default=0.15
        Noise standard deviation as a share of each image's value range
        (max - min); 0 gives the plain input gradient (vanilla saliency).
    batch_size : int, default=256
        Noisy copies per forward/backward pass.
    seed : int, default=0
        Seeds the noise (a ``torch.Generator``); the same inputs and seed give
        the same maps.
    device : str or torch.device, optional
        Where to compute; by default where the classifier's parameters are
        (CPU for a parameter-free module).

    Returns
    -------
    ndarray of shape (n, H, W), float32
        Non-negative saliency: ``|mean_k ∇_x logit_c(x + ε_k)|`` summed over
        channels.

    Examples
    --------
    >>> clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> smoothgrad(clf, torch.rand(3, 1, 8, 8), n_samples=4).shape
    (3, 8, 8)
    """
    classifier = check_module("classifier", classifier)
    X = check_images("images", images, unit=False)
    n_samples = check_int("n_samples", n_samples, low=1)
    noise = check_number("noise", noise, low=0)
    batch_size = check_int("batch_size", batch_size, low=1)
    seed = check_seed("seed", seed)
    if device is None:
        param = next(classifier.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
    was_training = classifier.training
    classifier.eval()
    try:
        return _smoothgrad(classifier, to_unit(X).to(dev, torch.float32), target, n_samples, noise,
                           batch_size, seed)
    finally:
        classifier.train(was_training)


def _smoothgrad(classifier, X, target, n_samples, noise, batch_size, seed) -> np.ndarray:
    n, dev = len(X), X.device
    with torch.no_grad():
        n_classes = int(check_logits(classifier(X[:1])).shape[1])
    if target is None:
        with torch.no_grad():
            cls = torch.cat([classifier(X[s:s + batch_size]).argmax(1)
                             for s in range(0, n, batch_size)])
    elif np.ndim(target) == 0:
        cls = torch.full((n,), check_int("target", target, low=0, high=n_classes - 1),
                         dtype=torch.long, device=dev)
    else:
        cls = check_labels("target", target, n_samples=n, n_classes=n_classes).to(dev)
    span = (X.flatten(1).amax(1) - X.flatten(1).amin(1)).clamp_min(1e-12)
    sigma = (noise * span).view(n, 1, 1, 1)
    gen = torch.Generator(device=dev).manual_seed(seed)
    grads = torch.zeros_like(X)
    # every (image, noise draw) pair, image-major, in chunks of batch_size
    flat = torch.arange(n * n_samples, device=dev)
    for s in range(0, len(flat), batch_size):
        idx = flat[s:s + batch_size] // n_samples
        eps = torch.randn((len(idx),) + tuple(X.shape[1:]), generator=gen, device=dev)
        x = (X[idx] + sigma[idx] * eps).requires_grad_(True)
        picked = classifier(x).gather(1, cls[idx][:, None]).sum()
        g, = torch.autograd.grad(picked, x)
        grads.index_add_(0, idx, g.detach())
    return (grads / n_samples).abs().sum(1).cpu().numpy().astype(np.float32)
