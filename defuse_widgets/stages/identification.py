"""Identification (paper Algorithm 1): unrestricted adversarial examples.

Each training image is encoded; Q perturbations ε ~ Beta(a, b)^M are added to
its encoder mean; every decode the classifier labels differently from the
image's ground truth is kept, up to ``max_per_instance`` per image (those with
the smallest ‖ε‖). The work is batched across instances: a chunk of images
gives ``chunk × Q`` codes that are decoded and classified in large batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from defuse_widgets._validation import (
    check_executor,
    check_images,
    check_int,
    check_labels,
    check_module,
    check_number,
    check_seed,
    resolve_device,
)
from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.memory import trim_heap
from defuse_widgets.models.inference import check_images_fit, decode, encode_mean, n_outputs
from defuse_widgets.models.loading import copy_model
from defuse_widgets.models.precision import GUARD, autocast, guarded_argmax, resolve_precision
from defuse_widgets.models.probes import check_logits


@dataclass(frozen=True)
class AdversarialExamples:
    """The unrestricted adversarial examples Ψ found by :func:`identify`.

    Attributes
    ----------
    codes : ndarray of shape (n, n_latent), float32
        Perturbed latent codes μ + ε whose decode is misclassified.
    source_index : ndarray of shape (n,), int64
        Index of the training image each code was perturbed from.
    true_label : ndarray of shape (n,), int64
        Ground-truth label of that training image.
    predicted_label : ndarray of shape (n,), int64
        Classifier prediction on the decode.
    noise_norm : ndarray of shape (n,), float32
        ‖ε‖₂ of the perturbation (after centring, when ``centered``).
    n_decoded : int
        Number of decodes classified (n_images × Q).
    params : dict
        Q, a, b, centered, max_per_instance and seed.
    """

    #: Arrays an ``.npz`` written from :meth:`to_npz` holds.
    NPZ_KEYS = ("codes", "source_index", "true_label", "predicted_label", "noise_norm",
                "n_decoded", "params")

    codes: np.ndarray
    source_index: np.ndarray
    true_label: np.ndarray
    predicted_label: np.ndarray
    noise_norm: np.ndarray
    n_decoded: int
    params: dict

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def rate(self) -> float:
        """Share of all decodes that were misclassified (before the per-instance cap)."""
        return float(self.params.get("n_misclassified", len(self))) / max(self.n_decoded, 1)

    def subset(self, index) -> "AdversarialExamples":
        """Return the examples at ``index`` (boolean mask or integer array)."""
        return AdversarialExamples(self.codes[index], self.source_index[index],
                                   self.true_label[index], self.predicted_label[index],
                                   self.noise_norm[index], self.n_decoded, dict(self.params))

    def to_npz(self) -> dict:
        """Arrays and parameters as a dict ready for ``np.savez``."""
        import json
        return dict(codes=self.codes, source_index=self.source_index,
                    true_label=self.true_label, predicted_label=self.predicted_label,
                    noise_norm=self.noise_norm, n_decoded=np.int64(self.n_decoded),
                    params=np.array(json.dumps(self.params)))

    @classmethod
    def from_npz(cls, data) -> "AdversarialExamples":
        """Inverse of :meth:`to_npz`; ``data`` is a mapping such as ``np.load(path)``.

        Raises
        ------
        ValueError
            When an array is missing or its shape or dtype does not fit the others.
        """
        import json
        codes = np.asarray(data["codes"])
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.floating):
            raise ValueError(f"codes must be a float array of shape (n, n_latent); "
                             f"got shape {codes.shape} and dtype {codes.dtype}")
        arrays = {}
        for key in ("source_index", "true_label", "predicted_label", "noise_norm"):
            arrays[key] = a = np.asarray(data[key])
            kind = np.floating if key == "noise_norm" else np.integer
            if a.shape != (len(codes),) or not np.issubdtype(a.dtype, kind):
                raise ValueError(f"{key} must have shape ({len(codes)},) like codes, with "
                                 f"{kind.__name__} dtype; got shape {a.shape} and dtype {a.dtype}")
        params = json.loads(str(data["params"]))
        if not isinstance(params, dict):
            raise ValueError(f"params must be a JSON object; got {params!r}")
        return cls(codes, arrays["source_index"], arrays["true_label"],
                   arrays["predicted_label"], arrays["noise_norm"], int(data["n_decoded"]),
                   params)


def check_compatible(classifier: nn.Module, vae: nn.Module, X: torch.Tensor,
                     device: torch.device) -> int:
    """Check that decodes fit the classifier and return the latent size.

    Raises
    ------
    ValueError
        When the decoder's output shape differs from the images' shape or the
        classifier does not return logits of shape (n, n_classes).
    """
    check_images_fit(X, vae=vae)   # the classifier sees decodes: checked below
    with torch.inference_mode():
        mu = encode_mean(vae, X[:2], device=device)
        if mu.ndim != 2:
            raise ValueError("vae.encode must return codes of shape (n, n_latent); "
                             f"got shape {tuple(mu.shape)}.")
        x_dec = decode(vae, mu, device=device)
        if tuple(x_dec.shape[1:]) != tuple(X.shape[1:]):
            raise ValueError("vae's decoder must output images shaped like X, which the "
                             f"classifier takes: expected (n, {', '.join(map(str, X.shape[1:]))}); "
                             f"got {tuple(x_dec.shape)}.")
        classifier.eval()
        try:
            logits = check_logits(classifier(x_dec.to(device)))
        except RuntimeError as exc:
            raise ValueError("classifier must accept the decoder's output of shape "
                             f"{tuple(x_dec.shape)}; it raised: {exc}") from exc
        if logits.ndim != 2 or logits.shape[0] != len(x_dec):
            raise ValueError("classifier must return logits of shape (n, n_classes); "
                             f"got {tuple(logits.shape)}.")
    return mu.shape[1]


def identify(classifier: nn.Module, vae: nn.Module, X, y, *, Q: int = 500,
             a: float = 50.0, b: float = 50.0, max_per_instance: int | None = 100,
             centered: bool = True, chunk_size: int | None = None,
             batch_size: int | None = None, seed: int = 0, device=None,
             precision: str = "fp32", progress: bool = True) -> AdversarialExamples:
    """Find unrestricted adversarial examples (Algorithm 1) for every image in X.

    Parameters
    ----------
    classifier : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes).
    vae : BetaVAE or any module with ``encode(x) -> (mu, logvar)`` and ``decode(z)``
        Its decodes must have the shape of X.
    X : Tensor of shape (n, C, H, W)
        Training images: float in [0, 1], or uint8 pixels (0-255).
    y : Tensor of shape (n,)
        Their ground-truth labels.
    Q : int, default=500
        Perturbations per image (paper: 500 for MNIST, 100 for SVHN/GTSRB).
    a, b : float, default=50
        Beta(a, b) noise parameters (paper: 50 for MNIST, 75 for SVHN/GTSRB).
    max_per_instance : int or None, default=100
        Cap on ``|ψ|`` per image; the examples with the smallest ‖ε‖ are kept.
    centered : bool, default=True
        Subtract the noise mean, ε - a/(a+b), so perturbations are symmetric
        around the image's own code (the paper's stated aim: "a minimal amount
        of perturbation noise"). ``centered=False`` is the paper's literal
        Algorithm 1, which adds ε ~ Beta(a, b) and so shifts every code by
        about +0.5 in every dimension. The default was chosen on the
        planted-bug benchmark (docs: "Choices that differ from the paper"):
        centred noise gave more precise adversarial examples and found more
        planted bugs.
    chunk_size : int, optional
        Images whose noise is drawn per step; defaults to ``max(1, 4096 // Q)``.
        Results do not depend on it.
    batch_size : int, optional
        Decodes per forward pass. Default: 4096 on CUDA, 64 on CPU, where
        small batches stay in cache (measured on 2 cores: about 3,900
        decodes/s at 32–64 against 2,700 at 256; ``benchmarks/identification.py``).
    seed : int or numpy.random.Generator, default=0
    device : str or torch.device, optional
        CUDA when available if not given.
    precision : {"fp32", "bf16", "auto"}, default="fp32"
        Decode and classify under bf16 autocast (``"auto"``: where the
        hardware runs bf16 natively), in the channels-last memory format
        (on copies of the models). Encoding, noise and the stored codes stay
        fp32. A decode whose two largest bf16 logits lie within
        :data:`~defuse_widgets.models.precision.GUARD` of each other is
        decoded and classified again in fp32, so the misclassified/not
        decisions are fp32's (``params["n_rechecked"]`` counts those decodes;
        docs: "Speed").
    progress : bool, default=True

    Returns
    -------
    AdversarialExamples
    """
    check_module("classifier", classifier)
    check_module("vae", vae)
    X = check_images("X", X)
    y = check_labels("y", y, n_samples=len(X))
    Q = check_int("Q", Q, low=1)
    a = check_number("a", a, low=0, low_inclusive=False)
    b = check_number("b", b, low=0, low_inclusive=False)
    if max_per_instance is not None:
        max_per_instance = check_int("max_per_instance", max_per_instance, low=1)
    check_seed("seed", seed, generator=True)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    if batch_size is None:
        batch_size = 4096 if dev.type == "cuda" else 64
    batch_size = check_int("batch_size", batch_size, low=1)
    chunk = check_int("chunk_size", chunk_size, low=1) if chunk_size else max(1, 4096 // Q)
    classifier.to(dev).eval()
    vae.to(dev).eval()
    n_latent = check_compatible(classifier, vae, X, dev)
    check_labels("y", y, n_classes=n_outputs(classifier, X, device=dev))
    exact = lambda zb: classifier(vae.decode(zb.to(dev)))   # noqa: E731
    fast, guard = exact, 0.0
    if precision == "bf16":   # bf16 convolutions and pooling are fast in channels-last
        fmt = torch.channels_last
        clf_cl = copy_model(classifier).to(memory_format=fmt)
        vae_cl = copy_model(vae).to(memory_format=fmt)

        def bf16_pass(zb):
            with autocast("bf16", dev):
                return clf_cl(vae_cl.decode(zb.to(dev)).contiguous(memory_format=fmt))
        fast, guard = bf16_pass, GUARD

    rng = np.random.default_rng(seed)
    shift = a / (a + b) if centered else 0.0
    keep = min(Q, max_per_instance or Q)
    parts = {k: [] for k in ("codes", "source", "true", "pred", "norm")}
    n_misclassified = n_rechecked = 0
    with torch.inference_mode():
        mu_all = encode_mean(vae, X, batch_size=batch_size, device=dev)
        for start in tqdm(range(0, len(X), chunk), desc="identify", disable=not progress):
            mu = mu_all[start:start + chunk]
            m = len(mu)
            # Noise comes from a seeded NumPy generator, so results do not depend
            # on the device or on chunk_size.
            eps = torch.from_numpy(rng.beta(a, b, size=(m, Q, n_latent)) - shift).float()
            z = (mu[:, None, :] + eps).reshape(-1, n_latent)
            preds, n = guarded_argmax(fast, exact, z, batch_size=batch_size, guard=guard)
            preds, n_rechecked = preds.view(m, Q), n_rechecked + n
            yc = y[start:start + m]
            wrong = preds != yc[:, None]
            n_misclassified += int(wrong.sum())
            norm = eps.norm(dim=2)
            ranked = torch.where(wrong, norm, torch.full_like(norm, float("inf")))
            order = ranked.argsort(dim=1, stable=True)[:, :keep]
            sel = torch.gather(wrong, 1, order)
            rows = torch.arange(m)[:, None].expand(-1, keep)[sel]
            cols = order[sel]
            parts["codes"].append(z.view(m, Q, n_latent)[rows, cols])
            parts["source"].append(rows + start)
            parts["true"].append(yc[rows])
            parts["pred"].append(preds[rows, cols])
            parts["norm"].append(norm[rows, cols])
    cat = {k: torch.cat(v).numpy() for k, v in parts.items()}
    trim_heap()   # the decodes' freed pages go back to the system
    params = dict(Q=Q, a=a, b=b, centered=centered, max_per_instance=max_per_instance,
                  seed=seed, n_misclassified=n_misclassified, precision=precision,
                  n_rechecked=n_rechecked)
    return AdversarialExamples(cat["codes"].astype(np.float32), cat["source"].astype(np.int64),
                               cat["true"].astype(np.int64), cat["pred"].astype(np.int64),
                               cat["norm"].astype(np.float32), len(X) * Q, params)


def identify_in_steps(classifier: torch.nn.Module, vae: torch.nn.Module, X, y, *, Q: int,
                      a: float, b: float, max_per_instance: int | None = 100,
                      centered: bool = True, seed: int = 0, batch_size: int | None = None,
                      n_steps: int = 20, device: Any = None, precision: str = "fp32",
                      callback: ProgressCallback | None = None,
                      executor=None) -> AdversarialExamples | None:
    """Run :func:`~defuse_widgets.stages.identification.identify` over slices of X, reporting
    progress.

    The slices share one random generator and a whole number of identify's
    chunks, so the result equals ``identify(..., seed=seed)`` on all of X.

    Parameters
    ----------
    classifier, vae, X, y, Q, a, b, max_per_instance, centered, seed, batch_size, device,
    precision
        As in :func:`~defuse_widgets.stages.identification.identify`; X has shape
        (n, C, H, W), y shape (n,).
    n_steps : int, default=20
        About how many slices (progress reports) to use.
    callback : callable, optional
        ``callback("identification", n_done, n_total)`` before the first slice
        (``n_done`` = 0) and after each one (the
        :data:`~defuse_widgets.callbacks.ProgressCallback` protocol); True stops.
    executor : concurrent.futures.Executor, optional
        Run the slices as tasks of this executor (Dask's
        ``client.get_executor()``, a ``ProcessPoolExecutor``); the result is
        the same (see :func:`~defuse_widgets.scale_out.identify_sharded`).

    Returns
    -------
    AdversarialExamples or None
        None when ``callback`` stopped the work.
    """
    X = check_images("X", X)   # before any slice runs
    Q = check_int("Q", Q, low=1)
    n_steps = check_int("n_steps", n_steps, low=1)
    seed = check_int("seed", seed)
    n = len(X)
    chunk = max(1, 4096 // Q)   # identify's default chunk, so the noise stream is the same
    step = chunk * max(1, math.ceil(n / chunk / n_steps))
    rng = np.random.default_rng(seed)   # identify continues this generator slice by slice
    kw = dict(Q=Q, a=a, b=b, max_per_instance=max_per_instance, centered=centered,
              chunk_size=chunk, batch_size=batch_size, device=device, precision=precision)
    if executor is not None:
        return identify_sharded(classifier, vae, X, y, executor=executor, step=step, rng=rng,
                                seed=seed, callback=callback, **kw)
    if callback is not None and callback("identification", 0, n):   # a sign of life at once
        return None
    parts = []
    for start in range(0, max(n, 1), step):
        part = identify(classifier, vae, X[start:start + step], y[start:start + step],
                        seed=rng, progress=False, **kw)
        parts.append((start, part))
        if callback is not None and callback("identification", min(start + step, n), n):
            return None
    return concatenate(parts, seed=seed)


def concatenate(parts: list, *, seed: int) -> AdversarialExamples:
    """Join identification results of consecutive slices of the training images.

    Parameters
    ----------
    parts : list of (int, AdversarialExamples)
        Each slice's first image index and its result.
    seed : int
        The seed of the whole run (stored in ``params``).
    """
    params = dict(parts[0][1].params, seed=seed,
                  **{k: sum(p.params.get(k, 0) for _, p in parts)
                     for k in ("n_misclassified", "n_rechecked")})
    cat = [np.concatenate([getattr(p, f) for _, p in parts])
           for f in ("codes", "true_label", "predicted_label", "noise_norm")]
    source = np.concatenate([p.source_index + start for start, p in parts]).astype(np.int64)
    return AdversarialExamples(cat[0], source, cat[1], cat[2], cat[3],
                               sum(p.n_decoded for _, p in parts), params)


def identify_sharded(classifier, vae, X, y, *, executor, step: int, rng: np.random.Generator,
                     seed: int, callback=None, **identify_params):
    """Identification with each slice of ``step`` training images as an executor task.

    The noise stream is the one :func:`~defuse_widgets.stages.identification.identify`
    draws in one process: before submitting a slice, this process snapshots
    the generator and then draws (and discards) that slice's noise chunk by
    chunk, as ``identify`` would, so the next slice starts where it should.
    Drawing Beta noise is cheap next to decoding and classifying it.

    Parameters
    ----------
    classifier, vae : nn.Module
    X : Tensor of shape (n, C, H, W)
    y : Tensor of shape (n,)
    executor : concurrent.futures.Executor
    step : int
        Images per task, a multiple of ``identify_params["chunk_size"]``.
    rng : numpy.random.Generator
        The run's generator, at its start.
    seed : int
        The run's seed (stored with the result).
    callback : ProgressCallback, optional
        ``callback("identification", n_done, n)`` as slices return, in order;
        True cancels the rest and returns None.
    **identify_params
        Q, a, b, max_per_instance, centered, chunk_size, batch_size, device, precision.

    Returns
    -------
    AdversarialExamples or None
    """
    check_executor(executor)
    p = identify_params
    n, chunk = len(X), p["chunk_size"]
    n_latent = encode_mean(vae, X[:1], device=next(vae.parameters()).device).shape[1]
    futures = []
    for start in range(0, max(n, 1), step):
        shard_rng = np.random.Generator(np.random.PCG64())
        shard_rng.bit_generator.state = rng.bit_generator.state
        futures.append((start, executor.submit(
            identify, classifier, vae, X[start:start + step], y[start:start + step],
            seed=shard_rng, progress=False, **p)))
        for s in range(start, min(start + step, n), chunk):   # skip the slice's noise
            rng.beta(p["a"], p["b"], size=(min(chunk, n - s), p["Q"], n_latent))
    parts = []
    try:
        for start, future in futures:
            parts.append((start, future.result()))
            if callback is not None and callback("identification", min(start + step, n), n):
                return None
    finally:
        for _, future in futures:
            future.cancel()
    return concatenate(parts, seed=seed)
