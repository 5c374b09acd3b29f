"""Training of the classifier and the β-VAE, and the generative-fidelity check."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from defuse_widgets._validation import (
    check_images,
    check_int,
    check_labels,
    check_module,
    check_number,
    resolve_device,
)
from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.models.inference import accuracy, decode, encode_mean, to_unit
from defuse_widgets.seeding import seed_everything


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Yield the indices of one epoch's mini-batches, in a random order.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int
    generator : torch.Generator
        CPU generator that draws the permutation.

    Yields
    ------
    Tensor of shape (batch_size,) or shorter for the last batch, int64
    """
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def make_optimizer(model: nn.Module, optimizer: str = "adadelta",
                   lr: float = 1.0) -> tuple:
    """Return the classifier recipe's optimizer and learning-rate schedule.

    Parameters
    ----------
    model : nn.Module
    optimizer : {"adadelta", "adam"}
        Adadelta with a StepLR(step_size=1, gamma=0.7) schedule, stepped once
        per epoch, as in PyTorch's MNIST example; or Adam with no schedule.
    lr : float

    Returns
    -------
    opt : torch.optim.Optimizer
    sched : torch.optim.lr_scheduler.StepLR or None
    """
    if optimizer == "adadelta":
        opt = torch.optim.Adadelta(model.parameters(), lr=lr)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr), None
    raise ValueError(f"optimizer must be 'adadelta' or 'adam'; got {optimizer!r}.")


def train_classifier(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                     epochs: int = 5, batch_size: int = 64, lr: float = 1.0,
                     optimizer: str = "adadelta", augment: bool = False, seed: int = 0,
                     device=None, progress: bool = True,
                     on_epoch_end: Callable[[int, float], None] | None = None,
                     callback: ProgressCallback | None = None) -> nn.Module:
    """Train a classifier with the paper's recipe (Adadelta, lr 1, batch 64, 5 epochs).

    Parameters
    ----------
    model : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes).
    X : Tensor of shape (n, C, H, W)
        float32, or uint8 pixels (made float in [0, 1] batch by batch).
    y : Tensor of shape (n,)
    epochs, batch_size : int
    lr : float
    optimizer : {"adadelta", "adam"}
        Adadelta with a StepLR(gamma=0.7) schedule as in PyTorch's MNIST example,
        or Adam.
    augment : bool, default=False
        Random small rotations, scalings and shifts (:func:`random_affine`);
        used for the oracle.
    seed : int
    device : str or torch.device, optional
        CUDA when available if not given.
    progress : bool
    on_epoch_end : callable(epoch, mean_loss), optional
        A metrics hook (the loss of each epoch).
    callback : ProgressCallback, optional
        The package's progress/stop protocol: ``callback("training", epoch,
        epochs)`` after each epoch; True stops training after that epoch.

    Returns
    -------
    nn.Module
        ``model``, trained in place and set to eval mode.
    """
    check_module("model", model)
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_number("lr", lr, low=0, low_inclusive=False)
    dev = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(dev).train()
    opt, sched = make_optimizer(model, optimizer, lr)
    for epoch in tqdm(range(epochs), desc="classifier", disable=not progress):
        total, count = 0.0, 0
        for idx in batches(len(X), batch_size, gen):
            xb, yb = to_unit(X[idx].to(dev)), y[idx].to(dev)
            if augment:
                xb = random_affine(xb, gen)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        if sched is not None:
            sched.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch, total / count)
        if callback is not None and callback("training", epoch + 1, epochs):
            break
    return model.eval()


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float) -> tuple:
    """Return ``(loss, reconstruction, kl)``, each averaged over the batch.

    The reconstruction term is the Bernoulli negative log-likelihood summed over
    pixels; the KL term is summed over latent dimensions and weighted by ``beta``.
    """
    rec = F.binary_cross_entropy(recon, x, reduction="sum") / len(x)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
    return rec + beta * kl, rec, kl


