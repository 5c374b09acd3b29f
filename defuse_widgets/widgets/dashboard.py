"""All four Defuse stages in one notebook widget, wired to one session folder.

One tab per stage: **Identification** (find unrestricted adversarial examples,
explore them on the latent map), **Distillation** (cluster them into candidate
misclassification regions, browse the regions), **Labeling** (vote on each
region's review set) and **Correction** (fine-tune on the failure data of the
accepted regions over a λ sweep). Results are saved to the session folder
(:class:`~defuse_widgets._session.Session`), so a new dashboard on the same
folder resumes. Long work runs in a background thread; the dashboard only
drives the core and the four stage widgets.
"""
from __future__ import annotations

import copy
import html
from typing import Sequence

import ipywidgets as W
import traitlets
from torch import nn

from .._session import Session, correction_data, map_subset
from .._validation import check_module
from ..data import DataSplits
from ..identification import AdversarialExamples
from ..labeling import decide
from ..regions import Regions
from ._background import BackgroundWork, red
from .labeling_panel import LabelingPanel
from .latent_explorer import LatentExplorer
from .region_gallery import RegionGallery
from .tradeoff_plot import TradeoffPlot

__all__ = ["STAGES", "DefuseDashboard"]

#: The dashboard's tabs, in pipeline order.
STAGES = ("identification", "distillation", "labeling", "correction")
_TITLES = ("1 · Identification", "2 · Distillation", "3 · Labeling", "4 · Correction")
_SAVED = {"identification": ("Q", "a", "b", "centered"), "distillation": ("n_components", "eps")}


