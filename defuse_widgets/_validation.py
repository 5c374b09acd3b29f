"""Input checks used at every public API boundary.

Each check raises ``ValueError`` or ``TypeError`` whose message names the
parameter, says what was expected and shows what was given, so that bad input
never surfaces as a traceback from deep inside torch or scikit-learn.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence

import numpy as np
import torch


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_number(name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_inclusive: bool = True,
                 high_inclusive: bool = True) -> float:
    """Return ``value`` as float after checking it is a finite real in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {describe(value)}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}; got {value!r}.")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{name} must be {op} {high}; got {value!r}.")
    return value


def check_int(name: str, value: Any, *, low: int | None = None,
              high: int | None = None) -> int:
    """Return ``value`` as int after checking it is an integer in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {describe(value)}.")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}; got {value}.")
    return value


def check_seed(name: str, value: Any, *, generator: bool = False) -> Any:
    """Check a seed: an integer >= 0 (or a NumPy ``Generator`` when ``generator``)."""
    if generator and isinstance(value, np.random.Generator):
        return value
    kind = "an integer >= 0" + (" or a numpy.random.Generator" if generator else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {kind}; got {describe(value)}.")
    if value < 0:
        raise ValueError(f"{name} must be {kind}; got {value}.")
    return int(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {describe(value)}.")
    return value


#: How far float pixels may lie outside [0, 1] (rounding) before they are refused.
UNIT_TOLERANCE = 1e-3


def check_unit_range(name: str, X: torch.Tensor) -> None:
    """Check that float images hold pixels in [0, 1], up to :data:`UNIT_TOLERANCE`.

    uint8 images pass: their pixels are 0-255 by type and are divided by 255
    where a model takes them. Floats in [0, 255] are the usual slip; the
    message then says to divide them by 255.

    Raises
    ------
    ValueError
        Naming ``name``, the range found and the remedy.
    """
    if X.dtype == torch.uint8 or X.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(X.detach()))
    if lo >= -UNIT_TOLERANCE and hi <= 1 + UNIT_TOLERANCE:
        return
    if lo >= -UNIT_TOLERANCE and hi <= 255 + UNIT_TOLERANCE:
        remedy = ("If they are 0-255 pixels, divide them by 255 (or pass them as uint8, "
                  "which is divided by 255 batch by batch); otherwise rescale them to [0, 1].")
    else:
        remedy = ("Rescale them to [0, 1] (undo any Normalize(mean, std): the models "
                  "take pixels).")
    raise ValueError(f"{name} must hold float pixels in [0, 1], as the models take them; "
                     f"got values in [{lo:.4g}, {hi:.4g}]. {remedy}")


def check_images(name: str, X: Any, *, shape: Sequence[int] | None = None,
                 unit: bool = True) -> torch.Tensor:
    """Return images as a tensor of shape (n, C, H, W): uint8 kept, others float32.

    uint8 images (pixels 0-255) are returned as they are, without a float copy
    of the whole array; models take them batch by batch through
    :func:`~defuse_widgets.models.inference.to_unit`, which divides by 255.
    Every other real dtype is converted to float32 and checked to be finite
    and, with ``unit``, to lie in [0, 1] (:func:`check_unit_range`).

    Parameters
    ----------
    name : str
        Parameter name used in error messages.
    X : array-like of shape (n, C, H, W)
        Images; numpy arrays and tensors are accepted.
    shape : sequence of int, optional
        Expected ``(C, H, W)``.
    unit : bool, default=True
        Refuse float pixels outside [0, 1]. False where the images are a
        decoder's output, which the decoder alone bounds.

    Returns
    -------
    Tensor of shape (n, C, H, W), uint8 or float32
    """
    if isinstance(X, np.ndarray):
        if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
            raise TypeError(f"{name} must hold real numbers; got {describe(X)}.")
        X = torch.from_numpy(np.ascontiguousarray(X))
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or ndarray of shape (n, C, H, W); "
                        f"got {describe(X)}.")
    if X.dtype == torch.bool or X.is_complex():
        raise TypeError(f"{name} must hold real numbers; got {describe(X)}.")
    if X.ndim != 4:
        raise ValueError(f"{name} must have shape (n, C, H, W); got {describe(X)}.")
    if X.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image; got {describe(X)}.")
    if shape is not None and tuple(X.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must have shape (n, {', '.join(map(str, shape))}); "
                         f"got {describe(X)}.")
    if X.dtype == torch.uint8:
        return X
    X = X.float()
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} must not contain NaN or inf; got {describe(X)} "
                         "with non-finite values.")
    if unit:
        check_unit_range(name, X)
    return X


def check_labels(name: str, y: Any, *, n_samples: int | None = None,
                 n_classes: int | None = None) -> torch.Tensor:
    """Return labels as an int64 tensor of shape (n,), checking length and range."""
    if isinstance(y, (list, tuple)):
        try:
            y = np.asarray(y)
        except ValueError as exc:   # ragged
            raise ValueError(f"{name} must have shape (n,); got {describe(y)}.") from exc
    if isinstance(y, np.ndarray):
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise TypeError(f"{name} must hold integer class indices; got {describe(y)}.")
        y = torch.from_numpy(np.ascontiguousarray(y))
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or ndarray of shape (n,); "
                        f"got {describe(y)}.")
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (n,); got {describe(y)}.")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices; got {describe(y)}.")
    if y.is_complex():
        raise TypeError(f"{name} must hold integer class indices; got {describe(y)}.")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"{name} must have length {n_samples} to match the images; "
                         f"got length {y.shape[0]}.")
    y = y.long()
    if n_classes is not None and y.numel() and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must hold class indices in [0, {n_classes - 1}]; "
                         f"got values in [{int(y.min())}, {int(y.max())}].")
    return y


def check_codes(name: str, z: Any, *, n_latent: int | None = None,
                min_rows: int = 1) -> np.ndarray:
    """Return latent codes as a float64 array of shape (n, n_latent)."""
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    if not isinstance(z, np.ndarray):
        raise TypeError(f"{name} must be an ndarray of shape (n_samples, n_latent); "
                        f"got {describe(z)}.")
    if np.iscomplexobj(z):
        raise TypeError(f"{name} must hold real numbers; got {describe(z)}.")
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_latent); got {describe(z)}.")
    if not np.issubdtype(z.dtype, np.number):
        raise TypeError(f"{name} must hold numbers; got {describe(z)}.")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name} must hold at least {min_rows} codes; got {z.shape[0]}.")
    if n_latent is not None and z.shape[1] != n_latent:
        raise ValueError(f"{name} must have {n_latent} latent dimensions; got {describe(z)}.")
    if not np.isfinite(z).all():
        bad = int((~np.isfinite(z)).any(axis=1).sum())
        raise ValueError(f"{name} must not contain NaN or inf; got {bad} rows with "
                         "non-finite values.")
    return z.astype(np.float64, copy=False)


def check_module(name: str, module: Any) -> torch.nn.Module:
    """Check that ``module`` is a ``torch.nn.Module``."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {describe(module)}.")
    return module


