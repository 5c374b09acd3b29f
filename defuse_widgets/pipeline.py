"""All four Defuse stages, headless: identify → distill → label → correct.

:func:`run_defuse` is what ``defuse-widgets run`` calls. It writes a session
directory (arrays, the SQLite annotation store, checkpoints, results JSON) and
returns the results dict, whose ``figure4`` entry is shaped like the paper's
Figure 4.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import persistence as io
from .annotations import AnnotationStore
from .annotators import SimulatedAnnotator
from .callbacks import PrintProgress
from .correction import PAPER_LAMS, SELECTIONS, Corrector
from .data import DataSplits, load_dataset
from .distillation import Distiller
from .identification import identify
from .failure_data import build_failure_sets, review_set
from .inference import decode
from .labeling import agreement_summary, decide
from .novelty import nearest_misclassified
from .seeding import seed_everything
from .training import reconstruction_fidelity


@dataclass
class DefuseConfig:
    """Settings of a headless Defuse run (defaults: the paper's MNIST settings
    scaled to the embedded 5k subset; see README for the measured times)."""

    dataset: str = "mnist5k"
    root: str | None = None
    Q: int = 100
    a: float = 50.0
    b: float = 50.0
    centered: bool = True
    max_per_instance: int = 100
    n_components: int = 100
    eps: float = 0.01
    max_samples: int = 10000
    tau: float = 0.5
    review_size: int = 10
    rho: float = 0.5
    n_workers: int = 5
    error_rate: float = 0.0
    n_finetune: int = 256
    n_region_test: int = 256
    lams: tuple = PAPER_LAMS
    epochs: int = 3
    batch_size: int = 256
    selection: str = "balanced"
    tolerance: float = 0.005
    device: str | None = None
    seed: int = 0
    out: str = "runs/defuse"
    overwrite: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from ._validation import check_choice, check_int, check_number, check_seed
        from .data.registry import DATASETS

        check_choice("dataset", self.dataset, DATASETS)
        check_choice("selection", self.selection, SELECTIONS)
        check_seed("seed", self.seed)
        for name in ("centered", "overwrite", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}.")
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise TypeError(f"out must be a non-empty str naming the session folder; "
                            f"got {self.out!r}.")
        if self.device is not None and not isinstance(self.device, (str, torch.device)):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda', or None; "
                            f"got {self.device!r}.")
        for name in ("Q", "max_per_instance", "n_components", "max_samples", "review_size",
                     "n_workers", "n_finetune", "n_region_test", "epochs", "batch_size"):
            check_int(name, getattr(self, name), low=1)
        check_number("a", self.a, low=0, low_inclusive=False)
        check_number("b", self.b, low=0, low_inclusive=False)
        check_number("tau", self.tau, low=0, low_inclusive=False)
        check_number("eps", self.eps, low=0, high=1, high_inclusive=False)
        check_number("rho", self.rho, low=0, high=1, high_inclusive=False)
        check_number("error_rate", self.error_rate, low=0, high=1)
        check_number("tolerance", self.tolerance, low=0, high=1)
        self.lams = tuple(check_number(f"lams[{i}]", v, low=0) for i, v in enumerate(self.lams))
        if not self.lams:
            raise ValueError("lams must hold at least one λ value; got an empty sequence.")

    @classmethod
    def quick(cls, **kw) -> "DefuseConfig":
        """A CI-sized run: Q=20, K=30, 3,000 codes, λ in (0.01, 0.1, 1), 2 epochs each."""
        base = dict(Q=20, n_components=30, max_samples=3000, lams=(0.01, 0.1, 1.0),
                    epochs=2, n_finetune=128, n_region_test=128, out="runs/defuse-quick")
        return cls(**{**base, **kw})


def figure4_table(results: dict) -> str:
    """Format the before / baseline / Defuse rows as the paper's Figure 4."""
    head = f"{'':<34}{'# Regions':>10}{'Validation':>12}{'Test':>8}{'Misclass. region':>18}"
    lines = [head, "-" * len(head)]
    for label, key in (("Before finetuning", "before"),
                       ("Unrestricted adversarial examples", "baseline"), ("Defuse", "defuse")):
        r = results["figure4"].get(key)
        if r is None:
            continue
        n = str(r["n_regions"]) if r.get("n_regions") is not None else "-"
        lines.append(f"{label:<34}{n:>10}{100 * r['validation']:>12.1f}{100 * r['test']:>8.1f}"
                     f"{100 * r['region_test']:>18.1f}")
    return "\n".join(lines)


