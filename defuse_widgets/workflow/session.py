"""The Defuse workflow on one session folder: the object every entry point drives.

``defuse-widgets`` (all subcommands), the dashboard, the notebooks and the
planted-bug benchmark call the same :class:`Session` methods, so a setting,
a default, the baseline set and the correction arms each have one definition.
A session is the only writer into its folder (through
:class:`~defuse_widgets.storage.session_folder.SessionFolder`). It is
identified by its settings and by fingerprints of its data and models, never
by its path: a moved, copied or renamed folder resumes. This module imports
no UI code.
"""
from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import torch

from defuse_widgets._validation import check_module, resolve_device
from defuse_widgets.callbacks import ProgressCallback, Stopped
from defuse_widgets.data import DataSplits
from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.identification import AdversarialExamples, identify_in_steps
from defuse_widgets.stages.labeling import RegionDecision, decide
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.session_folder import STAGE_FILES, SessionFolder
from defuse_widgets.workflow.config import OWN_DATA, STAGES, DefuseConfig
from defuse_widgets.workflow.correction_step import SessionCorrection
from defuse_widgets.workflow.grounding_step import SessionGrounding
from defuse_widgets.workflow.html_report import REPORT_FILE, SessionHTMLReport
from defuse_widgets.workflow.inputs import (
    ROLES,
    SessionInputs,
    check_fit,
    load_given,
    load_recorded,
)
from defuse_widgets.workflow.integrity import fingerprint_data, fingerprint_module
from defuse_widgets.workflow.label_review_step import SessionLabelReview
from defuse_widgets.workflow.memo import Memo, digest
from defuse_widgets.workflow.results import SessionResults
from defuse_widgets.workflow.slices import SessionSlices

__all__ = ["Session", "SessionMismatchError"]

_IDENTITY = "session.json"
_COMMANDS = {"identification": "identify", "distillation": "distill",
             "labeling": "label --simulated", "correction": "correct"}
_DONE = {"identification": "adversarial.npz", "distillation": "regions.npz",
         "labeling": "decisions.json", "correction": "correction.json"}
#: A stage's results that other settings would make stale: its result, and the votes.
_RESULTS = {**{s: (name,) for s, name in _DONE.items()},
            "labeling": ("decisions.json", "annotations.sqlite")}


def _from(stage: str) -> tuple:
    """``stage`` and every stage after it."""
    return STAGES[STAGES.index(stage):]


class SessionMismatchError(ValueError):
    """The session folder holds results made with other settings, data or models."""


