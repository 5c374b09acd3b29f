"""The Defuse stages in one notebook widget, wired to one session folder.

One tab per stage: **Identification** (find unrestricted adversarial examples,
explore them on the latent map), **Distillation** (cluster them into candidate
misclassification regions), **Labeling** (vote on each region's review set),
**Correction** (fine-tune on the accepted regions' failure data over a λ sweep;
click a λ to keep it) and **Label review** (optional, not in the paper: check
the labels of images near the accepted regions). Results are saved to the session folder
through :class:`~defuse_widgets.workflow.Session`, the same workflow object
the CLI and the benchmarks drive, so a new dashboard on the same folder (or a
folder written by ``defuse-widgets``) resumes with its settings, votes and
results. Long work runs in a background thread; the dashboard only drives the
session and the stage widgets and writes no file itself.
"""
from __future__ import annotations

import html
import os
import time
from pathlib import Path

import ipywidgets as W
import traitlets
from torch import nn

from defuse_widgets.data import DataSplits
from defuse_widgets.seeding import seeded_subset
from defuse_widgets.stages.identification import AdversarialExamples
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets._background import BackgroundWork, red
from defuse_widgets.widgets.dashboard.tabs import (
    correction_plot,
    damage_note,
    decisions_html,
    export_slice,
    label_review_tab,
    map_slices,
    open_region,
    region_widgets,
    resume_status,
    save_slice,
    send_selection,
    sweep_status,
    table_rows,
)
from defuse_widgets.widgets.dashboard.view import STAGES, DashboardView, StageLine
from defuse_widgets.widgets.latent_explorer import LatentExplorer
from defuse_widgets.widgets.tradeoff_plot import TradeoffPlot
from defuse_widgets.workflow import DefuseConfig, Session

__all__ = ["STAGES", "DefuseDashboard"]

#: Settings with a control in the dashboard (the rest come from the session's config).
_CONTROLS = ("Q", "a", "b", "centered", "n_components", "eps", "baseline")


class _class_or_widget_open:
    """``DefuseDashboard.open(folder)`` on the class; ipywidgets' ``Widget.open()`` on an instance.

    ipywidgets calls ``self.open()`` to open a widget's comm, so the class-level
    constructor that reopens a session folder must not hide it.
    """

    def __init__(self, make):
        self.make = make
        self.__doc__ = make.__doc__

    def __get__(self, obj, owner):
        if obj is not None:
            return W.Widget.open.__get__(obj, owner)
        return self.make.__get__(owner, type(owner))