def run_defuse(cfg: DefuseConfig | None = None, *, classifier=None, vae=None, oracle=None,
               data=None, log=print) -> dict:
    """Run identification, distillation, labeling (simulated annotator) and correction.

    Parameters
    ----------
    cfg : DefuseConfig, optional
    classifier, vae, oracle : nn.Module, optional
        Default to the shipped weights of the embedded ``mnist5k`` dataset.
        ``oracle`` backs the :class:`SimulatedAnnotator`, which stands in for
        human annotators.
    data : DataSplits, optional
        Use these splits instead of loading ``cfg.dataset`` (for example a
        reduced stand-in; see :mod:`defuse_widgets.reproduce`).
    log : callable

    Returns
    -------
    dict
        Results: config, timings, fidelity, stage summaries, per-λ tradeoff and
        the Figure 4 rows. Also written to ``<out>/results.json``.
    """
    from ._validation import resolve_device

    cfg = cfg or DefuseConfig()
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    out = _prepare_session(cfg)
    t_start, timings = time.perf_counter(), {}
    if data is None:
        data = load_dataset(cfg.dataset, root=cfg.root, seed=cfg.seed)
    elif not isinstance(data, DataSplits):
        raise TypeError(f"data must be a DataSplits; got {type(data).__name__}.")
    if classifier is None or vae is None or oracle is None:
        from .pretrained import load_pretrained
        c, v, o = load_pretrained(cfg.dataset)
        classifier, vae, oracle = classifier or c, vae or v, oracle or o
    for m in (classifier, vae, oracle):
        m.to(dev).eval()
    res = {"config": asdict(cfg), "device": str(dev), "torch": torch.__version__}
    res["fidelity"] = reconstruction_fidelity(classifier, vae, data.X_test, data.y_test, device=dev)
    log(f"[data] {data}; classifier test accuracy {res['fidelity']['accuracy_images']:.3f}, "
        f"on VAE reconstructions {res['fidelity']['accuracy_reconstructions']:.3f}")

    t = time.perf_counter()
    adv = identify(classifier, vae, data.X_train, data.y_train, Q=cfg.Q, a=cfg.a, b=cfg.b,
                   max_per_instance=cfg.max_per_instance, centered=cfg.centered, seed=cfg.seed,
                   device=dev, progress=cfg.progress)
    timings["identification"] = time.perf_counter() - t
    _save(out, io.save_npz, "adversarial.npz", adv.to_npz())
    res["identification"] = dict(n_decoded=adv.n_decoded, n_misclassified=adv.params["n_misclassified"],
                                 n_kept=len(adv), rate=adv.rate,
                                 n_source_images=int(len(np.unique(adv.source_index))))
    log(f"[identify] {adv.n_decoded} decodes, {adv.rate:.1%} misclassified, {len(adv)} kept "
        f"({timings['identification']:.0f}s)")

    t = time.perf_counter()
    distiller = Distiller(n_components=cfg.n_components, eps=cfg.eps, max_samples=cfg.max_samples,
                          random_state=cfg.seed).fit(adv, n_classes=data.n_classes)
    regions = distiller.regions_
    timings["distillation"] = time.perf_counter() - t
    _save(out, io.save_npz, "regions.npz", regions.to_npz())
    res["distillation"] = dict(n_regions=len(regions), converged=distiller.converged_,
                               n_iter=distiller.n_iter_, n_fit=len(distiller.fit_index_),
                               regions=regions.summary())
    log(f"[distill] {len(regions)} candidate regions from {len(distiller.fit_index_)} codes, "
        f"{distiller.n_iter_} EM iterations ({timings['distillation']:.0f}s)")

    t = time.perf_counter()
    annotator = SimulatedAnnotator(oracle, n_workers=cfg.n_workers, error_rate=cfg.error_rate,
                                   seed=cfg.seed, device=dev)
    store = AnnotationStore(out / "annotations.sqlite", n_classes=data.n_classes)
    for k in range(len(regions)):
        imgs, predicted = review_set(regions, k, vae, classifier, size=cfg.review_size,
                                     tau=cfg.tau, seed=cfg.seed, device=dev)
        store.set_review_set(k, predicted)
        annotator.annotate(store, k, imgs)
    decisions = decide(store, rho=cfg.rho)
    store.close()
    io.record_files(out, {"annotations.sqlite": "annotations"}, hashed=False)
    _save(out, io.save_json, "decisions.json",
          {"rho": cfg.rho, "decisions": [asdict(d) for d in decisions]})
    accepted = [d for d in decisions if d.is_misclassification_region]
    timings["labeling"] = time.perf_counter() - t
    res["labeling"] = dict(annotator=f"simulated ({cfg.n_workers} workers backed by an oracle CNN)",
                           n_candidates=len(decisions), n_misclassification_regions=len(accepted),
                           decisions=[asdict(d) for d in decisions],
                           agreement=agreement_summary(decisions))
    log(f"[label] {len(accepted)} of {len(decisions)} regions accepted as misclassification "
        f"regions by the simulated annotator (rho={cfg.rho})")

    evals = {"validation": (data.X_val, data.y_val), "test": (data.X_test, data.y_test)}
    if not accepted:
        log("[correct] no misclassification region was accepted; nothing to correct.")
        res["timings"] = {**timings, "total": time.perf_counter() - t_start}
        return _finish(res, out, log)

    t = time.perf_counter()
    sets = build_failure_sets(regions, decisions, vae, n_finetune=cfg.n_finetune,
                              n_region_test=cfg.n_region_test, tau=cfg.tau, seed=cfg.seed,
                              device=dev)
    X_f, y_f = sets.pop("finetune")
    evals.update(sets)
    # Baseline: individually labelled unrestricted adversarial examples, as many as D_f.
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(adv), size=min(len(adv), len(y_f)), replace=False)
    X_adv = decode(vae, torch.from_numpy(adv.codes[pick]), device=dev)
    y_adv = torch.from_numpy(annotator.label(X_adv))
    labelled = y_adv >= 0
    X_adv, y_adv = X_adv[labelled], y_adv[labelled]
    res["correction"] = {"n_finetune": len(y_f), "n_baseline": int(len(y_adv))}
    sweeps = {}
    for name, (Xf, yf) in (("defuse", (X_f, y_f)), ("baseline", (X_adv, y_adv))):
        corr = Corrector(lams=cfg.lams, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         selection=cfg.selection, tolerance=cfg.tolerance, device=dev,
                         seed=cfg.seed, name=name,
                         checkpoint_dir=out / "checkpoints",
                         callbacks=[PrintProgress()] if cfg.progress else [])
        corr.fit(classifier, data.X_train, data.y_train, Xf, yf, eval_sets=evals)
        sweeps[name] = corr
        res["correction"][name] = dict(tradeoff=corr.results_, best=corr.best_)
    timings["correction"] = time.perf_counter() - t
    _save(out, io.save_state_dict, "corrected_classifier.pt",
          sweeps["defuse"].best_model_.state_dict())

    before = sweeps["defuse"].before_
    res["figure4"] = {
        "before": {**_row(before), "n_regions": None},
        "baseline": {**_row(sweeps["baseline"].best_), "n_regions": None},
        "defuse": {**_row(sweeps["defuse"].best_), "n_regions": len(accepted)},
    }
    X_rt = evals["region_test"][0]
    nov_idx = np.concatenate([np.arange(i * cfg.n_region_test, i * cfg.n_region_test + 10)
                              for i in range(len(accepted))])
    res["novelty"] = nearest_misclassified(X_rt[nov_idx], classifier, data.X_train, data.y_train,
                                           device=dev).summary()
    res["timings"] = {**timings, "total": time.perf_counter() - t_start}
    return _finish(res, out, log)