class Session(SessionCorrection, SessionGrounding, SessionHTMLReport, SessionLabelReview,
              SessionResults, SessionSlices):
    """Run Defuse's four stages on one session folder and keep every result there.

    Parameters
    ----------
    path : str or os.PathLike
        The session folder; created if missing. Opening checks it (no
        symlinks, every listed file intact) before writing anything.
    config : DefuseConfig, optional
        The settings. None takes the folder's own (a new folder gets the defaults).
        Settings that differ from the folder's are refused while results of
        the first stage they affect exist, unless ``overwrite``.
    classifier, vae : nn.Module, optional
        Default to the shipped weights of ``config.dataset``.
    data : DataSplits, optional
        Defaults to ``config.dataset`` (split with ``config.seed``).
    oracle : nn.Module, optional
        Backs the simulated annotator (an oracle CNN standing in for people)
        and the baseline's labels; defaults to the shipped oracle.
    inputs : SessionInputs, optional
        The user's image source and model specs (``defuse-widgets ... --data
        --classifier --vae [--oracle]``). They are loaded and checked to fit
        before the folder is touched, and recorded in ``session.json`` so that
        ``Session(path)`` reopens with them; a recorded file that changed is
        refused, one that moved can be given again with its new path.
    annotator : SimulatedAnnotator or alike, optional
        The simulated annotator itself (``annotate`` and ``label``), when it
        is not the default one around ``oracle`` (the planted-bug benchmark's
        "perfect" annotator, for example).
    device : str or torch.device, optional
        Where identification and correction run; CUDA when available.
    overwrite : bool, default=False
        Accept other settings, data or models by moving the results they make
        stale to ``archive/<time>/``; likewise move a damaged or missing
        listed file and the results that depend on it there, and go on.
        Nothing is ever deleted.
    read_only : bool, default=False
        Read the session and write nothing (``status``, ``report``): SQLite
        is opened read-only, so a read-only folder or mount works, and any
        stage raises :class:`PermissionError`. The folder must be a session.
    strict : bool, default=True
        Refuse a session with a damaged listed file. False opens it anyway
        and lets reading that file (and what depends on it) raise its
        :class:`SessionFormatError` (the dashboard shows it on its tab).

    Attributes
    ----------
    config : DefuseConfig
    folder : SessionFolder
    store : AnnotationStore or None
        The vote store once :meth:`open_store` ran.
    memo : Memo
        Review sets and baseline sets already computed, by their inputs.
    archived : Path or None
        Where the latest stage moved the results it made stale.

    Examples
    --------
    >>> session = Session("runs/demo", DefuseConfig.quick())  # doctest: +SKIP
    >>> session.identify(); session.distill(); session.label_simulated()  # doctest: +SKIP
    >>> session.correct(); session.report()["figure4"]  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, config: DefuseConfig | None = None, *,
                 classifier=None, vae=None, data: DataSplits | None = None, oracle=None,
                 annotator=None, device=None, overwrite: bool = False,
                 inputs: SessionInputs | None = None, read_only: bool = False,
                 strict: bool = True):
        if config is not None and not isinstance(config, DefuseConfig):
            raise TypeError(f"config must be a DefuseConfig; got {type(config).__name__}.")
        if data is not None and not isinstance(data, DataSplits):
            raise TypeError(f"data must be a DataSplits; got {type(data).__name__}.")
        for flag, value in (("overwrite", overwrite), ("read_only", read_only),
                            ("strict", strict)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False; got {value!r}.")
        if inputs is not None and not isinstance(inputs, SessionInputs):
            raise TypeError(f"inputs must be a SessionInputs; got {type(inputs).__name__}.")
        for name, m in (("classifier", classifier), ("vae", vae), ("oracle", oracle)):
            if m is not None:
                check_module(name, m)
        self.device = resolve_device(device)
        # What the user gave is loaded and checked before the folder is touched.
        given = load_given(inputs, data, classifier, vae, oracle)
        self.folder = SessionFolder(path, read_only=read_only, strict=strict,
                                    overwrite=overwrite)
        self.folder.on_first_write = self._write_identity
        self.path = self.folder.path
        self.store = None
        self.memo = Memo()
        self.archived = self.folder.archived[-1] if self.folder.archived else None
        self._overwrite = overwrite
        self._classifier, self._vae = given["classifier"], given["vae"]
        self._oracle, self._data = given["oracle"], given["data"]
        self._annotator = annotator
        self._fit_checked = False
        saved = self.folder.build(_IDENTITY, _check_identity)
        self._fingerprints = dict(saved["fingerprints"]) if saved else {}
        self._inputs_record = dict(saved.get("inputs") or {}) if saved else {}
        saved_inputs = SessionInputs.from_record(self._inputs_record) \
            if self._inputs_record else None
        self._inputs = inputs.over(saved_inputs) if inputs is not None else saved_inputs
        if inputs is not None:
            self._record_inputs(given["data"])
        saved_config = saved["config"] if saved else None
        self.config = config or saved_config or _default_config(data, self._inputs)
        if self._inputs is not None and self._inputs.data is not None:
            self.config = self.config.replace(dataset=OWN_DATA)   # the images are the inputs'
        if saved_config is not None and self.config != saved_config:
            stage = self.config.first_changed_stage(saved_config)
            if stage is not None:
                self._make_room(stage, "settings", self.config.changed(saved_config))
        for name in ("classifier", "vae", "data"):
            if given[name] is not None:
                self._check_fingerprint(name, given[name])
        self._save_identity()

    # ------------------------------------------------------------ identity
    def _make_room(self, stage: str, what: str, changes) -> None:
        """Archive ``stage`` and later results, or refuse when not ``overwrite``."""
        if not any(self.folder.listed(name) for s in _from(stage) for name in _RESULTS[s]):
            return
        if not self._overwrite:
            raise SessionMismatchError(
                f"session {str(self.path)!r} must be opened with the {what} its results were "
                f"made with; these differ: {changes}. Its {stage} results (and later ones, "
                "votes included) are kept. Open it without settings to resume with its own "
                "(Session(path), or the CLI without setting flags), choose another folder, "
                "or pass overwrite=True (--overwrite) to move those results to archive/ and "
                "start that stage again; nothing is deleted.")
        self.archive_from(stage)

    def rerun_effects(self, stage: str) -> list[str]:
        """What running ``stage`` again would move to ``archive/``, for people ([] when nothing).

        Example: ``["the adversarial examples", "12 regions", "30 votes by 2 annotators",
        "2 saved slices", "the correction"]``.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}; got {stage!r}.")
        if not self.done(stage):
            return []
        parts = ["the adversarial examples"] if stage == "identification" else []
        n = len(self.load_slices()) if stage == "identification" else 0
        if n:
            parts.append(f"{n} saved slice{'s' * (n != 1)}")
        if "regions.npz" in self.folder.problems:
            parts.append("the damaged regions.npz")
        elif self.done("distillation"):
            parts.append(f"{len(self.load_regions())} regions")
        if self.folder.listed("annotations.sqlite"):
            votes = self.open_store().votes()
            if votes:
                people = len({v.annotator for v in votes})
                parts.append(f"{len(votes)} vote{'s' * (len(votes) != 1)} by {people} "
                             f"annotator{'s' * (people != 1)}")
        if self.done("correction"):
            parts.append("the correction")
        return parts

    def archive_from(self, stage: str) -> "os.PathLike | None":
        """Move the results of ``stage`` and every later stage to ``archive/<time>/``.

        Votes move with the labeling stage, the HTML report with any; nothing is deleted.
        Returns the archive folder (None when there was nothing to move).
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}; got {stage!r}.")
        names = [n for s in _from(stage) for n in STAGE_FILES[s]] + [REPORT_FILE]
        if "annotations.sqlite" in names:   # the votes move: close their store first
            self.close()
        self.archived = self.folder.archive(names)
        return self.archived

    def configure(self, **changes) -> DefuseConfig:
        """Change settings as a deliberate rerun: results they make stale move to ``archive/``.

        The dashboard calls this when its controls differ from the session's
        settings and a stage is run again. Returns the new config.
        """
        new = self.config.replace(**changes)
        stage = new.first_changed_stage(self.config)
        if stage is not None:
            self.archive_from(stage)
        self.config = new
        self._save_identity()
        return new

    @staticmethod
    def saved_config(path: str | os.PathLike) -> DefuseConfig | None:
        """The settings saved in session folder ``path`` (None for a new folder); reads only."""
        from defuse_widgets.storage import persistence

        ident = os.path.join(os.fspath(path), _IDENTITY)
        return (_check_identity(persistence.load_json(ident))["config"] if os.path.isfile(ident)
                else None)

    def _check_fingerprint(self, name: str, value) -> None:
        fp = fingerprint_data(value) if name == "data" else fingerprint_module(value)
        old = self._fingerprints.get(name)
        if old is not None and old != fp:
            self._make_room("identification", name,
                            {name: "the session's differs from the one given"})
        self._fingerprints[name] = fp

    def _record_inputs(self, data=None) -> None:
        """Keep the inputs' record for ``session.json`` (the data's description kept when not
        loaded).
        """
        old_data = self._inputs_record.get("data")
        self._inputs_record = self._inputs.to_record(data)
        if data is None and old_data and old_data.get("path") == self._inputs.data:
            self._inputs_record["data"] = old_data

    def _identity(self) -> dict:
        record = {"config": self.config.to_dict(), "fingerprints": self._fingerprints}
        if self._inputs_record:
            record["inputs"] = self._inputs_record
        return record

    def _save_identity(self) -> None:
        """Keep ``session.json`` up to date; a new folder gets it with its first result."""
        if self.folder.read_only or self.folder.is_new:
            return
        record = self._identity()
        if self.folder.load(_IDENTITY) != record:
            self.folder.save(_IDENTITY, record, kind="session")

    def _write_identity(self) -> None:
        """``session.json`` of a new folder, written before its first result."""
        self.folder.save(_IDENTITY, self._identity(), kind="session")

    # ------------------------------------------------------------- inputs
    @property
    def data(self) -> DataSplits:
        """The data splits (loaded from ``config.dataset`` on first use)."""
        if self._data is None:
            from defuse_widgets.data import load_dataset

            if self._inputs is not None and self._inputs.data is not None:
                self._data = load_recorded("data", self._inputs.load_data)
                self._record_inputs(self._data)
            else:
                self._data = load_dataset(self.config.dataset, seed=self.config.seed)
            self._check_fingerprint("data", self._data)
            self._save_identity()
        return self._data

    @property
    def inputs(self) -> SessionInputs | None:
        """The user's image source and model specs, when the session was given them."""
        return self._inputs

    def to_record_inputs(self) -> dict:
        """The inputs as ``session.json`` records them (absolute paths, SHA-256s, the data's
        classes).
        """
        return dict(self._inputs_record)

    @property
    def class_names(self) -> tuple:
        """The classes' names (read from the recorded inputs without loading the images)."""
        names = (self._inputs_record.get("data") or {}).get("class_names")
        return tuple(names) if names and self._data is None else self.data.class_names

    def _models(self):
        """The classifier and VAE: given, recorded in the inputs, or the shipped weights."""
        if self._inputs is not None and (self._classifier is None or self._vae is None):
            self._load_recorded_models()
        if self._classifier is None or self._vae is None:
            from defuse_widgets.models.pretrained import load_pretrained

            try:
                c, v, o = load_pretrained(self.config.dataset)
            except (FileNotFoundError, ValueError) as exc:
                raise ValueError(f"classifier and vae must be given for dataset "
                                 f"{self.config.dataset!r}, which has no shipped weights "
                                 f"({exc})") from exc
            for name, m in (("classifier", c), ("vae", v)):
                if getattr(self, f"_{name}") is None:
                    setattr(self, f"_{name}", m)
                    self._check_fingerprint(name, m)
            self._oracle = self._oracle or o
            self._save_identity()
        if not self._fit_checked:
            check_fit(self.data, classifier=self._classifier, vae=self._vae, oracle=self._oracle)
            self._fit_checked = True
        return self._classifier.eval(), self._vae.eval()

    def _load_recorded_models(self) -> None:
        """Load the models the session's inputs name and check them against its fingerprints."""
        for role in ROLES:
            spec = getattr(self._inputs, role)
            if spec is None or getattr(self, f"_{role}") is not None:
                continue
            model = load_recorded(role, lambda spec=spec, role=role: spec.load(role))
            setattr(self, f"_{role}", model)
            if role != "oracle":
                self._check_fingerprint(role, model)
        self._save_identity()

    @property
    def classifier(self) -> torch.nn.Module:
        """The classifier under test (the shipped one unless given)."""
        return self._models()[0]

    @property
    def vae(self) -> torch.nn.Module:
        """The β-VAE (the shipped one unless given)."""
        return self._models()[1]

    @property
    def oracle(self) -> torch.nn.Module | None:
        """The simulated annotator's oracle, or None when there is none."""
        self._models()
        return self._oracle

    def fidelity(self) -> dict:
        """The generator's fidelity on the validation split (see :mod:`.fidelity`).

        Measured once per classifier, β-VAE and data (by fingerprint) and kept
        in ``fidelity.json``.

        Returns
        -------
        dict
            :func:`~defuse_widgets.workflow.fidelity.fidelity_report`'s report.
        """
        from defuse_widgets.workflow.fidelity import fidelity_report

        clf, vae = self._models()
        key = {n: self._fingerprints.get(n) for n in ("classifier", "vae", "data")}
        saved = self.folder.load("fidelity.json")
        if saved and saved.get("fingerprints") == key:
            return saved["report"]
        d = self.data
        report = fidelity_report(clf, vae, d.X_val, d.y_val, d.class_names, split="validation")
        if not self.folder.read_only:
            self.folder.save("fidelity.json", {"fingerprints": key, "report": report},
                             kind="fidelity")
        return report

    # ------------------------------------------------------------- stages
    def done(self, stage: str) -> bool:
        """True when ``stage``'s result is in the folder."""
        return self.folder.listed(_DONE[stage])

    def check_order(self, stage: str) -> None:
        """Raise ValueError naming the stage to run first when ``stage`` cannot run yet.

        Distillation needs adversarial examples; labeling and correction need
        regions (people may have voted in the dashboard). Nothing is read but
        the manifest, and nothing is written.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}; got {stage!r}.")
        # People may vote in the dashboard without decisions.json: correction needs regions.
        for before in STAGES[:min(STAGES.index(stage), 2)]:
            if not self.done(before):
                raise ValueError(f"session {str(self.path)!r} must hold the {before} "
                                 f"results before {stage} can run; it has none. Run "
                                 f"{before} first (defuse-widgets "
                                 f"{_COMMANDS[before]} --session {self.path}).")

    def identify(self, *, callback: ProgressCallback | None = None,
                 executor=None) -> AdversarialExamples | None:
        """Identification (Algorithm 1) on the training split; saves ``adversarial.npz``.

        With ``executor`` (for example Dask's ``client.get_executor()``) the
        slices of the training images run as its tasks, with the same result.

        A new result makes regions, votes and corrections stale: they move to
        ``archive/``. Returns None, saving nothing, when ``callback`` stops it.
        """
        c = self.config
        clf, vae = self._models()
        adv = identify_in_steps(clf.to(self.device), vae.to(self.device), self.data.X_train,
                                self.data.y_train, Q=c.Q, a=c.a, b=c.b, centered=c.centered,
                                max_per_instance=c.max_per_instance, seed=c.seed,
                                device=self.device, precision=c.precision,
                                callback=callback, executor=executor)
        clf.cpu(), vae.cpu()
        if adv is None:
            return None
        self.archive_from("identification")
        self.folder.save("adversarial.npz", adv.to_npz(), kind="adversarial")
        return adv

    def distill(self, *, callback: ProgressCallback | None = None) -> Regions | None:
        """Distillation: fit the Dirichlet-process mixture; saves ``regions.npz``.

        New regions make votes and corrections stale (moved to ``archive/``).
        Returns None, saving nothing, when ``callback`` stops the EM iterations.
        """
        adv = self._require_adversarial()
        c = self.config
        try:
            regions = Distiller(n_components=c.n_components, eps=c.eps,
                                max_samples=c.max_samples, seed=c.seed).fit(
                adv, n_classes=self.n_classes, callback=callback).regions_
        except Stopped:
            return None
        self.archive_from("distillation")
        self.folder.save("regions.npz", regions.to_npz(), kind="regions")
        return regions

    @property
    def n_classes(self) -> int:
        """The classifier's number of outputs (never inferred from the labels present).

        For a session on the user's inputs, :func:`check_fit` made it equal to
        the number of classes, read from the record without loading anything.
        """
        from defuse_widgets.models.inference import n_outputs

        names = (self._inputs_record.get("data") or {}).get("class_names")
        if names and self._classifier is None:
            return len(names)
        return n_outputs(self.classifier, self.data.X_train[:1])

    def open_store(self):
        """The vote store ``annotations.sqlite`` (opened once, kept as ``store``)."""
        if self.store is None:
            self._require_regions()
            self.store = self.folder.open_store(self.n_classes)
        return self.store

    def review_set(self, region: int, regions: Regions | None = None
                   ) -> tuple[torch.Tensor, np.ndarray]:
        """Decoded review set of ``region`` and the classifier's predictions on it.

        ``regions`` (the session's, already loaded) saves reading them again.

        Returns
        -------
        images : Tensor of shape (review_size, C, H, W)
        predicted : ndarray of shape (review_size,)
        """
        from defuse_widgets.stages.failure_data import review_set

        c = self.config
        regions = self._require_regions() if regions is None else regions
        key = ("review_set", digest(regions.means, regions.covariances), region,
               c.review_size, c.tau, c.seed)
        return self.memo.get(key, lambda: review_set(
            regions, region, self.vae, self.classifier, size=c.review_size, tau=c.tau,
            seed=c.seed))

    def label_simulated(self, *, callback: ProgressCallback | None = None):
        """Labeling by the simulated annotator (oracle CNN workers), then :meth:`decide`.

        Returns
        -------
        list of RegionDecision, or None when ``callback`` stopped it (votes cast so far are kept).
        """
        from defuse_widgets.workflow.shared_steps import annotate_regions

        annotator = self.simulated_annotator()
        if annotator is None:
            raise ValueError("oracle must be given to label with the simulated annotator; "
                             "this session has none (pass oracle=...).")
        done = annotate_regions(self, annotator, callback=callback)
        return self.decide() if done else None

    def simulated_annotator(self):
        """The session's :class:`~defuse_widgets.stages.annotators.SimulatedAnnotator`, or None.

        None when there is neither an ``annotator`` nor an ``oracle``.
        """
        from defuse_widgets.stages.annotators import SimulatedAnnotator

        if self._annotator is not None:
            return self._annotator
        if self.oracle is None:
            return None
        c = self.config
        return SimulatedAnnotator(self.oracle, n_workers=c.n_workers, error_rate=c.error_rate,
                                  seed=c.seed, device=self.device)

    def decide(self, rho: float | None = None) -> list[RegionDecision]:
        """Apply the ρ rule to the votes; saves ``decisions.json``."""
        rho = self.config.rho if rho is None else rho
        regions = self._require_regions()
        decisions = decide(self.open_store(), rho=rho, n_regions=len(regions))
        self.folder.save("decisions.json", {"rho": rho, "decisions": [asdict(d) for d in
                                                                      decisions]})
        return decisions

    def close(self) -> None:
        """Close the vote store, if open."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def __repr__(self) -> str:
        done = [s for s in STAGES if self.done(s)]
        return f"Session({str(self.path)!r}, stages done: {done or 'none'})"

def _default_config(data, inputs: SessionInputs | None = None) -> DefuseConfig:
    """Defaults, naming ``data``'s dataset when it is a registered one ("own" for inputs)."""
    from defuse_widgets.data.registry import DATASETS

    if inputs is not None and inputs.data is not None:
        return DefuseConfig(dataset=OWN_DATA)
    name = getattr(data, "name", None)
    return DefuseConfig(dataset=name) if name in DATASETS else DefuseConfig()


def _check_identity(data) -> dict:
    if not isinstance(data, dict) or not {"config", "fingerprints"} <= set(data) or not set(
            data) <= {"config", "fingerprints", "inputs"}:
        raise ValueError("file must hold 'config' and 'fingerprints' (and optionally 'inputs')")
    return {"config": DefuseConfig.from_dict(data["config"]),
            "fingerprints": dict(data["fingerprints"]), "inputs": data.get("inputs")}


def _fail(d):
    raise ValueError(f"decision keys must be RegionDecision fields; got {sorted(d)}")
