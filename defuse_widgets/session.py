"""The session folder: every stage's result, saved safely, so work survives a crash.

A session folder holds what each Defuse stage hands to the next, so a new
dashboard on the same folder resumes where the last one stopped:

* ``adversarial.npz``: the unrestricted adversarial examples (identification),
* ``regions.npz``: the candidate misclassification regions (distillation),
* ``annotations.sqlite``: review sets and votes (labeling),
* ``settings.json``: the settings the arrays were made with,
* ``latent_map.npz``: the cached t-SNE map of the latent explorer,
* ``decisions.json``: the ρ decisions taken from the votes,
* ``checkpoints/``, ``correction.json`` and ``corrected_classifier.pt``: the
  λ sweep (per-λ checkpoints it resumes from), its history and results, and
  the corrected classifier,
* ``manifest.json``: format version, package version and the size and
  SHA-256 of every file above (see :mod:`~defuse_widgets.persistence`).

Every file is written to a temporary name, fsynced and renamed, so a reader
never sees half a file; loads check the manifest and refuse pickles, so a
damaged or foreign file gives a :class:`~defuse_widgets.persistence.SessionFormatError`
naming it, never half a result. Results of a new identification make the
regions and votes of the old one meaningless; they are moved to
``archive/<time>/`` rather than deleted. This module imports no UI code.
"""
from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import torch

from . import persistence as io
from ._validation import _describe, check_module
from .annotations import AnnotationStore
from .callbacks import History
# Imported here, in the importing (main) thread: stages run in background threads,
# and two threads importing sklearn's modules at once can see them half-initialised.
from .distillation import Distiller
from .embedding import LatentMap
from .identification import AdversarialExamples
from .labeling import RegionDecision
from .regions import Regions
from .steps import StepCallback, correction_data, identify_in_steps, map_subset