def _note(text: str) -> W.HTML:
    return W.HTML(f"<i>{text}</i>")


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
        The session folder; reopening one resumes its results and votes.
    Q, a, b, centered, n_components, eps, baseline : traitlets
        Identification (100, 50, 50, False) and distillation (30, 0.01) settings,
        restored from the session unless given; ``baseline`` also sweeps
        adversarial examples labelled with their source image's class.
    max_per_instance, max_samples, annotator, tau, review_size, rho, n_finetune, n_region_test
        Defaults 100, 10000, "", 0.5, 10, 0.5, 256, 256; see the stage widgets.
    lams, epochs, batch_size : default (1e-3, 0.1, 1, 10, 100), 1, 256
    map_size : int or None, default=2000
        Training images on the latent map (a seeded subset; None for all).
    tsne_iter, seed : int, default 500, 0
    device : str, default="cpu"
        Where identification and correction run (on copies of the models).

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
    session : Session
        Also holds the vote ``store``.
    error_ : Exception or None
        What ended the last background run, if it failed.

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
    n_components = traitlets.Int(30)
    eps = traitlets.Float(0.01)
    baseline = traitlets.Bool(False)

    def __init__(self, classifier: nn.Module, vae: nn.Module, data: DataSplits, session, *,
                 max_per_instance: int = 100, max_samples: int = 10000, annotator: str = "",
                 tau: float = 0.5, review_size: int = 10, rho: float = 0.5,
                 n_finetune: int = 256, n_region_test: int = 256,
                 lams: Sequence[float] = (1e-3, 1e-1, 1.0, 10.0, 100.0), epochs: int = 1,
                 batch_size: int = 256, map_size: int | None = 2000, tsne_iter: int = 500,
                 device: str = "cpu", seed: int = 0, **kwargs):
        if not isinstance(data, DataSplits):
            raise TypeError(f"data must be DataSplits; got {type(data).__name__}.")
        self.classifier = check_module("classifier", classifier).cpu().eval()
        self.vae = check_module("vae", vae).cpu().eval()
        self.data, self.session = data, Session(session)
        self.max_per_instance, self.max_samples = max_per_instance, max_samples
        self.annotator, self.tau, self.review_size, self.rho = annotator, tau, review_size, rho
        self.n_finetune, self.n_region_test = n_finetune, n_region_test
        self.lams, self.epochs, self.batch_size = list(lams), epochs, batch_size
        self.map_size, self.tsne_iter, self.device, self.seed = map_size, tsne_iter, device, seed
        self.explorer = self.gallery = self.labeling_panel = None
        self._built, self._ready = {}, False
        self._init_background()
        saved = self.session.load_settings()
        super().__init__(**kwargs)
        for stage, names in _SAVED.items():
            for name, value in saved.get(stage, {}).items():
                if name in names and name not in kwargs:
                    setattr(self, name, value)
        self._build()
        self._ready = True
        self._resume()

    @classmethod
    def embedded(cls, session="sessions/mnist5k", **kwargs) -> "DefuseDashboard":
        """The dashboard on the embedded MNIST-5k with the shipped classifier and β-VAE."""
        from ..data import load_mnist5k
        from ..pretrained import load_pretrained

        classifier, vae, _ = load_pretrained("mnist5k")
        return cls(classifier, vae, load_mnist5k(), session, **kwargs)

    # ------------------------------------------------------------------- view
    def _build(self) -> None:
        def control(cls, name, desc, width="150px", **kw):
            c = cls(description=desc, layout=W.Layout(width=width),
                    style={"description_width": "initial"}, **kw)
            traitlets.link((self, name), (c, "value"))
            return c

        def button(desc, action, **kw):
            b = W.Button(description=desc, **kw)
            b.on_click(lambda _: self._guarded(action))
            return b

        self._run_id = button("Run identification", self.run_identification, icon="play",
                              button_style="success")
        self._run_distill = button("Run distillation", self.run_distillation, icon="play",
                                   button_style="success")
        self._build_button = button("Build failure data", self.build_correction, icon="wrench")
        self._stop = button("Stop", self.stop, icon="stop", button_style="warning")
        self._bar = W.IntProgress(min=0, max=100, layout=W.Layout(width="200px"))
        self._status, self._decisions = W.HTML(), W.HTML()
        self._log = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))
        self._boxes = [W.VBox() for _ in STAGES]
        self._tabs = W.Tab(children=[
            W.VBox([W.HBox([control(W.IntText, "Q", "Q"), control(W.FloatText, "a", "a"),
                            control(W.FloatText, "b", "b"),
                            control(W.Checkbox, "centered", "centered noise", "170px"),
                            self._run_id]), self._boxes[0]]),
            W.VBox([W.HBox([control(W.IntText, "n_components", "K"),
                            control(W.FloatText, "eps", "ε", step=0.005),
                            self._run_distill]), self._boxes[1]]),
            self._boxes[2],
            W.VBox([W.HBox([self._build_button,
                            control(W.Checkbox, "baseline", "baseline sweep", "170px")]),
                    self._decisions, self._boxes[3]])], titles=_TITLES, selected_index=0)
        traitlets.link((self, "stage"), (self._tabs, "selected_index"),
                       transform=(STAGES.index, lambda i: STAGES[i or 0]))
        for tab, stage in zip(self._tabs.children, STAGES):   # CSS hooks for browser tests
            tab.add_class(f"defuse-{stage}")
        self.children = [
            W.HTML(f"<b>Defuse</b> · session <code>{html.escape(str(self.session.path))}</code>"),
            W.HBox([self._bar, self._stop, self._status]), self._tabs, self._log]

    @traitlets.observe("stage", "status", "running", "progress", "adversarial", "regions",
                       "decisions", "tradeoff")
    def _render(self, change=None) -> None:
        """Rebuild the view from the traits; stage widgets only when their inputs changed."""
        if not self._ready:
            return
        with self._lock:
            busy = bool(self.running)
            self._run_id.disabled = busy
            self._run_distill.disabled = busy or self.adversarial is None
            self._build_button.disabled = busy or self.regions is None
            self._stop.disabled = not busy
            self._bar.value = round(100 * self.progress)
            self._bar.bar_style = "info" if busy else ("danger" if self.error_ else "")
            self._status.value = self.status
            self._render_explorer()
            self._render_regions()
            accepted = [d for d in self.decisions if d.is_misclassification_region]
            names = self.data.class_names
            self._decisions.value = "" if not self.decisions else (
                f"{len(accepted)} of {len(self.decisions)} regions accepted:<ul>" + "".join(
                    f"<li>region {d.region} → <b>{html.escape(names[d.label])}</b>: "
                    f"{d.disagreement:.0%} of {d.n_votes} votes disagree with the "
                    "classifier</li>" for d in accepted) + "</ul>")
            self._boxes[3].children = ([self.tradeoff] if self.tradeoff is not None else
                                       [_note("Vote in the Labeling tab, then build the failure"
                                              " data of the accepted regions.")])

    def _render_explorer(self) -> None:
        adv, regions, old = self.adversarial, self.regions, self.explorer
        if adv is None:
            self._boxes[0].children = [_note("Run identification to find unrestricted "
                                             "adversarial examples.")]
            return
        built_adv, built_regions = self._built.get("explorer", (None, None))
        if built_adv is adv and built_regions is regions:
            return
        same = built_adv is adv
        if same and old.latent_map is None and old.status == "fitting":
            return   # rebuilt with its map once that is fitted (it calls _render)
        idx = map_subset(len(self.data.y_train), self.map_size, self.seed)
        self.explorer = LatentExplorer.from_models(
            self.classifier, self.vae, self.data.X_train[idx], self.data.y_train[idx], adv,
            regions=regions, class_names=self.data.class_names,
            latent_map=old.latent_map if same else None,
            cache_path=self.session.latent_map_path, n_iter=self.tsne_iter,
            random_state=self.seed)
        self.explorer.observe(self._render, "status")
        self._built["explorer"] = (adv, regions)
        self._boxes[0].children = [self.explorer]
        if old is not None:
            old.stop()
            old.close()

    def _render_regions(self) -> None:
        regions = self.regions
        if "regions" in self._built and self._built["regions"] is regions:
            return
        self._built["regions"] = regions
        for old in (self.gallery, self.labeling_panel):
            if old is not None:
                old.close()
        self.gallery = self.labeling_panel = None
        if regions is None or len(regions) == 0:
            why = "lower ε: none was kept" if regions is not None else "run distillation"
            self._boxes[1].children = [_note(f"No regions yet ({why}).")]
            self._boxes[2].children = [_note("Labeling starts once there are regions.")]
            return
        names = self.data.class_names
        self.gallery = RegionGallery(regions, self.vae, self.classifier, names, tau=self.tau)
        self.labeling_panel = LabelingPanel(
            self.session.open_store(self.data.n_classes), regions, self.vae, self.classifier,
            class_names=names, annotator=self.annotator, review_size=self.review_size,
            tau=self.tau, seed=self.seed, rho=self.rho, n_finetune=self.n_finetune)
        self._boxes[1].children = [self.gallery]
        self._boxes[2].children = [self.labeling_panel]

    # -------------------------------------------------------------- triggers
    def run_identification(self, wait: bool = False) -> "DefuseDashboard":
        """Find adversarial examples in a background thread; save ``adversarial.npz``.

        A new result replaces the session's regions and votes (moved to
        ``archive/``). With ``wait=True``, block until done and re-raise its error.
        """
        settings = dict(Q=self.Q, a=self.a, b=self.b, centered=self.centered,
                        max_per_instance=self.max_per_instance, seed=self.seed)
        models = ((self.classifier, self.vae) if self.device == "cpu" else
                  (copy.deepcopy(self.classifier), copy.deepcopy(self.vae)))

        def progress(done, total):
            return self._report(done, total, f"Identification: {done} of {total} training "
                                             "images perturbed…")

        def work():
            adv = self.session.identify(*models, self.data.X_train, self.data.y_train,
                                        device=self.device, callback=progress, **settings)
            if adv is None:
                return "Identification stopped; nothing was saved", None
            self.regions, self.adversarial = None, adv
            return (f"Identification: kept {len(adv)} adversarial examples of "
                    f"{adv.n_decoded} decodes ({adv.rate:.1%} misclassified), saved to "
                    f"adversarial.npz{self._archived()}"), adv

        return self._start("identification", work, wait)

    def run_distillation(self, wait: bool = False) -> "DefuseDashboard":
        """Fit the regions in a background thread; save ``regions.npz``.

        New regions replace the session's votes (moved to ``archive/``). Stop
        discards the result once the mixture fit returns.
        """
        adv = self.adversarial
        if adv is None:
            raise ValueError("adversarial examples must exist before distillation; got none "
                             "(run identification first).")
        settings = dict(n_components=self.n_components, eps=self.eps,
                        max_samples=self.max_samples, seed=self.seed)

        def work():
            self.status = html.escape(f"Distillation: fitting K={self.n_components} "
                                      f"components to {len(adv)} codes…")
            regions = self.session.distill(adv, n_classes=self.data.n_classes,
                                           stopped=self._stop_event.is_set, **settings)
            if regions is None:
                return "Distillation stopped; its result was discarded", None
            self.regions = regions
            return (f"Distillation: {len(regions)} candidate regions, saved to regions.npz"
                    f"{self._archived()}"), regions

        return self._start("distillation", work, wait)

    def build_correction(self, start: bool = False) -> TradeoffPlot | None:
        """Build D_f from the votes' accepted regions and show the λ sweep's TradeoffPlot.

        Returns the plot (started when ``start``), or None while no region is accepted.
        """
        if self.regions is None or self.session.store is None:
            raise ValueError("regions and votes must exist before correction; got none "
                             "(run distillation and vote in the Labeling tab).")
        rho = self.labeling_panel.rho if self.labeling_panel is not None else self.rho
        self.decisions = [d for d in decide(self.session.store, rho=rho)
                          if d.region < len(self.regions)]
        if not any(d.is_misclassification_region for d in self.decisions):
            self.status = ("No region is accepted yet: a region is accepted when more than "
                           f"ρ={rho:g} of its votes disagree with the classifier.")
            return None
        sets = correction_data(self.regions, self.decisions, self.vae, self.data,
                               n_finetune=self.n_finetune, n_region_test=self.n_region_test,
                               tau=self.tau, seed=self.seed,
                               baseline_from=self.adversarial if self.baseline else None)
        if self.tradeoff is not None:
            self.tradeoff.close()
        plot = TradeoffPlot(self.classifier, self.data.X_train, self.data.y_train, sets["X_f"],
                            sets["y_f"], eval_sets=sets["eval_sets"], lams=self.lams,
                            epochs=self.epochs, X_adv=sets["X_adv"], y_adv=sets["y_adv"],
                            batch_size=self.batch_size, device=self.device, seed=self.seed,
                            checkpoint_dir=self.session.checkpoint_dir)
        plot.observe(self._on_sweep, "running")
        self.tradeoff = plot
        self.stage = "correction"
        self.status = f"Failure data: {len(sets['y_f'])} samples in D_f. Start the λ sweep."
        self._notify("correction", plot)
        if start:
            plot.start()
        return plot

    @property
    def corrected_classifier(self) -> nn.Module | None:
        """The classifier fine-tuned with the selected λ, once a sweep has finished."""
        corrector = self.tradeoff.corrector_ if self.tradeoff is not None else None
        return getattr(corrector, "best_model_", None)

    # ------------------------------------------------------------- internals
    def _archived(self) -> str:
        where = self.session.archived
        return f"; earlier regions and votes moved to {where}" if where else ""

    def _on_sweep(self, change) -> None:
        corrector = self.tradeoff.corrector_ if self.tradeoff is not None else None
        if change["new"] or getattr(corrector, "best_model_", None) is None:
            return
        try:   # the sweep's history and results too, not only the model
            self.session.save_correction(corrector)
        except (ValueError, OSError) as exc:
            self.status = html.escape(f"Saving the correction failed: {exc}")
            return
        self.status = html.escape(f"Corrected classifier and sweep results saved to "
                                  f"{self.session.path}.")

    def _resume(self) -> None:
        """Load what the session folder holds; a damaged file is reported, not raised."""
        try:
            adv = self.session.load_adversarial()
            regions = self.session.load_regions(adv) if adv is not None else None
            self.adversarial, self.regions = adv, regions
            store = self.session.store
            n_votes = len(store.votes()) if store is not None else 0
            self.status = html.escape(
                f"New session in {self.session.path}: start with identification." if adv is None
                else f"Resumed {self.session.path}: {len(adv)} adversarial examples, "
                     f"{'no' if regions is None else len(regions)} regions, {n_votes} votes.")
        except Exception as exc:
            self.error_ = exc
            self.status = red(f"Could not load the session: {type(exc).__name__}: {exc}")
        self._render()

    def close(self) -> None:
        """Stop background work, close the stage widgets and the store."""
        self.stop()
        if self.explorer is not None:
            self.explorer.stop()
        for w in (self.explorer, self.gallery, self.labeling_panel, self.tradeoff):
            if w is not None:
                w.close()
        self.session.close()
        super().close()
