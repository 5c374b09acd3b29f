"""A user's own models from the command line: a TorchScript file, or a factory plus weights.

A *model spec* is one of

* the path of a TorchScript archive (``torch.jit.save``), which carries its
  own architecture and weights; ``defuse-widgets train-vae`` and
  ``train-oracle`` write this kind;
* ``package.module:factory``: a function called with no arguments that
  returns an ``nn.Module``, plus a weights file holding its ``state_dict``,
  read with ``torch.load(weights_only=True)`` (a pickle that would run code
  is refused).

A β-VAE spec must give a module with ``encode(x) -> (mu, logvar)`` and
``decode(z) -> x``. This module imports no UI code.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from defuse_widgets.storage.persistence import (
    SessionFormatError,
    UnsafeFileError,
    load_state_dict,
    sha256_file,
)

__all__ = ["ModelSpec", "copy_model", "load_model", "quiet_jit"]

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: What a β-VAE must offer beyond ``nn.Module``.
_VAE_METHODS = ("encode", "decode")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from: a TorchScript file, or a factory and a weights file.

    Parameters
    ----------
    spec : str
        A TorchScript file, or ``package.module:factory``.
    weights : str, optional
        The ``state_dict`` file for a factory spec (refused for a TorchScript file).
    """

    spec: str
    weights: str | None = None

    @property
    def is_factory(self) -> bool:
        """True for ``package.module:factory`` (a path that exists is never a factory)."""
        return bool(_FACTORY.match(self.spec)) and not os.path.exists(self.spec)

    def files(self) -> list[Path]:
        """The files the model is read from (absolute)."""
        paths = [self.weights] if self.is_factory else [self.spec]
        return [Path(p).expanduser().resolve() for p in paths if p is not None]

    def to_record(self) -> dict:
        """A JSON record: the spec with absolute paths and each file's SHA-256."""
        spec = self.spec if self.is_factory else str(self.files()[0])
        weights = str(self.files()[0]) if self.is_factory and self.weights else None
        return {"spec": spec, "weights": weights,
                "sha256": {str(p): sha256_file(p) for p in self.files() if p.is_file()}}

    @classmethod
    def from_record(cls, record: dict) -> "ModelSpec":
        return cls(record["spec"], record.get("weights"))

    def load(self, role: str) -> nn.Module:
        """Build the module, in eval mode on the CPU (see :func:`load_model`)."""
        return load_model(self.spec, self.weights, role=role)


def load_model(spec: str, weights: str | os.PathLike | None = None, *,
               role: str = "classifier") -> nn.Module:
    """Load a model from a TorchScript file or from ``package.module:factory`` + weights.

    Parameters
    ----------
    spec : str
        A TorchScript file, or ``package.module:factory`` (the current working
        folder is importable, as with ``python -m``).
    weights : str or os.PathLike, optional
        The factory model's ``state_dict`` (loaded with ``weights_only=True``).
    role : {"classifier", "vae", "oracle"}
        Names the flag in errors (``--classifier``, ``--vae-weights``...).

    Returns
    -------
    nn.Module
        In eval mode, on the CPU.

    Raises
    ------
    ValueError
        Naming the flag and the file or name at fault: a missing file, a file
        that is not TorchScript, a factory that cannot be imported or does not
        return a module, weights that do not fit it, a VAE without
        ``encode``/``decode``.
    """
    flag = f"--{role}"
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{flag} must be a TorchScript file or package.module:factory; "
                         f"got {spec!r}.")
    if ModelSpec(spec).is_factory:
        model = _from_factory(spec, weights, flag)
    else:
        if weights is not None:
            raise ValueError(f"{flag}-weights is only for a package.module:factory spec; "
                             f"{flag} {spec!r} is a file, which carries its own weights.")
        model = _from_torchscript(Path(spec).expanduser(), flag)
    if role == "vae":
        missing = [m for m in _VAE_METHODS if not callable(getattr(model, m, None))]
        if missing:
            raise ValueError(f"{flag} must give a beta-VAE with encode(x) -> (mu, logvar) and "
                             f"decode(z) -> x; {spec!r} has no {' or '.join(missing)}.")
    return model.cpu().eval()


def _from_torchscript(path: Path, flag: str) -> nn.Module:
    if not path.is_file():
        raise ValueError(f"{flag} must name an existing TorchScript file or "
                         f"package.module:factory; {str(path)!r} does not exist.")
    try:
        with quiet_jit():
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{flag} file {str(path)!r} must be a TorchScript archive (torch.jit.save); "
            f"torch cannot read it as one ({first}). For a state_dict, pass "
            f"{flag} package.module:factory and {flag}-weights {str(path)!r}.") from exc


@contextlib.contextmanager
def quiet_jit():
    """Silence torch's FutureWarning that TorchScript is deprecated (torch 2.14).

    Reading and writing TorchScript files is what ``--classifier FILE`` and
    ``train-vae`` promise; the factory + weights spec needs no TorchScript.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit", category=FutureWarning)
        yield


def _from_factory(spec: str, weights, flag: str) -> nn.Module:
    module_name, attr = spec.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{flag} {spec!r}: module {module_name!r} cannot be imported "
                         f"({exc}). Run from the folder that holds it, or install it.") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{flag} {spec!r}: module {module_name!r} has no callable "
                         f"{attr!r}.")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"{flag} {spec!r} must return a torch.nn.Module when called with no "
                         f"arguments; it returned {type(model).__name__}.")
    if weights is not None:
        _load_weights(model, Path(weights).expanduser(), flag)
    return model


def _load_weights(model: nn.Module, path: Path, flag: str) -> None:
    if not path.is_file():
        raise ValueError(f"{flag}-weights must name an existing state_dict file; "
                         f"{str(path)!r} does not exist.")
    try:
        state = load_state_dict(path)
    except (SessionFormatError, UnsafeFileError) as exc:
        raise ValueError(f"{flag}-weights {exc}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{flag}-weights {str(path)!r} must fit the factory's model; "
                         f"load_state_dict says: {str(exc).splitlines()[0]} "
                         f"{' '.join(str(exc).splitlines()[1:3])}") from exc


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy of ``model`` whose parameters can be trained.

    ``copy.deepcopy`` of a TorchScript module gives parameters that are not
    leaves of the autograd graph (torch clones them with grad), which no
    optimiser accepts; a TorchScript module is copied through a save and load.
    """
    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        device = next(iter(model.parameters()), torch.empty(0)).device
        with quiet_jit():
            torch.jit.save(model, buffer)
            buffer.seek(0)
            copy_ = torch.jit.load(buffer, map_location=device)
        return copy_.train(model.training)
    return copy.deepcopy(model)
