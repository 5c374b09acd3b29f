"""Batched, inference-mode forward passes shared by every stage."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from defuse_widgets.models.precision import autocast, guarded_argmax, resolve_precision
from defuse_widgets.models.probes import check_logits, input_shape

#: ``k / 255`` in float32 for every uint8 value k, divided on the CPU.
_UNIT = torch.arange(256, dtype=torch.float32) / 255


def to_unit(xb: torch.Tensor) -> torch.Tensor:
    """Return a batch of images as float32 in [0, 1]: uint8 pixels divided by 255.

    Images are held as uint8 (a quarter of float32's memory) and converted
    batch by batch where they enter a model. The values are exactly
    ``xb.float() / 255`` on the CPU, so a uint8 dataset gives the same results
    as its float twin ``X.float() / 255``. On other devices the values are read
    from a table of those CPU quotients: CUDA divides by a scalar through its
    reciprocal, which can differ in the last bit.

    Parameters
    ----------
    xb : Tensor of shape (n, C, H, W)
        uint8 pixels (0-255), or floating-point images, which are returned
        unchanged.

    Returns
    -------
    Tensor of shape (n, C, H, W), float32 in [0, 1] for uint8 input

    Examples
    --------
    >>> to_unit(torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8))
    tensor([[[[0.0000, 0.2000, 1.0000]]]])
    """
    if xb.dtype != torch.uint8:
        return xb
    if xb.device.type == "cpu":
        return xb.float().div_(255)
    return _UNIT.to(xb.device)[xb.long()]


@torch.inference_mode()
def predict_logits(model: nn.Module, X: torch.Tensor, *, batch_size: int = 1024,
                   device: torch.device | str = "cpu", name: str = "classifier") -> torch.Tensor:
    """Return logits of shape (n, n_classes) for images X of shape (n, C, H, W), on CPU.

    uint8 images are made float in [0, 1] batch by batch (:func:`to_unit`).
    A model that returns anything but a tensor is refused, naming ``name``
    (:func:`~defuse_widgets.models.probes.check_logits`).
    """
    was_training = model.training
    model.eval()
    out = [check_logits(model(to_unit(X[i:i + batch_size].to(device))), name=name).float().cpu()
           for i in range(0, len(X), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def predict(model: nn.Module, X: torch.Tensor, *, precision: str = "fp32",
            batch_size: int = 1024, device: torch.device | str = "cpu") -> torch.Tensor:
    """Return predicted classes of shape (n,) for images X of shape (n, C, H, W).

    ``precision="bf16"`` (or ``"auto"`` where the hardware runs bf16) runs the
    forward pass under bf16 autocast on channels-last input and makes the
    close calls again in fp32
    (:func:`~defuse_widgets.models.precision.guarded_argmax`), so the
    predictions are fp32's.
    """
    if resolve_precision(precision, device) == "fp32":
        return predict_logits(model, X, batch_size=batch_size, device=device).argmax(1)
    was_training = model.training
    model.eval()

    def fast(xb):
        with autocast("bf16", device):
            return exact(xb)

    def exact(xb):
        return check_logits(model(to_unit(xb.to(device)).contiguous(
            memory_format=torch.channels_last)))
    with torch.inference_mode():
        pred, _ = guarded_argmax(fast, exact, X, batch_size=batch_size)
    model.train(was_training)
    return pred


def predict_proba(model: nn.Module, X: torch.Tensor, **kw) -> torch.Tensor:
    """Return class probabilities (softmax) of shape (n, n_classes) for images X (n, C, H, W)."""
    return predict_logits(model, X, **kw).softmax(1)


def correct(model: nn.Module, X: torch.Tensor, y: torch.Tensor, **kw) -> np.ndarray:
    """Return, per image of X (n, C, H, W), whether its prediction equals y (n,): bool (n,)."""
    if len(y) == 0:
        return np.zeros(0, dtype=bool)
    return (predict(model, X, **kw) == y.cpu()).numpy()


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, **kw) -> float:
    """Return the share of images X (n, C, H, W) whose prediction equals y (n,)."""
    right = correct(model, X, y, **kw)
    return float(right.mean()) if len(right) else float("nan")


@torch.inference_mode()
def encode_mean(vae: nn.Module, X: torch.Tensor, *, batch_size: int = 1024,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Return encoder means of shape (n, n_latent) for images X of shape (n, C, H, W).

    uint8 images are made float in [0, 1] batch by batch (:func:`to_unit`).
    """
    was_training = vae.training
    vae.eval()
    out = [vae.encode(to_unit(X[i:i + batch_size].to(device)))[0].float().cpu()
           for i in range(0, len(X), batch_size)]
    vae.train(was_training)
    return torch.cat(out)


@torch.inference_mode()
def decode(vae: nn.Module, z: torch.Tensor, *, batch_size: int = 1024,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """Return images (n, C, H, W) decoded from codes z of shape (n, n_latent)."""
    was_training = vae.training
    vae.eval()
    z = torch.as_tensor(z, dtype=torch.float32)
    # an empty z still goes through the decoder once, for the image shape
    out = [vae.decode(z[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, max(len(z), 1), batch_size)]
    vae.train(was_training)
    return torch.cat(out)


def n_outputs(model: nn.Module, X: torch.Tensor, *, device="cpu") -> int:
    """Return the number of classes, read off the model's logits on one image of X."""
    logits = predict_logits(model, X[:1], device=device)
    if logits.ndim != 2:
        raise ValueError("classifier must return logits of shape (n, n_classes); "
                         f"got {tuple(logits.shape)}.")
    return int(logits.shape[1])


def check_images_fit(X: torch.Tensor, *, vae: nn.Module | None = None,
                     classifier: nn.Module | None = None, name: str = "X") -> None:
    """Check that images ``X`` (n, C, H, W) fit the VAE's encoder and the classifier.

    Raises
    ------
    ValueError
        Naming ``name``, the images' shape and the shape the model takes
        (the VAE's decodes, else the first layer tried on a zero image),
        instead of torch's ``mat1 and mat2 shapes cannot be multiplied``.
    """
    given = tuple(X.shape[1:])
    for what, model in (("vae", vae), ("classifier", classifier)):
        if model is None:
            continue
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                (model.encode if what == "vae" else model)(to_unit(X[:1].to(_device_of(model))))
        except RuntimeError as exc:
            expected = input_shape(model, given, encoder=what == "vae")
            hint = f" ({expected})" if expected else ""
            raise ValueError(f"{name} must hold images the {what} takes{hint}; "
                             f"got shape {given}, which it refuses: "
                             f"{str(exc).splitlines()[0]}") from exc
        finally:
            model.train(was_training)


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")