def _prepare_session(cfg: DefuseConfig) -> Path:
    """Create the session folder; refuse to mix two configurations in one folder."""
    import shutil

    out = Path(cfg.out)
    config = json.loads(json.dumps({k: v for k, v in asdict(cfg).items()
                                    if k not in ("overwrite", "progress")}, default=str))
    old = out / "config.json"
    if old.exists() and _read_config(old) != config:
        if not cfg.overwrite:
            raise ValueError(f"out must be a new folder or one from the same configuration; "
                             f"got {str(out)!r}, which holds a session run with other settings "
                             "(its votes are kept). Choose another out or pass overwrite=True "
                             "(--overwrite) to delete it.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    io.read_manifest(out)   # refuse a session folder from a newer version before any work
    _save(out, io.save_json, "config.json", config)
    return out


def _read_config(path: Path) -> dict | None:
    try:
        return io.load_json(path)
    except io.SessionFormatError:   # a damaged config: treated as another configuration
        return None


def _save(out: Path, writer, name: str, obj) -> None:
    """Write ``out/name`` atomically and record it in the session manifest."""
    writer(io.resolve_inside(out, name), obj)
    io.record_files(out, {name: Path(name).stem})


def _row(rec: dict) -> dict:
    return {k: rec[k] for k in ("validation", "test", "region_test")} | {"lam": rec.get("lam")}


def _finish(res: dict, out: Path, log) -> dict:
    writer = lambda path, obj: io.save_json(path, obj, default=_jsonable)  # noqa: E731
    _save(out, writer, "results.json", res)
    if "figure4" in res:
        log("\n" + figure4_table(res))
    log(f"\nsession written to {out} ({res['timings']['total']:.0f}s total)")
    return res


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
