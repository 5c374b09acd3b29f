"""What a session debugs: the user's images and models, recorded so the session reopens alone.

:class:`SessionInputs` names an image source (an ImageFolder tree or an
``.npz``, read by :func:`~defuse_widgets.data.images.load_images`) and model
specs (:class:`~defuse_widgets.models.loading.ModelSpec`). A session records
them in ``session.json`` with absolute paths and SHA-256 sums; later
subcommands and ``DefuseDashboard.open(folder)`` load them from there. What
was loaded is still checked against the session's fingerprints, so a changed
file is refused, and a moved one can be given again under its new path.

:func:`check_fit` is the boundary rule every entry point applies before any
work: the classifier outputs one logit per class and the β-VAE decodes images
of the data's shape. This module imports no UI code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from defuse_widgets.models.loading import ModelSpec
from defuse_widgets.models.probes import check_logits, input_shape

__all__ = ["ROLES", "SessionInputs", "check_fit", "load_given", "load_recorded"]

#: The models a session may be given, in the order they are loaded.
ROLES = ("classifier", "vae", "oracle")


@dataclass(frozen=True)
class SessionInputs:
    """The image source and model specs of a session on the user's own data.

    Parameters
    ----------
    data : str or os.PathLike, optional
        An ImageFolder tree (``root/<class>/*.png``, or with
        ``train``/``val``/``test`` split folders) or an ``.npz`` file.
    classifier, vae, oracle : ModelSpec, str or os.PathLike, optional
        The models (a path is a TorchScript file); ``oracle`` backs the
        simulated annotator.
    split_seed : int, default=0
        Seed of the stratified split when the source has no split folders.
    """

    data: str | None = None
    classifier: ModelSpec | None = None
    vae: ModelSpec | None = None
    oracle: ModelSpec | None = None
    split_seed: int = 0

    def __post_init__(self):
        for role in ROLES:   # a plain path or "package.module:factory" is a spec too
            spec = getattr(self, role)
            if isinstance(spec, (str, os.PathLike)):
                object.__setattr__(self, role, ModelSpec(os.fspath(spec)))
            elif spec is not None and not isinstance(spec, ModelSpec):
                raise TypeError(f"{role} must be a ModelSpec, a TorchScript path or "
                                f"'package.module:factory'; got {type(spec).__name__}.")
        if self.data is not None:
            object.__setattr__(self, "data", str(Path(os.fspath(self.data)).expanduser()
                                                 .resolve()))

    @property
    def empty(self) -> bool:
        return self.data is None and all(getattr(self, r) is None for r in ROLES)

    def over(self, saved: "SessionInputs | None") -> "SessionInputs":
        """These inputs, with the fields they leave unset taken from ``saved``."""
        if saved is None:
            return self
        given = {f: getattr(self, f) for f in ("data", *ROLES) if getattr(self, f) is not None}
        return replace(saved, **given)

    def load_data(self):
        """The :class:`~defuse_widgets.data.DataSplits` of ``data`` (None when unset)."""
        if self.data is None:
            return None
        from defuse_widgets.data.images import load_images

        if not os.path.exists(self.data):
            raise ValueError(f"data must name an existing ImageFolder or .npz; {self.data!r} "
                             "does not exist (moved? pass --data with its new path).")
        return load_images(self.data, seed=self.split_seed)

    def load_models(self) -> dict:
        """``{role: nn.Module}`` for each model spec that is set."""
        return {r: getattr(self, r).load(r) for r in ROLES if getattr(self, r) is not None}

    def to_record(self, data=None) -> dict:
        """The JSON record saved in ``session.json`` (``data``: the loaded splits, described)."""
        rec = {"split_seed": self.split_seed,
               **{r: getattr(self, r).to_record() for r in ROLES if getattr(self, r)}}
        if self.data is not None:
            rec["data"] = {"path": self.data}
            if data is not None:
                rec["data"].update(name=data.name, class_names=list(data.class_names),
                                   image_shape=list(data.image_shape),
                                   sizes=[len(data.y_train), len(data.y_val), len(data.y_test)])
        return rec

    @classmethod
    def from_record(cls, rec: dict) -> "SessionInputs":
        return cls(data=(rec.get("data") or {}).get("path"), split_seed=rec.get("split_seed", 0),
                   **{r: ModelSpec.from_record(rec[r]) for r in ROLES if rec.get(r)})


def _first_image(data) -> torch.Tensor:
    from defuse_widgets.models.inference import to_unit

    return to_unit(data.X_train[:1]).float()


def _run(model, fn, x, role: str, shape: tuple):
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return fn(x)
    except RuntimeError as exc:
        takes = input_shape(model, shape, encoder=role == "vae")
        takes = f", but it takes {takes}" if takes and takes != shape else ""
        raise ValueError(f"{role} must take the data's images of shape {shape}{takes}; it "
                         f"refuses them: {str(exc).strip().splitlines()[0]}") from exc
    finally:
        model.train(was)


def check_fit(data, *, classifier=None, vae=None, oracle=None) -> None:
    """Check the models fit the data, before any work: the rule at every entry point.

    Parameters
    ----------
    data : DataSplits
    classifier, oracle : nn.Module, optional
        Must map one image (1, C, H, W) to logits of shape (1, n_classes).
    vae : nn.Module, optional
        ``decode(encode(x)[0])`` must have the images' shape (1, C, H, W).

    Raises
    ------
    ValueError
        Naming both numbers (classes vs. logits) or both shapes.
    TypeError
        When the classifier or oracle returns something other than a tensor.
    """
    x, shape = _first_image(data), tuple(data.image_shape)
    for role, model in (("classifier", classifier), ("oracle", oracle)):
        if model is None:
            continue
        logits = check_logits(_run(model, model, x.to(_device(model)), role, shape), name=role)
        width = logits.shape[-1] if logits.ndim == 2 else tuple(logits.shape[1:])
        if width != data.n_classes:
            names = ", ".join(map(str, data.class_names[:6])) + (
                ", ..." if data.n_classes > 6 else "")
            raise ValueError(f"{role} must output one logit per class: the data has "
                             f"{data.n_classes} classes ({names}) but the {role} outputs "
                             f"{width}.")
    if vae is not None:
        dev = _device(vae)
        recon = _run(vae, lambda t: vae.decode(vae.encode(t)[0]), x.to(dev), "vae", shape)
        if tuple(recon.shape[1:]) != shape:
            raise ValueError(f"vae must decode images of the data's shape {shape}; it "
                             f"decodes {tuple(recon.shape[1:])}.")


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def load_given(inputs, data, classifier, vae, oracle) -> dict:
    """The data and models given directly or by ``inputs``, loaded and checked to fit."""
    given = {"data": data, "classifier": classifier, "vae": vae, "oracle": oracle}
    if inputs is not None:
        if data is None:
            given["data"] = inputs.load_data()
        for role, model in inputs.load_models().items():
            given[role] = given[role] if given[role] is not None else model
    if given["data"] is not None:
        check_fit(given["data"], classifier=given["classifier"], vae=given["vae"],
                  oracle=given["oracle"])
    return given


def load_recorded(what: str, load):
    """Load one of the session's recorded inputs; a moved file says how to give it again."""
    try:
        return load()
    except ValueError as exc:
        flag = "--data" if what == "data" else f"--{what}"
        raise ValueError(f"{exc} The session recorded this {what} when it was created; pass "
                         f"{flag} with the file's new path (its content must be the same) to "
                         "reopen it.") from exc
