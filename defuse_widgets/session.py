"""The session folder of the dashboard: files, stage runs, and identification in steps.

A session folder holds what each Defuse stage hands to the next, so a new
dashboard on the same folder resumes where the last one stopped:

* ``adversarial.npz``: the unrestricted adversarial examples (identification),
* ``regions.npz``: the candidate misclassification regions (distillation),
* ``annotations.sqlite``: review sets and votes (labeling),
* ``settings.json``: the settings the arrays were made with,
* ``latent_map.npz``: the cached t-SNE map of the latent explorer,
* ``checkpoints/`` and ``corrected_classifier.pt``: correction.

Every array file is written to a temporary name and renamed, so a reader
never sees half a file. Results of a new identification make the regions and
votes of the old one meaningless; they are moved to ``archive/<time>/``
rather than deleted. This module imports no UI code.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ._validation import _describe, check_int
from .annotations import AnnotationStore
from .identification import AdversarialExamples, identify
from .regions import Regions

__all__ = ["Session", "correction_data", "identify_in_steps", "map_subset"]

#: ``callback(n_done, n_total) -> bool | None``; a True return stops the work.
StepCallback = Callable[[int, int], "bool | None"]


class Session:
    """One session folder: its files, the stages that write them, and the vote store.

    Parameters
    ----------
    path : str or os.PathLike
        The folder; created if missing.

    Attributes
    ----------
    store : AnnotationStore or None
        The store opened by :meth:`open_store`.
    archived : Path or None
        Where the last save moved the results it replaced, if anywhere.

    Examples
    --------
    >>> session = Session("sessions/demo")  # doctest: +SKIP
    >>> adversarial = session.identify(clf, vae, X, y, Q=10, a=50, b=50)  # doctest: +SKIP
    >>> regions = session.distill(adversarial, n_classes=10, n_components=30,
    ...                           eps=0.01)  # doctest: +SKIP
    >>> Session("sessions/demo").load_regions(adversarial)  # the same regions  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"session must be a str or os.PathLike naming a folder; "
                            f"got {_describe(path)}.")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"session must name a folder, not a file; got {str(self.path)!r}.")
        self.path.mkdir(parents=True, exist_ok=True)
        self.store: AnnotationStore | None = None
        self.archived: Path | None = None   # where the last save moved old results, if any

    adversarial_path = property(lambda self: self.path / "adversarial.npz")
    regions_path = property(lambda self: self.path / "regions.npz")
    store_path = property(lambda self: self.path / "annotations.sqlite")
    settings_path = property(lambda self: self.path / "settings.json")
    latent_map_path = property(lambda self: self.path / "latent_map.npz")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    model_path = property(lambda self: self.path / "corrected_classifier.pt")

    # ------------------------------------------------------------------ load
    def load_adversarial(self) -> AdversarialExamples | None:
        """The saved adversarial examples, or None when there are none."""
        if not self.adversarial_path.exists():
            return None
        with np.load(self.adversarial_path, allow_pickle=False) as data:
            return AdversarialExamples.from_npz(data)

    def load_regions(self, adversarial: AdversarialExamples | None = None) -> Regions | None:
        """The saved regions, or None when missing or not distilled from ``adversarial``.

        Regions belong to one set of adversarial examples: ``assignment`` has one
        entry per example. A file that does not match ``adversarial`` is ignored.
        """
        if not self.regions_path.exists():
            return None
        with np.load(self.regions_path, allow_pickle=False) as data:
            regions = Regions.from_npz(data)
        if adversarial is not None and len(regions.assignment) != len(adversarial):
            return None
        return regions

    def load_settings(self) -> dict:
        """The settings saved with the arrays, ``{}`` when there are none."""
        if not self.settings_path.exists():
            return {}
        return json.loads(self.settings_path.read_text())

    def open_store(self, n_classes: int) -> AnnotationStore:
        """The store on ``annotations.sqlite`` (created with ``n_classes`` classes if new).

        It stays open, as ``store``, until :meth:`close` or a new result archives it.
        """
        if self.store is None:
            self.store = AnnotationStore(self.store_path, n_classes=n_classes)
        return self.store

    def close(self) -> None:
        """Close the store, if open."""
        if self.store is not None:
            self.store.close()
            self.store = None

    # ---------------------------------------------------------------- stages
    def identify(self, classifier: torch.nn.Module, vae: torch.nn.Module, X, y, *, Q: int,
                 a: float, b: float, centered: bool = False, max_per_instance: int | None = 100,
                 seed: int = 0, device: Any = None,
                 callback: StepCallback | None = None) -> AdversarialExamples | None:
        """Run :func:`identify_in_steps` and save its result (see :meth:`save_adversarial`).

        Returns None, saving nothing, when ``callback`` stopped the work.
        """
        settings = dict(Q=Q, a=a, b=b, centered=centered, max_per_instance=max_per_instance,
                        seed=seed)
        adversarial = identify_in_steps(classifier, vae, X, y, device=device, callback=callback,
                                        **settings)
        if adversarial is not None:
            self.save_adversarial(adversarial, settings)
        return adversarial

    def distill(self, adversarial: AdversarialExamples, *, n_classes: int, n_components: int,
                eps: float, max_samples: int | None = 10000, seed: int = 0,
                stopped: Callable[[], bool] | None = None) -> Regions | None:
        """Fit a :class:`~defuse_widgets.distillation.Distiller` and save its regions.

        Returns None, saving nothing, when ``stopped()`` is True once the fit returns.
        """
        from .distillation import Distiller

        regions = Distiller(n_components=n_components, eps=eps, max_samples=max_samples,
                            random_state=seed).fit(adversarial, n_classes=n_classes).regions_
        if stopped is not None and stopped():
            return None
        self.save_regions(regions, dict(n_components=n_components, eps=eps,
                                        max_samples=max_samples, seed=seed))
        return regions

    # ------------------------------------------------------------------ save
    def save_adversarial(self, adversarial: AdversarialExamples, settings: dict) -> Path | None:
        """Write ``adversarial.npz``; archive regions and votes of the previous examples.

        Parameters
        ----------
        adversarial : AdversarialExamples
        settings : dict
            Identification settings, saved under ``"identification"``.

        Returns
        -------
        Path or None
            The archive folder the old regions and votes were moved to, if any.
            ``store`` is closed first; close any other store open on the file.
        """
        self.close()
        self.archived = self._archive("regions.npz", "annotations.sqlite", "failure_data.npz")
        self._save_npz(self.adversarial_path, adversarial.to_npz())
        self._save_settings({"identification": dict(settings)})
        return self.archived

    def save_regions(self, regions: Regions, settings: dict) -> Path | None:
        """Write ``regions.npz``; archive the votes on the previous regions.

        Returns the archive folder, if votes were moved (``store`` is closed first).
        """
        self.close()
        self.archived = self._archive("annotations.sqlite", "failure_data.npz")
        self._save_npz(self.regions_path, regions.to_npz())
        self._save_settings({**self.load_settings(), "distillation": dict(settings)})
        return self.archived

    def save_model(self, model: torch.nn.Module) -> Path:
        """Save the corrected classifier's ``state_dict`` as ``corrected_classifier.pt``."""
        tmp = self.model_path.with_name(self.model_path.name + ".tmp")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, self.model_path)
        return self.model_path

    def _save_npz(self, path: Path, arrays: dict) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:   # a file object keeps the name (no ".npz" appended)
            np.savez(f, **arrays)
        os.replace(tmp, path)

    def _save_settings(self, settings: dict) -> None:
        tmp = self.settings_path.with_name(self.settings_path.name + ".tmp")
        tmp.write_text(json.dumps(settings, indent=2, default=str))
        os.replace(tmp, self.settings_path)

    def _archive(self, *names: str) -> Path | None:
        """Move the named files (and SQLite side files) to ``archive/<time>/``.

        Without any vote in the store there is nothing worth keeping: they are deleted.
        """
        present = [p for name in names for p in (self.path / name,
                   self.path / f"{name}-wal", self.path / f"{name}-shm") if p.exists()]
        if not present or not self._has_votes():
            for p in present:
                p.unlink()
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder, n = self.path / "archive" / stamp, 1
        while folder.exists():
            folder, n = self.path / "archive" / f"{stamp}-{n}", n + 1
        folder.mkdir(parents=True)
        for p in present:
            shutil.move(str(p), str(folder / p.name))
        return folder

    def _has_votes(self) -> bool:
        if not self.store_path.exists():
            return False
        try:
            with AnnotationStore(self.store_path) as store:
                return bool(store.annotators())
        except ValueError:   # not a store we can read: keep it
            return True

    def __repr__(self) -> str:
        return f"Session({str(self.path)!r})"