def resolve_device(device: Any = None) -> torch.device:
    """Return ``device`` as a torch.device, choosing CUDA when it is available."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or None; "
                         f"got {describe(device)}.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device must be available on this machine; got {device!r} "
                         "but CUDA is not available.")
    return dev


def check_eval_sets(eval_sets: Any, shape: Sequence[int], n_classes: int,
                    selection: str) -> dict:
    """Check a correction's ``eval_sets`` (name -> (X, y)) and the sets ``selection`` needs."""
    if not isinstance(eval_sets, dict):
        raise TypeError(f"eval_sets must be a dict of name -> (X, y); got {type(eval_sets)}.")
    out = {}
    for name, pair in eval_sets.items():
        Xe = check_images(f"eval_sets[{name!r}] images", pair[0], shape=shape)
        out[name] = (Xe, check_labels(f"eval_sets[{name!r}] labels", pair[1],
                                      n_samples=len(Xe), n_classes=n_classes))
    needed = {"interval": ("validation", "region_validation"),
              "balanced": ("validation", "region_validation"),
              "validation": ("validation",)}.get(selection, ())
    missing = [k for k in needed if k not in out]
    if missing:
        raise ValueError(f"eval_sets must contain {list(needed)} for selection="
                         f"{selection!r}; missing {missing}.")
    return out


def check_executor(executor) -> None:
    """Raise TypeError unless ``executor`` has a ``submit`` method."""
    if not callable(getattr(executor, "submit", None)):
        raise TypeError("executor must be a concurrent.futures.Executor (with submit); "
                        f"got {type(executor).__name__}.")