__all__ = ["Session", "correction_data", "identify_in_steps", "map_subset"]


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
    decisions_path = property(lambda self: self.path / "decisions.json")
    correction_path = property(lambda self: self.path / "correction.json")
    manifest_path = property(lambda self: self.path / io.MANIFEST)

    @property
    def manifest(self) -> dict | None:
        """The parsed ``manifest.json``, or None for a folder written before manifests."""
        return io.read_manifest(self.path)

    def verify(self) -> dict:
        """Check every file the manifest lists and return the manifest (``{}`` if none).

        Raises
        ------
        SessionFormatError
            For the first file that is missing, truncated, corrupted, from an
            incompatible version or outside the folder.
        """
        manifest = self.manifest or {}
        for name, entry in manifest.get("files", {}).items():
            path = io.verify_file(self.path, name)
            if not path.exists():
                raise io.SessionFormatError(path, f"file must exist: {io.MANIFEST} lists it "
                                            f"({entry.get('kind')}) but it is missing.")
        return manifest

    # ------------------------------------------------------------------ load
    def _file(self, name: str) -> Path | None:
        """``name`` checked against the manifest; None when it does not exist."""
        path = io.verify_file(self.path, name)
        return path if path.exists() else None

    def _load(self, name: str, build: Callable, *args):
        """Run ``build`` on a loaded file; any inconsistency names the file."""
        path = self._file(name)
        if path is None:
            return None
        loader = {".npz": io.load_npz, ".json": io.load_json, ".pt": io.load_state_dict}
        data = loader[path.suffix](path, *args)
        try:
            return build(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, io.SessionFormatError):
                raise
            raise io.SessionFormatError(path, f"file holds inconsistent data: {exc}") from exc

    def load_adversarial(self) -> AdversarialExamples | None:
        """The saved adversarial examples, or None when there are none."""
        return self._load("adversarial.npz", AdversarialExamples.from_npz,
                          AdversarialExamples.NPZ_KEYS)

    def load_regions(self, adversarial: AdversarialExamples | None = None) -> Regions | None:
        """The saved regions, or None when missing or not distilled from ``adversarial``.

        Regions belong to one set of adversarial examples: ``assignment`` has one
        entry per example. A file that does not match ``adversarial`` is ignored.
        """
        regions = self._load("regions.npz", Regions.from_npz, list(Regions.__dataclass_fields__))
        if regions is None or (adversarial is not None
                               and len(regions.assignment) != len(adversarial)):
            return None
        return regions

    def load_settings(self) -> dict:
        """The settings saved with the arrays, ``{}`` when there are none."""
        return self._load("settings.json", _check_dict) or {}

    def load_model(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """Load ``corrected_classifier.pt`` into ``model`` (same architecture); None if absent.

        The file is read with ``torch.load(weights_only=True)``: a checkpoint
        that would run code is refused with ``UnsafeFileError``.
        """
        check_module("model", model)
        state = self._load("corrected_classifier.pt", lambda s: s)
        if state is None:
            return None
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"model must have the architecture saved in "
                             f"{str(self.model_path)!r}; {str(exc).splitlines()[0]}") from exc
        return model.eval()

    def load_decisions(self) -> list[RegionDecision] | None:
        """The decisions saved by :meth:`save_decisions`, or None when there are none."""
        def build(data):
            names = {f.name for f in fields(RegionDecision)}
            return [RegionDecision(**{**d, "sample_agreement": tuple(d["sample_agreement"])})
                    if set(d) == names else _fail(f"decision keys must be {sorted(names)}")
                    for d in _check_dict(data)["decisions"]]
        return self._load("decisions.json", build)

    def load_correction(self) -> dict | None:
        """The sweep saved by :meth:`save_correction`, or None when there is none.

        Returns
        -------
        dict or None
            ``name``, ``params``, ``before``, ``history`` (a History), ``results``
            (one record per finished λ), ``best`` (the selected record or
            None) and ``cancelled``.
        """
        def build(data):
            data = _check_dict(data)
            best = data["best_index"]
            return {**data, "history": History(data["history"]),
                    "best": None if best is None else data["results"][best]}
        return self._load("correction.json", build)

    def load_latent_map(self):
        """The cached :class:`~defuse_widgets.embedding.LatentMap`, or None when none."""

        path = self._file("latent_map.npz")
        return None if path is None else LatentMap.load(path)

    def open_store(self, n_classes: int) -> AnnotationStore:
        """The store on ``annotations.sqlite`` (created with ``n_classes`` classes if new).

        It stays open, as ``store``, until :meth:`close` or a new result archives it.
        """
        if self.store is None:
            io.resolve_inside(self.path, self.store_path.name)
            self.store = AnnotationStore(self.store_path, n_classes=n_classes)
            io.record_files(self.path, {self.store_path.name: "annotations"}, hashed=False)
        return self.store

    def close(self) -> None:
        """Close the store, if open."""
        if self.store is not None:
            self.store.close()
            self.store = None

    # ---------------------------------------------------------------- stages
    def identify(self, classifier: torch.nn.Module, vae: torch.nn.Module, X, y, *, Q: int,
                 a: float, b: float, centered: bool = True, max_per_instance: int | None = 100,
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
        check_module("model", model)
        return self._save(io.save_state_dict, self.model_path, model.state_dict(), "model")

    def save_decisions(self, decisions, *, rho: float | None = None) -> Path:
        """Save the ρ decisions (from :func:`~defuse_widgets.labeling.decide`) as JSON.

        Parameters
        ----------
        decisions : list of RegionDecision
        rho : float, optional
            The ρ they were taken with, kept for the record.
        """
        decisions = list(decisions)
        for d in decisions:
            if not isinstance(d, RegionDecision):
                raise TypeError(f"decisions must hold RegionDecision objects; got {_describe(d)}.")
        return self._save(io.save_json, self.decisions_path,
                          {"rho": rho, "decisions": [asdict(d) for d in decisions]}, "decisions")

    def save_correction(self, corrector, *, save_model: bool = True) -> Path:
        """Save a fitted (or stopped) sweep's history and results, and its best model.

        Parameters
        ----------
        corrector : Corrector
            After :meth:`~defuse_widgets.correction.Corrector.fit`.
        save_model : bool, default=True
            Also save ``best_model_`` as ``corrected_classifier.pt``.
        """
        from .correction import Corrector

        if not isinstance(corrector, Corrector) or not hasattr(corrector, "results_"):
            raise TypeError(f"corrector must be a fitted Corrector; got {_describe(corrector)}.")
        results = list(corrector.results_)
        best = next((i for i, r in enumerate(results) if r is corrector.best_), None)
        record = {"name": corrector.name, "params": corrector.sweep_params(),
                  "before": corrector.before_, "history": list(corrector.history_),
                  "results": results, "best_index": best, "cancelled": corrector.cancelled_}
        path = self._save(io.save_json, self.correction_path, record, "correction")
        if save_model and corrector.best_model_ is not None:
            self.save_model(corrector.best_model_)
        return path

    def save_latent_map(self, latent_map) -> Path:
        """Save a fitted :class:`~defuse_widgets.embedding.LatentMap` as ``latent_map.npz``."""
        latent_map.save(self.latent_map_path)
        # A cache: fit_or_load may rewrite it, so it is listed without a hash.
        io.record_files(self.path, {self.latent_map_path.name: "latent_map"}, hashed=False)
        return self.latent_map_path

    def _save(self, writer: Callable, path: Path, obj: Any, kind: str) -> Path:
        io.resolve_inside(self.path, path.name)
        writer(path, obj)
        io.record_files(self.path, {path.name: kind})
        return path

    def _save_npz(self, path: Path, arrays: dict) -> None:
        self._save(io.save_npz, path, arrays, path.stem)

    def _save_settings(self, settings: dict) -> None:
        self._save(io.save_json, self.settings_path, settings, "settings")

    def _archive(self, *names: str) -> Path | None:
        """Move the named files (and SQLite side files) to ``archive/<time>/``.

        Without any vote in the store there is nothing worth keeping: they are deleted.
        """
        present = [p for name in names for p in (self.path / name,
                   self.path / f"{name}-wal", self.path / f"{name}-shm") if p.exists()]
        if not present or not self._has_votes():
            for p in present:
                p.unlink()
            if present:
                io.record_files(self.path, {}, remove=names)
            return None
        folder = io.move_to_archive(self.path, present)
        io.record_files(self.path, {}, remove=names)
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


def _check_dict(data: Any) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"the file must hold a JSON object; got {type(data).__name__}")
    return data


def _fail(message: str):
    raise ValueError(message)
