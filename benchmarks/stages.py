"""Correction, t-SNE and distillation timings (issue 4 §2–4), plus peak memory per stage.

* **Correction**: time per sample-epoch of a λ fine-tune (each step takes a
  batch from D and one from D_f) against a plain training epoch of the same
  classifier on D; and the wall time of a λ sweep (the paper's 17 λ × 3 epochs
  unless ``quick``).
* **t-SNE**: openTSNE fitting training codes and placing adversarial codes with
  ``transform``, against scikit-learn's ``TSNE`` (no ``transform``: it fits all
  points jointly) on the same points; and openTSNE at paper scale (60k + 10k).
* **Distillation**: our :class:`~defuse_widgets.stages.distillation.Distiller`, with
  each backend (``"sklearn"`` and the vectorized ``"torch"``), against
  scikit-learn's ``BayesianGaussianMixture`` with its defaults on the same
  adversarial codes (d=10, K=100, full covariance, DP prior).

Peak memory (resident set) is read after each stage; stages run in one process
in this order, so each peak includes what came before.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from defuse_widgets.callbacks import Callback
from defuse_widgets.data import load_mnist5k
from defuse_widgets.models import MnistCNN
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.models.training import train_classifier
from defuse_widgets.stages.correction import PAPER_LAMS, Corrector
from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.failure_data import build_failure_sets
from defuse_widgets.stages.identification import identify
from defuse_widgets.stages.labeling import RegionDecision
from defuse_widgets.stages.latent_map import LatentMap

from ._common import peak_rss_mb
from .widget_latency import _paper_scale_codes


def correction(classifier, vae, data, adv, quick: bool) -> list:
    regions = Distiller(n_components=30, eps=0.01, max_samples=3000,
                        seed=0).fit(adv, n_classes=10).regions_
    # D_f from the 5 heaviest regions, labelled with their most common source class
    top = np.argsort(-regions.weights)[:5]
    decisions = [RegionDecision(region=int(k), is_misclassification_region=True,
                                label=int(np.bincount(adv.true_label[regions.members(k)],
                                                      minlength=10).argmax()),
                                disagreement=1.0, agreement=1.0, n_votes=10, n_none=0)
                 for k in top]
    sets = build_failure_sets(regions, decisions, vae, n_finetune=256, n_region_test=256,
                              tau=0.5, seed=0)
    X_f, y_f = sets.pop("finetune")
    evals = {"validation": (data.X_val, data.y_val), "test": (data.X_test, data.y_test), **sets}
    X, y = data.X_train, data.y_train

    plain = MnistCNN(1, 32, 10)
    t = time.perf_counter()
    train_classifier(plain, X, y, epochs=1, batch_size=256, lr=1e-3, optimizer="adam",
                     progress=False)
    plain_per_sample = (time.perf_counter() - t) / len(X)

    class TrainingTime(Callback):   # from λ start to its last batch: training only
        def on_lam_begin(self, corrector, **kw):
            self.t0 = time.perf_counter()

        def on_batch_end(self, corrector, **kw):
            self.t1 = time.perf_counter()

    clock = TrainingTime()
    c = Corrector(lams=[0.1], epochs=1, device="cpu", callbacks=[clock])
    c.fit(classifier, X, y, X_f, y_f, eval_sets=evals)   # warm-up
    t = time.perf_counter()
    c.fit(classifier, X, y, X_f, y_f, eval_sets=evals)
    one_lam, train_s = time.perf_counter() - t, clock.t1 - clock.t0
    samples = 2 * len(X)          # each step: a batch of D and a batch of D_f
    per_sample = train_s / samples
    rows = [dict(what="correction: plain training epoch on D",
                 value=f"{plain_per_sample * 1e6:.0f} µs/sample",
                 note=f"{len(X)} images, batch 256, Adam",
                 raw={"s_per_sample": plain_per_sample}),
            dict(what="correction: one λ epoch (batches of D + D_f)",
                 value=f"{per_sample * 1e6:.0f} µs/sample",
                 target="≤ 1.25× plain", met=per_sample <= 1.25 * plain_per_sample,
                 note=f"{per_sample / plain_per_sample:.2f}× plain; {train_s:.1f} s training "
                      f"on {samples} samples, {one_lam:.1f} s with the evaluation sets",
                 raw={"train_s": train_s, "fit_s": one_lam,
                      "ratio": per_sample / plain_per_sample})]
    lams, epochs = ((0.01, 0.1, 1.0), 1) if quick else (PAPER_LAMS, 3)
    t = time.perf_counter()
    sweep = Corrector(lams=lams, epochs=epochs, device="cpu").fit(classifier, X, y, X_f, y_f,
                                                                   eval_sets=evals)
    wall = time.perf_counter() - t
    rows.append(dict(what=f"correction: sweep of {len(lams)} λ × {epochs} epochs (sequential)",
                     value=f"{wall:.0f} s", note=f"selected λ={sweep.best_['lam']:g}; "
                     f"{wall / (len(lams) * epochs):.1f} s per λ-epoch", raw={"s": wall}))
    rows.append(dict(what="peak memory after correction", value=f"{peak_rss_mb():.0f} MB"))
    return rows


def tsne(vae, data, adv, quick: bool) -> list:
    from sklearn.manifold import TSNE

    n_train, n_adv = (2000, 500) if quick else (10000, 2000)
    codes, labels = _paper_scale_codes(vae, data, n=n_train)
    adv_codes = adv.codes[:n_adv]
    t = time.perf_counter()
    LatentMap(seed=0, n_jobs=-1).fit(codes, adv_codes)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    TSNE(perplexity=30, random_state=0, n_jobs=-1, init="pca").fit_transform(
        np.concatenate([codes, adv_codes]))
    ref = time.perf_counter() - t
    rows = [dict(what=f"t-SNE: openTSNE fit {n_train:,} + transform {n_adv:,}",
                 value=f"{ours:.1f} s", raw={"s": ours}),
            dict(what=f"t-SNE: scikit-learn TSNE on the same {n_train + n_adv:,} points",
                 value=f"{ref:.1f} s", note=f"openTSNE is {ref / ours:.1f}× faster",
                 raw={"s": ref, "ratio": ref / ours})]
    if not quick:
        codes60, _ = _paper_scale_codes(vae, data)
        t = time.perf_counter()
        LatentMap(seed=0, n_jobs=-1).fit(codes60, adv.codes[:10000])
        big = time.perf_counter() - t
        rows.append(dict(what="t-SNE: openTSNE fit 60,000 + transform 10,000",
                         value=f"{big:.0f} s", raw={"s": big}))
    rows.append(dict(what="peak memory after t-SNE", value=f"{peak_rss_mb():.0f} MB"))
    return rows


def distillation(adv, quick: bool) -> list:
    """Both Distiller backends against scikit-learn's reference on the same codes.

    One row per (size, backend): wall time, speed-up over the reference, EM
    iterations, held-out log-likelihood (and its ratio to the reference's),
    kept regions (weight > 0.01), ARI of ``predict`` on the fit codes against
    the reference. ``met`` asks for ≥ 5× and equal quality: ARI ≥ 0.9,
    log-likelihood within 1 %, region count within ±20 %.
    """
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import BayesianGaussianMixture

    rows = []
    rng = np.random.default_rng(0)
    for n in ((3000,) if quick else (10000, 50000)):
        n = min(n, len(adv) - 2000)
        pick = rng.permutation(len(adv))
        fit, held = adv.codes[pick[:n]].astype(np.float64), adv.codes[pick[-2000:]]
        t = time.perf_counter()
        ref = BayesianGaussianMixture(n_components=100, covariance_type="full",
                                      weight_concentration_prior_type="dirichlet_process",
                                      random_state=0, max_iter=1000).fit(fit)
        ref_s = time.perf_counter() - t
        ll_ref, kept_ref = ref.score(held), int((ref.weights_ > 0.01).sum())
        labels_ref = ref.predict(fit)
        for backend in ("sklearn", "torch"):
            t = time.perf_counter()
            ours = Distiller(n_components=100, eps=0.01, max_samples=None, seed=0,
                             backend=backend).fit(adv.subset(pick[:n]), n_classes=10)
            ours_s = time.perf_counter() - t
            ll = ours.mixture_.score(held)
            ari = adjusted_rand_score(labels_ref, ours.mixture_.predict(fit))
            kept = len(ours.regions_)
            speedup, ll_ratio = ref_s / ours_s, ll / ll_ref
            quality = ari >= 0.9 and abs(ll_ratio - 1) <= 0.01 and abs(kept - kept_ref) <= \
                0.2 * kept_ref
            rows.append(dict(
                what=f"distillation ({backend}): {n:,} codes, K=100",
                value=f"{ours_s:.1f} s vs {ref_s:.1f} s",
                target="≥ 5× faster, equal quality", met=speedup >= 5 and quality,
                note=f"{speedup:.2f}×; EM iterations {ours.n_iter_} vs {ref.n_iter_}; held-out "
                     f"log-lik {ll:.3f} vs {ll_ref:.3f} (ratio {ll_ratio:.4f}); regions {kept} "
                     f"vs {kept_ref}; ARI {ari:.3f}",
                raw=dict(backend=backend, n=n, ours_s=ours_s, ref_s=ref_s, speedup=speedup,
                         ari=ari, ll=[ll, ll_ref], ll_ratio=ll_ratio, kept=[kept, kept_ref],
                         n_iter=[ours.n_iter_, int(ref.n_iter_)], quality=quality)))
    rows.append(dict(what="peak memory after distillation", value=f"{peak_rss_mb():.0f} MB"))
    return rows


def run(quick: bool = False) -> list:
    torch.manual_seed(0)
    classifier, vae, _ = load_pretrained()
    data = load_mnist5k()
    adv = identify(classifier, vae, data.X_train, data.y_train, Q=20 if quick else 100, a=50,
                   b=50, centered=False, seed=0, progress=False)
    rows = [dict(what="peak memory after identification",
                 value=f"{peak_rss_mb():.0f} MB", note=f"{adv.n_decoded:,} decodes, "
                 f"{len(adv):,} kept")]
    rows += distillation(adv, quick)
    rows += tsne(vae, data, adv, quick)
    rows += correction(classifier, vae, data, adv, quick)
    return rows