def identify_in_steps(classifier: torch.nn.Module, vae: torch.nn.Module, X, y, *, Q: int,
                      a: float, b: float, max_per_instance: int | None = 100,
                      centered: bool = False, seed: int = 0, batch_size: int = 4096,
                      n_steps: int = 20, device: Any = None,
                      callback: StepCallback | None = None) -> AdversarialExamples | None:
    """Run :func:`~defuse_widgets.identification.identify` over slices of X, reporting progress.

    The slices share one random generator and a whole number of identify's
    chunks, so the result equals ``identify(..., seed=seed)`` on all of X.

    Parameters
    ----------
    classifier, vae, X, y, Q, a, b, max_per_instance, centered, seed, batch_size, device
        As in :func:`~defuse_widgets.identification.identify`; X has shape
        (n, C, H, W), y shape (n,).
    n_steps : int, default=20
        About how many slices (progress reports) to use.
    callback : callable, optional
        ``callback(n_done, n_total)`` after each slice; returning True stops.

    Returns
    -------
    AdversarialExamples or None
        None when ``callback`` stopped the work.
    """
    Q = check_int("Q", Q, low=1)
    n_steps = check_int("n_steps", n_steps, low=1)
    seed = check_int("seed", seed)
    n = len(X)
    chunk = max(1, check_int("batch_size", batch_size, low=1) // Q)
    step = chunk * max(1, math.ceil(n / chunk / n_steps))
    rng = np.random.default_rng(seed)   # identify continues this generator slice by slice
    parts = []
    for start in range(0, max(n, 1), step):
        part = identify(classifier, vae, X[start:start + step], y[start:start + step], Q=Q,
                        a=a, b=b, max_per_instance=max_per_instance, centered=centered,
                        chunk_size=chunk, batch_size=batch_size, seed=rng, device=device,
                        progress=False)
        parts.append((start, part))
        if callback is not None and callback(min(start + step, n), n):
            return None
    params = dict(parts[0][1].params, seed=seed,
                  n_misclassified=sum(p.params["n_misclassified"] for _, p in parts))
    cat = [np.concatenate([getattr(p, f) for _, p in parts])
           for f in ("codes", "true_label", "predicted_label", "noise_norm")]
    source = np.concatenate([p.source_index + start for start, p in parts]).astype(np.int64)
    return AdversarialExamples(cat[0], source, cat[1], cat[2], cat[3],
                               sum(p.n_decoded for _, p in parts), params)


def map_subset(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` of ``n`` items (all if None).

    Returns
    -------
    ndarray of shape (min(n, size),), int64
    """
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    size = check_int("size", size, low=1)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False)).astype(np.int64)


def correction_data(regions: Regions, decisions, vae: torch.nn.Module, data, *,
                    n_finetune: int = 256, n_region_test: int = 256, tau: float = 0.5,
                    seed: int = 0, baseline_from: AdversarialExamples | None = None) -> dict:
    """Everything a λ sweep needs: D_f, the eval sets and optionally a baseline set.

    Parameters
    ----------
    regions : Regions
    decisions : list of RegionDecision
        As from :func:`~defuse_widgets.labeling.decide`; at least one accepted.
    vae : BetaVAE or any module with ``decode(z)``
    data : DataSplits
        Its validation and test splits become the ``validation`` and ``test`` eval sets.
    n_finetune, n_region_test, tau, seed
        As in :func:`~defuse_widgets.failure_data.build_failure_sets`.
    baseline_from : AdversarialExamples, optional
        When given, ``len(y_f)`` of its examples (a seeded subset), decoded and
        labelled with their source image's class, form the baseline set.

    Returns
    -------
    dict
        ``X_f`` (n_f, C, H, W), ``y_f`` (n_f,), ``eval_sets`` (name -> (X, y)),
        ``X_adv`` and ``y_adv`` (None without ``baseline_from``).
    """
    from .failure_data import build_failure_sets
    from .inference import decode

    sets = build_failure_sets(regions, decisions, vae, n_finetune=n_finetune,
                              n_region_test=n_region_test, tau=tau, seed=seed, device="cpu")
    if not sets:
        raise ValueError("decisions must accept at least one misclassification region; "
                         "none does (vote in the Labeling tab first).")
    X_f, y_f = sets.pop("finetune")
    out = dict(X_f=X_f, y_f=y_f, X_adv=None, y_adv=None, eval_sets={
        "validation": (data.X_val, data.y_val), "test": (data.X_test, data.y_test), **sets})
    if baseline_from is not None and len(baseline_from):
        pick = map_subset(len(baseline_from), len(y_f), seed)
        out["X_adv"] = decode(vae, torch.from_numpy(baseline_from.codes[pick]))
        out["y_adv"] = torch.from_numpy(baseline_from.true_label[pick])
    return out