def random_affine(x: torch.Tensor, generator: torch.Generator, *, degrees: float = 8.0,
                  shift: float = 0.08, scale: float = 0.08) -> torch.Tensor:
    """Apply a random small rotation, scaling and shift to each image of a batch.

    Parameters
    ----------
    x : Tensor of shape (n, C, H, W)
    generator : torch.Generator
        CPU generator for the random parameters.
    degrees, shift, scale : float
        Maximum rotation (degrees), shift (fraction of the half-width) and
        relative scale change.

    Returns
    -------
    Tensor of shape (n, C, H, W)
    """
    n = len(x)
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    ang = u[:, 0] * degrees * torch.pi / 180
    s = 1 + u[:, 1] * scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(ang) / s, -torch.sin(ang) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(ang) / s, torch.cos(ang) / s
    theta[:, :, 2] = u[:, 2:] * shift * 2
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def train_vae(vae: nn.Module, X: torch.Tensor, *, beta: float = 1.0,
              anneal_steps: int = 500, epochs: int = 100, batch_size: int = 128,
              lr: float = 1e-3, augment: bool = False, seed: int = 0, device=None,
              progress: bool = True,
              on_epoch_end: Callable[[int, dict], None] | None = None,
              callback: ProgressCallback | None = None) -> nn.Module:
    """Train a β-VAE with Adam and a linear KL-annealing schedule.

    The KL weight grows linearly from 0 to ``beta`` over ``anneal_steps``
    optimisation steps and then stays at ``beta``.

    Parameters
    ----------
    vae : BetaVAE or any module with ``forward(x) -> (recon, mu, logvar)``
    X : Tensor of shape (n, C, H, W)
        float32 values in [0, 1], or uint8 pixels (made float in [0, 1] batch
        by batch).
    beta : float
    anneal_steps : int
    epochs, batch_size : int
    lr : float
    augment : bool, default=False
        Train on randomly rotated, scaled and shifted copies
        (:func:`random_affine`), which improves held-out reconstructions on
        small training sets.
    seed : int
    device : str or torch.device, optional
    progress : bool
    on_epoch_end : callable(epoch, dict of mean losses), optional
        A metrics hook.
    callback : ProgressCallback, optional
        ``callback("training", epoch, epochs)`` after each epoch; True stops.

    Returns
    -------
    nn.Module
        ``vae``, trained in place and set to eval mode.
    """
    check_module("vae", vae)
    X = check_images("X", X)   # pixels in [0, 1], as the Bernoulli likelihood needs
    beta = check_number("beta", beta, low=0)
    anneal_steps = check_int("anneal_steps", anneal_steps, low=0)
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    dev = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    vae.to(dev).train()
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    step = 0
    for epoch in tqdm(range(epochs), desc="beta-VAE", disable=not progress):
        sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
        for idx in batches(len(X), batch_size, gen):
            xb = to_unit(X[idx].to(dev))
            if augment:
                xb = random_affine(xb, gen)
            weight = beta * min(1.0, step / anneal_steps) if anneal_steps else beta
            recon, mu, logvar = vae(xb)
            loss, rec, kl = vae_loss(recon, xb, mu, logvar, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in zip(sums, (loss, rec, kl)):
                sums[k] += v.item() * len(idx)
        if on_epoch_end is not None:
            on_epoch_end(epoch, {k: v / len(X) for k, v in sums.items()})
        if callback is not None and callback("training", epoch + 1, epochs):
            break
    return vae.eval()


def reconstruction_fidelity(classifier: nn.Module, vae: nn.Module, X: torch.Tensor,
                            y: torch.Tensor, *, device=None) -> dict:
    """Classifier accuracy on images and on their VAE reconstructions.

    Reconstructions decode the encoder mean. A VAE is faithful enough for
    Defuse when the classifier scores nearly as well on reconstructions as on
    the images themselves.

    Parameters
    ----------
    classifier : nn.Module
    vae : BetaVAE
    X : Tensor of shape (n, C, H, W)
    y : Tensor of shape (n,)
    device : optional

    Returns
    -------
    dict
        ``accuracy_images``, ``accuracy_reconstructions`` and
        ``active_dims`` (latent dimensions whose encoder-mean variance
        over X exceeds 0.01).
    """
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    dev = resolve_device(device)
    classifier.to(dev)
    vae.to(dev)
    mu = encode_mean(vae, X, device=dev)
    recon = decode(vae, mu, device=dev)
    return {
        "accuracy_images": accuracy(classifier, X, y, device=dev),
        "accuracy_reconstructions": accuracy(classifier, recon, y, device=dev),
        "active_dims": int((mu.var(0) > 0.01).sum()),
    }