class DefuseDashboard(BackgroundWork, W.VBox):
    """Go from a trained classifier and β-VAE to a corrected classifier in one widget.

    Parameters
    ----------
    classifier : nn.Module
        Images (n, C, H, W) to logits (n, n_classes); moved, like ``vae``, to the CPU.
    vae : BetaVAE or any module with ``encode(x) -> (mu, logvar)`` and ``decode(z)``
    data : DataSplits
        Train (identification, fine-tuning), validation and test splits.
    session : str or os.PathLike
        The session folder; reopening one resumes its settings, results and votes.
    config : DefuseConfig, optional
        Settings for a new session; None keeps the folder's own (a new folder
        gets :class:`~defuse_widgets.workflow.DefuseConfig`'s defaults, the same
        as ``defuse-widgets run``).
    oracle : nn.Module, optional
        Labels the baseline's adversarial examples one by one (the paper's
        baseline); without it the baseline sweep is skipped.
    annotator : str, default=""
        The labeling panel's annotator name (the panel's own field once changed);
        also saved with a λ chosen by clicking the plot, and the label review's.
    device : str, default="cpu"
        Where identification and correction run.
    overwrite : bool, default=False
        As in :class:`~defuse_widgets.workflow.Session`.
    read_only : bool, default=False
        View the session and write nothing (a read-only folder or mount, a
        shared result): stages and votes are refused with a message. Opened
        for writing, the dashboard writes nothing either until a stage runs or
        a vote is cast, except two caches derived from the listed results
        (``grounding.json`` and the map's ``latent_map.npz``).
    Q, a, b, centered, n_components, eps, baseline : traitlets
        Controls tied to the session's settings; a stage run with changed
        controls reruns it (the results it makes stale move to ``archive/``).

    Attributes
    ----------
    stage : traitlet, one of STAGES
        The tab on display.
    status, running, progress : traitlets
        What happens or happened last (HTML, errors included); the stage whose
        background work runs ("" when idle); its share done, in [0, 1].
    adversarial, regions, decisions, tradeoff : traitlets
        Stage results; ``decisions`` and ``tradeoff`` from :meth:`build_correction`.
    explorer, gallery, labeling_panel : the stage widgets, or None
    label_review_panels : list of LabelReviewPanel (training, then validation images)
    session : Session or None
        Also holds the vote ``store``. None when the folder could not be opened:
        the status line then says why, and every stage control is disabled.
    error_ : Exception or None
        What ended the last background run, if it failed, or what failed on
        opening. A damaged file is reported on its tab and in the status line;
        the tabs that do not depend on it stay usable.

    Examples
    --------
    >>> dash = DefuseDashboard(clf, vae, data, "sessions/demo", Q=10)  # doctest: +SKIP
    >>> dash.run_identification(wait=True).run_distillation(wait=True)  # doctest: +SKIP
    >>> dash.labeling_panel.handle_key("8")  # doctest: +SKIP
    >>> dash.build_correction(start=True)  # doctest: +SKIP
    """

    stage = traitlets.Enum(STAGES, default_value="identification")
    adversarial = traitlets.Instance(AdversarialExamples, allow_none=True)
    regions = traitlets.Instance(Regions, allow_none=True)
    decisions = traitlets.List()
    tradeoff = traitlets.Instance(TradeoffPlot, allow_none=True)
    Q = traitlets.Int(100)
    a = traitlets.Float(50.0)
    b = traitlets.Float(50.0)
    centered = traitlets.Bool(True)
    n_components = traitlets.Int(100)
    eps = traitlets.Float(0.01)
    baseline = traitlets.Bool(True)

    def __init__(self, classifier: nn.Module, vae: nn.Module, data: DataSplits, session, *,
                 config: DefuseConfig | None = None, oracle: nn.Module | None = None,
                 annotator: str = "", device: str = "cpu", overwrite: bool = False,
                 read_only: bool = False, _failure: BaseException | None = None, **kwargs):
        self._path, self._damaged, self._plot_inputs = session, {}, None
        self._init_background()
        self.session = None
        if _failure is None:
            if not isinstance(data, DataSplits):
                raise TypeError(f"data must be DataSplits; got {type(data).__name__}.")
            try:
                self.session = Session(session, config, classifier=classifier.cpu(),
                                       vae=vae.cpu(), data=data, oracle=oracle, device=device,
                                       overwrite=overwrite, read_only=read_only, strict=False)
            except (ValueError, OSError) as exc:   # shown in the status line, not raised
                _failure = exc
        self.classifier, self.vae, self.data = ((self.session.classifier, self.session.vae)
                                                if self.session else (classifier, vae)) + (data,)
        self.annotator, self.device = annotator, device
        self.explorer = self.gallery = self.labeling_panel = self.region_table = None
        self.label_review_panels: list = []
        self._built, self._ready = {}, False
        super().__init__(**{k: v for k, v in kwargs.items() if k not in _CONTROLS})
        for name in _CONTROLS:
            setattr(self, name, kwargs.get(name, getattr(self.config, name)))
        self._build()
        self._ready = True
        if _failure is not None:
            self._show_failure(_failure)
        else:
            self._resume()

    @property
    def config(self) -> DefuseConfig:
        """The session's settings (the defaults when the folder could not be opened)."""
        return self.session.config if self.session is not None else DefuseConfig()

    @classmethod
    def embedded(cls, session="sessions/mnist5k", **kwargs) -> "DefuseDashboard":
        """The dashboard on the embedded MNIST-5k with the shipped classifier and β-VAE."""
        from defuse_widgets.data import load_mnist5k
        from defuse_widgets.models.pretrained import load_pretrained

        classifier, vae, oracle = load_pretrained("mnist5k")
        return cls(classifier, vae, load_mnist5k(), session, oracle=oracle, **kwargs)

    @_class_or_widget_open
    def open(cls, session, **kwargs) -> "DefuseDashboard":
        """The dashboard on an existing session folder, with the data and models it recorded.

        A session made with ``defuse-widgets ... --data --classifier --vae``
        (or ``Session(..., inputs=...)``) reopens with its own images and
        models; any other reopens on the embedded default. A recorded file
        that changed is refused, one that moved is named with what to do.
        """
        try:
            probe = Session(session, read_only=True, strict=False)
            try:
                parts = (probe.classifier, probe.vae, probe.data, probe.oracle)
            finally:
                probe.close()
        except (ValueError, OSError) as exc:   # shown in the dashboard's status line
            return cls(None, None, None, session, _failure=exc, **kwargs)
        classifier, vae, data, oracle = parts
        return cls(classifier, vae, data, session, oracle=oracle, **kwargs)

    # ------------------------------------------------------------------- view
    def _build(self) -> None:
        self._said, self._saying = {}, None   # stage -> its latest message; the one speaking
        self._lines = []   # progress lines handed to notebook cells
        self.view = DashboardView(self, self._confirmed, self._path)
        self._log = self.view.log   # where background work writes tracebacks
        self.add_class("defuse-dashboard")
        self.children = self.view.children

    @traitlets.observe("status")
    def _file_status(self, change) -> None:
        """File each message under its tab: the running job's, else the one on display."""
        self._said[self._saying or self.running or self.stage] = change["new"]

    def say(self, stage: str, text: str) -> None:
        """Set ``status`` as a message of tab ``stage``, whichever tab is on display."""
        self._saying = stage
        try:
            self.status = text
        finally:
            self._saying = None

    @traitlets.observe("stage", "status", "running", "progress", "adversarial", "regions",
                       "decisions", "tradeoff")
    def _render(self, change=None) -> None:
        """Rebuild the view from the traits; stage widgets only when their inputs changed."""
        if not self._ready or self.session is None or getattr(self, "_closed", False):
            return
        with self._lock:
            busy = bool(self.running)
            off = busy or self.session.folder.read_only   # a read-only view runs nothing
            self.view.identify_button.disabled = off
            self.view.distill_button.disabled = off or self.adversarial is None
            self.view.build_button.disabled = off or self.regions is None
            self.view.report_button.disabled = off
            self.view.stop_button.disabled = not busy
            self.view.bar.value = round(100 * self.progress) if busy or self.error_ else 0
            self.view.bar.bar_style = "info" if busy else ("danger" if self.error_ else "")
            self.view.bar.layout.visibility = "visible" if busy or self.error_ else "hidden"
            (self.view.bar.add_class if busy else self.view.bar.remove_class)("defuse-busy")
            self.view.status.value = self._said.get(self.running or self.stage, "")
            for line in self._lines:
                line.show(self.running, self.progress, self._said)
            self._render_explorer()
            self._render_regions()
            self._render_label_review()
            self.view.decisions.value = decisions_html(self.decisions, self.data.class_names)
            n = sum(d.is_misclassification_region for d in self.decisions)
            table = [self.region_table] if self.region_table is not None else []
            # the sweep first: tab 4 is for it, and the 19-row table below does not hide it
            waiting = W.HTML(
                f"<i>{n} region{'s' * (n != 1)} accepted by the votes so far: press <b>Build "
                "failure data</b> to start the λ sweep." if n else
                "<i>Vote in the Labeling tab, then build the failure data of the accepted "
                "regions.")
            self.view.boxes[3].children = [self.tradeoff if self.tradeoff is not None
                                           else waiting] + table

    def _render_explorer(self) -> None:
        adv, regions, old = self.adversarial, self.regions, self.explorer
        if adv is None:
            self.view.boxes[0].children = [W.HTML(self._damage_html("identification") or
                                              "<i>Run identification to find unrestricted "
                                              "adversarial examples.")]
            return
        built_adv, built_regions = self._built.get("explorer", (None, None))
        if built_adv is adv and old is not None:
            if built_regions is not regions:   # in place: a cell showing it keeps showing it
                old.set_regions(regions)
                self._built["explorer"] = (adv, regions)
            return
        c = self.config
        idx = seeded_subset(len(self.data.y_train), c.map_size, c.seed)
        self.explorer = LatentExplorer.from_models(
            self.classifier, self.vae, self.data.X_train[idx], self.data.y_train[idx], adv,
            regions=regions, class_names=self.data.class_names,
            cached_map=self.session.load_latent_map(),
            on_map_fitted=self.session.save_latent_map, n_iter=c.tsne_iter, seed=c.seed)
        self.explorer.observe(self._render, "status")
        self.explorer.on_send_selection(lambda sel: send_selection(self, sel))
        if not self.session.folder.read_only:
            self.explorer.on_save_slice(lambda *a: save_slice(self, idx, *a))
        self.explorer.on_export_slice(lambda name: export_slice(self, name))
        self.explorer.slices = map_slices(self.session, idx)
        self._built["explorer"] = (adv, regions)
        self.view.boxes[0].children = [self.explorer]
        if old is not None:
            old.stop()
            old.close()

    def _render_regions(self) -> None:
        regions = self.regions
        if "regions" in self._built and self._built["regions"] is regions:
            return
        self._built["regions"] = regions
        for old in (self.gallery, self.labeling_panel, self.region_table):
            if old is not None:
                old.close()
        self.gallery = self.labeling_panel = self.region_table = None
        if regions is None or len(regions) == 0:
            why = "lower ε: none was kept" if regions is not None else "run distillation"
            self.view.boxes[1].children = [W.HTML(self._damage_html("distillation") or
                                              f"<i>No regions yet ({why}).")]
            self.view.boxes[2].children = [W.HTML("<i>Labeling starts once there are regions.")]
            return
        self.gallery, self.labeling_panel, self.region_table = region_widgets(
            self.session, regions, self.annotator)
        self.region_table.on_select(lambda k: open_region(self, k))
        self.labeling_panel.on_vote(lambda vote: self._votes_changed())
        self.view.boxes[1].children = [self.region_table, self.gallery]   # one table, three tabs
        self.view.boxes[2].children = [self.region_table, self.labeling_panel]

    def _render_label_review(self) -> None:
        # label review is built from the saved decisions: not rebuilt on every vote
        key = (self.regions, self.session.folder.listed("decisions.json") and
               self.session.folder.file("decisions.json").stat().st_mtime_ns,
               self.config.label_review)
        old = self._built.get("label_review")
        if old is None or old[0] is not key[0] or old[1:] != key[1:]:
            self._built["label_review"] = key
            for panel in self.label_review_panels:
                panel.close()
            box, panels = label_review_tab(self.session, self.annotator_name())
            self.view.boxes[4].children, self.label_review_panels = box, panels

    def _correction_inputs(self) -> tuple:
        """What a correction plot depends on: settings, accepted regions and their labels."""
        return self.config, [(d.region, d.label) for d in self.decisions
                             if d.is_misclassification_region]

    def _votes_changed(self) -> None:
        """Keep tab 4 in step with the votes: the regions the ρ rule accepts now."""
        self.decisions = self.labeling_panel.decisions()
        self.region_table.update(table_rows(self.session, self.regions,
                                            self.labeling_panel.grounding,
                                            self.labeling_panel.rho))
        n = sum(d.is_misclassification_region for d in self.decisions)
        if n and self.tradeoff is None:
            self.say("correction", f"{n} region{'s' * (n != 1)} accepted by the votes so far: "
                      "press Build failure data to start the λ sweep.")

    def annotator_name(self) -> str:
        """The annotator's name: the labeling panel's field, else the ``annotator`` given."""
        panel = self.labeling_panel
        return (panel.annotator.strip() if panel is not None else "") or self.annotator

    # -------------------------------------------------------------- triggers
    def run_identification(self, wait: bool = False) -> "DefuseDashboard":
        """Find adversarial examples in a background thread (``Session.identify``).

        A new result replaces the session's regions and votes (moved to
        ``archive/``, never deleted). With ``wait=True``, block until done and
        re-raise its error.
        """
        self._require_session()
        def progress(stage, done, total):
            return self._report(done, total, f"Identification: {done} of {total} training "
                                             "images perturbed…")

        def work():
            self.session.configure(Q=self.Q, a=self.a, b=self.b, centered=self.centered)
            adv = self.session.identify(callback=progress)
            if adv is None:
                return "Identification stopped; nothing was saved", None
            self._damaged.clear()   # the stages it archived are damaged no more
            self.regions, self.adversarial = None, adv
            return (f"Identification: kept {len(adv)} adversarial examples of "
                    f"{adv.n_decoded} decodes ({adv.rate:.1%} misclassified), saved to "
                    f"adversarial.npz{self._archived()}"), adv

        return self._start("identification", work, wait)

    def run_distillation(self, wait: bool = False) -> "DefuseDashboard":
        """Fit the regions in a background thread (``Session.distill``).

        New regions replace the session's votes (moved to ``archive/``). Stop
        interrupts the mixture's EM iterations; nothing is saved then.
        """
        self._require_session()
        adv = self.adversarial
        if adv is None:
            raise ValueError("adversarial examples must exist before distillation; got none "
                             "(run identification first).")

        def progress(stage, done, total):
            return self._report(done, total, f"Distillation: EM iteration {done} (at most "
                                             f"{total}) on {len(adv)} codes…")

        def work():
            self.session.configure(n_components=self.n_components, eps=self.eps)
            regions = self.session.distill(callback=progress)
            if regions is None:
                return "Distillation stopped; nothing was saved", None
            for stage in STAGES[1:]:
                self._damaged.pop(stage, None)
            self.regions = regions
            return (f"Distillation: {len(regions)} candidate regions, saved to regions.npz"
                    f"{self._archived()}"), regions

        return self._start("distillation", work, wait)

    def build_correction(self, start: bool = False) -> TradeoffPlot | None:
        """Build D_f from the votes' accepted regions and show the λ sweep's TradeoffPlot.

        Returns the plot (started when ``start``), or None while no region is accepted.
        """
        self._require_session()
        if self.regions is None:
            raise ValueError("regions and votes must exist before correction; got none "
                             "(run distillation and vote in the Labeling tab).")
        shown, before = self.tradeoff, self._plot_inputs   # what the shown plot was built on
        if self.baseline != self.config.baseline:
            self.session.configure(baseline=self.baseline)
        rho = self.labeling_panel.rho if self.labeling_panel is not None else self.config.rho
        self.decisions = self.session.decide(rho)
        if not any(d.is_misclassification_region for d in self.decisions):
            self.say("correction", "No region is accepted yet: a region is accepted when "
                      f"more than ρ={rho:g} of its votes disagree with the classifier.")
            return None
        if shown is not None and not shown.running and self._correction_inputs() == before:
            plot = shown   # same settings and decisions: keep it (a rerun cell never flickers)
        else:
            plot = self._show_correction(self.session.failure_data())
        self._plot_inputs = self._correction_inputs()
        self.stage = "correction"
        self.say("correction", f"Failure data: {len(plot.y_f)} samples in D_f. " + (
            "Its saved sweep is shown; Start runs it again." if plot.results
            else "Start the λ sweep."))
        self._notify("correction", plot)
        if start:
            plot.start()
        return plot

    def write_report(self) -> Path:
        """Write the session's one-file HTML report (``Session.write_html_report``); its path."""
        self._require_session()
        path = self.session.write_html_report()
        href = html.escape(os.path.relpath(path).replace(os.sep, "/"), quote=True)
        self.view.report_link.value = (   # JupyterLab shows a bare link as plain text
            f"<a href='{href}' target='_blank' class='defuse-report-link' style='color:#1a66c9;"
            f"text-decoration:underline'>open {path.name} ↗</a>")
        self.say("correction", f"Report written to {html.escape(str(path))} at "
                  f"{time.strftime('%H:%M:%S')}.")   # a second press visibly updates
        return path

    @property
    def progress_line(self) -> StageLine:
        """A new progress bar, Stop and status line for the stage that runs next: show it in
        the cell that runs the stage (it keeps that stage's messages only).
        """
        line = StageLine(self.stop)
        self._lines.append(line)
        line.show(self.running, self.progress, self._said)
        return line

    @property
    def corrected_classifier(self) -> nn.Module | None:
        """The session's corrected classifier: the rule's λ when its verdict is that it fixes
        the regions, or the λ chosen by clicking the plot; None otherwise.
        """
        return self.session.load_corrected_classifier()

    # ------------------------------------------------------------- internals
    def _archived(self) -> str:
        where = self.session.archived
        return f"; earlier regions and votes moved to {where}" if where else ""

    def _show_correction(self, sets: dict) -> TradeoffPlot:
        """Show the λ sweep's plot of ``sets`` (``Session.failure_data()``) in tab 4; a shown
        plot that is not running takes the new sweep in place (the browser redraws no figure).
        """
        if self.tradeoff is not None and not self.tradeoff.running:
            return correction_plot(self.session, sets, self.annotator_name, self.tradeoff)
        if self.tradeoff is not None:
            self.tradeoff.close()
        plot = correction_plot(self.session, sets, self.annotator_name)
        plot.observe(self._on_sweep, "running")
        plot.on_choose(lambda choice: self.say("correction", html.escape(plot.status)))
        self.tradeoff = plot
        return plot

    def _on_sweep(self, change) -> None:
        plot = self.tradeoff
        if change["new"] or plot is None or plot.error_ is not None or not plot.results:
            return
        self.say("correction", sweep_status(self.session, plot))

    def _resume(self) -> None:
        """Load what the session folder holds; a damaged file is reported on its tab, not raised."""
        s = self.session
        adv = self._load("identification", s.load_adversarial)
        regions = self._load("distillation", lambda: s.load_regions(adv)) if adv is not None \
            else None
        self.adversarial, self.regions = adv, regions
        decisions = self._load("labeling", s.load_decisions) if regions is not None else None
        self.decisions = decisions or []
        text = self._load("identification", lambda: resume_status(s, adv, regions))
        correction = self._load("correction", s.load_correction)
        if correction is not None and any(d.is_misclassification_region for d in self.decisions):
            self._load("correction", lambda: self._show_correction(s.correction_data()))
            self._plot_inputs = self._correction_inputs()
        for stage in STAGES:
            if stage in self._damaged:
                self.say(stage, red(self._damaged[stage]))
        if s.folder.read_only:
            text = (text or "") + ("<br><i>Opened read-only: nothing is written; stages, "
                                   "votes and the report are off.</i>")
        self.say("identification", (text or "") + damage_note(s, self._damaged))
        self._render()

    def _load(self, stage: str, load):
        """``load()``, or None with its error kept for tab ``stage`` (the file named)."""
        try:
            return load()
        except Exception as exc:
            self.error_ = exc
            self._damaged.setdefault(stage, f"Could not load this tab's results: "
                                            f"{type(exc).__name__}: {exc}")
            return None

    def _damage_html(self, stage: str) -> str:
        """The load error of tab ``stage`` in red with what to do, or "" when it loaded."""
        if stage not in self._damaged or self.running == stage:
            return ""
        return (red(self._damaged[stage]) + "<br><i>Run this stage again to replace it (the "
                "damaged file moves to archive/), or restore the file and reopen.</i>")

    def _require_session(self) -> None:
        if self.session is None:
            raise ValueError(f"session must be open to run a stage; the folder "
                             f"{str(self._path)!r} could not be opened: {self.error_}")

    def _show_failure(self, exc: BaseException) -> None:
        """The folder could not be opened: say why everywhere, disable every stage control."""
        self.error_ = exc
        text = red(f"Could not open the session {str(self._path)!r}: "
                   f"{type(exc).__name__}: {exc}")
        for button in self.view.buttons:
            button.disabled = True
        for stage, box in zip(STAGES, self.view.boxes):
            box.children = [W.HTML(text)]
            self.say(stage, text)
        self.view.status.value = text

    def close(self) -> None:
        """Stop background work, close the stage widgets and the store."""
        if not hasattr(self, "_stop_event"):   # the constructor raised: nothing runs yet
            super().close()
            return
        self._closed = True   # a background thread that ends later renders nothing
        self.stop()
        if self.explorer is not None:
            self.explorer.stop()
        for w in (self.explorer, self.gallery, self.labeling_panel, self.region_table,
                  self.tradeoff):
            if w is not None:
                w.close()
        if self.session is not None:
            self.session.close()
        super().close()
