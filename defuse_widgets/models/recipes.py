"""Training recipes for a user's own data: the β-VAE Defuse needs and the simulated
annotator's oracle.

``defuse-widgets train-vae`` and ``train-oracle`` call :func:`fit_vae` and
:func:`fit_oracle`, and write the models as TorchScript, which carries the
architecture with the weights, so ``--vae FILE`` and ``--oracle FILE`` read
them back without code. The recipes are the shipped MNIST-5k ones
(:data:`~defuse_widgets.models.pretrained.DEFAULT_SETTINGS`), with the
architecture sized to the images. This module imports no UI code.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from defuse_widgets._validation import check_int, check_number, resolve_device
from defuse_widgets.models.classifiers import OracleCNN
from defuse_widgets.models.inference import to_unit
from defuse_widgets.models.loading import quiet_jit
from defuse_widgets.models.pretrained import DEFAULT_SETTINGS
from defuse_widgets.models.training import train_classifier, train_vae, vae_loss
from defuse_widgets.models.vae import BetaVAE

__all__ = ["COLOUR_VAE", "fit_oracle", "fit_vae", "save_torchscript", "save_training_report",
           "vae_for", "vae_recipe"]


def vae_for(image_shape, *, n_latent: int | None = None, width: int | None = None) -> BetaVAE:
    """The package's β-VAE family (appendix B) sized to images of shape (C, H, W).

    One channel takes the MNIST architecture (width 32), more take the SVHN
    one (width 64; ``width`` overrides it, e.g. 32 for simple colour images at
    about a third of the training time). ``n_latent`` defaults to 10 (15 from
    128 px up, as for GTSRB).

    Raises
    ------
    ValueError
        When the images are not square with a side of 4 times a power of two.
    """
    C, H, W = (int(s) for s in image_shape)
    side_ok = H == W and H >= 8 and math.log2(H / 4).is_integer()
    if not side_ok:
        raise ValueError(f"images must be square with a side of 8, 16, 32, 64, 128, ... for the "
                         f"package's β-VAE family; got shape {(C, H, W)}. Resize them, or pass "
                         "your own β-VAE with --vae.")
    n_latent = n_latent or (15 if H >= 128 else 10)
    family = "mnist" if C == 1 else "svhn"
    extra = {} if width is None else {"width": check_int("width", width, low=1)}
    return BetaVAE.from_family(family, in_channels=C, image_size=H,
                               n_latent=check_int("n_latent", n_latent, low=1), **extra)


def validation_loss(vae, X: torch.Tensor, beta: float, *, batch_size: int = 512,
                    device="cpu") -> float:
    """Mean β-VAE loss per image on ``X`` (n, C, H, W), decoding the encoder mean."""
    total = 0.0
    was = vae.training
    vae.eval()
    with torch.inference_mode():
        for i in range(0, len(X), batch_size):
            xb = to_unit(X[i:i + batch_size]).to(device)
            mu, logvar = vae.encode(xb)
            total += float(vae_loss(vae.decode(mu), xb, mu, logvar, beta)[0]) * len(xb)
    vae.train(was)
    return total / max(len(X), 1)


class _EarlyStop:
    """Stop when the validation loss has not improved by 0.1 % for ``patience`` epochs."""

    def __init__(self, vae, X_val, beta, patience, bar, device):
        self.vae, self.X_val, self.beta, self.patience = vae, X_val, beta, patience
        self.bar, self.device = bar, device
        self.best, self.best_state, self.since, self.history = math.inf, None, 0, []

    def on_epoch_end(self, epoch: int, losses: dict) -> None:
        val = validation_loss(self.vae, self.X_val, self.beta, device=self.device)
        self.history.append({"epoch": epoch + 1, "train_loss": losses["loss"],
                             "validation_loss": val})
        if val < self.best * (1 - 1e-3):
            self.best, self.since = val, 0
            self.best_state = copy.deepcopy(self.vae.state_dict())
        else:
            self.since += 1
        self.bar.update(1)
        self.bar.set_postfix(val_loss=f"{val:.2f}", best=f"{self.best:.2f}")

    def __call__(self, stage, done, total) -> bool:
        return self.since >= self.patience


#: The β-VAE recipe for colour images (three channels): with the grey recipe's β = 0.25,
#: batches of 64 and augmentation, reconstructions of coloured MNIST kept the background
#: colour and lost the digit; β = 0.1, batches of 32 and no augmentation keep both.
COLOUR_VAE = dict(beta=0.1, anneal_steps=1000, epochs=150, batch_size=32, lr=1e-3,
                  augment=False)


def vae_recipe(image_shape) -> dict:
    """The β-VAE training recipe for images of ``image_shape`` (C, H, W).

    One channel: the shipped model's (``DEFAULT_SETTINGS["vae"]``); three:
    :data:`COLOUR_VAE`.
    """
    grey = {k: v for k, v in DEFAULT_SETTINGS["vae"].items() if k != "family"}
    return dict(COLOUR_VAE) if image_shape[0] == 3 else grey


def fit_vae(data, *, n_latent: int | None = None, width: int | None = None,
            beta: float | None = None, epochs: int | None = None, patience: int = 10,
            seed: int = 0, device=None, progress: bool = True) -> tuple:
    """Train the package's β-VAE on ``data``'s training split, stopping early on a plateau.

    The recipe is the shipped model's for one channel (Adam 1e-3, batch 64,
    KL annealed over 2,000 steps, β = 0.25, random small affine augmentation,
    at most 200 epochs) and :data:`COLOUR_VAE` for three (:func:`vae_recipe`).
    After each epoch the loss on the validation split is measured; training
    stops when it has not improved by 0.1 % for ``patience`` epochs, and the
    best epoch's weights are kept.

    Parameters
    ----------
    data : DataSplits
        Images (n, C, H, W), uint8 or float in [0, 1].
    n_latent, width, beta, epochs : optional
        Override the recipe's latent size, convolution width, β and epoch cap.
    patience : int, default=10
    seed : int
    device : optional
    progress : bool
        A progress bar with the validation loss.

    Returns
    -------
    vae : BetaVAE
        In eval mode, on the CPU.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``validation_loss``.
    """
    rec = vae_recipe(data.image_shape)
    beta = check_number("beta", rec["beta"] if beta is None else beta, low=0)
    epochs = check_int("epochs", rec["epochs"] if epochs is None else epochs, low=1)
    patience = check_int("patience", patience, low=1)
    vae = vae_for(data.image_shape, n_latent=n_latent, width=width)
    dev = resolve_device(device)
    with tqdm(total=epochs, desc="beta-VAE", disable=not progress) as bar:
        stop = _EarlyStop(vae, data.X_val, beta, patience, bar, dev)
        train_vae(vae, data.X_train, beta=beta, anneal_steps=rec["anneal_steps"],
                  epochs=epochs, batch_size=rec["batch_size"], lr=rec["lr"],
                  augment=rec["augment"], seed=seed, device=dev, progress=False,
                  on_epoch_end=stop.on_epoch_end, callback=stop)
    if stop.best_state is not None:
        vae.load_state_dict(stop.best_state)
    return vae.cpu().eval(), stop.history


def fit_oracle(data, *, epochs: int | None = None, seed: int = 0, device=None,
               progress: bool = True) -> torch.nn.Module:
    """Train the simulated annotator's oracle on ``data`` with the shipped oracle's recipe.

    :class:`~defuse_widgets.models.classifiers.OracleCNN` (an architecture
    unlike the classifier's), Adam 1e-3, batch 64, 30 epochs, random affine
    augmentation, seed offset 1000.

    Returns
    -------
    OracleCNN
        In eval mode, on the CPU.
    """
    rec = DEFAULT_SETTINGS["oracle"]
    epochs = check_int("epochs", rec["epochs"] if epochs is None else epochs, low=1)
    s = seed + rec["seed_offset"]
    torch.manual_seed(s)
    oracle = OracleCNN(data.image_shape[0], data.n_classes)
    train_classifier(oracle, data.X_train, data.y_train, epochs=epochs,
                     batch_size=rec["batch_size"], lr=rec["lr"], optimizer=rec["optimizer"],
                     augment=rec["augment"], seed=s, device=device, progress=progress)
    return oracle.cpu().eval()


def save_training_report(path: str | os.PathLike, report: dict, *,
                         overwrite: bool = False) -> Path:
    """Write a training report (JSON) next to a model; never over a file unless ``overwrite``."""
    from defuse_widgets.storage.persistence import save_json

    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; it is left as it is. Choose "
                              "another --out, or pass --overwrite to replace it.")
    return save_json(path, report, default=None)


def save_torchscript(model: torch.nn.Module, path: str | os.PathLike, *,
                     overwrite: bool = False) -> Path:
    """Write ``model`` as a TorchScript archive; never over an existing file unless ``overwrite``.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False (the file is named).
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"--out {str(path)!r} already exists; it is left as it is. "
                              "Choose another path, or pass --overwrite to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with quiet_jit():
        torch.jit.save(torch.jit.script(model.cpu().eval()), str(tmp))
    os.replace(tmp, path)
    return path
