"""Server-side widget latencies (issue 3 targets, issue 4 §5).

What a browser event costs in the kernel, from the Python call that the event
triggers to the widget state that goes back to the page:

* τ slider → new gallery: set the slider's value (linked to ``RegionGallery.tau``)
  and wait for the 64-image PNG grid (decode, classify, draw).
* point click → decoded image: ``LatentExplorer.select_point``, what a plotly
  click calls (decode one code, classify, draw).
* 70k-point scatter: build the explorer's ``FigureWidget`` with 60,000
  training and 10,000 adversarial points, then change the highlighted region.

The 60,000 training codes are encodings of the 3,500 embedded MNIST training
images and of random small affine distortions of them (the embedded subset has
no 60,000 images); the 10,000 adversarial codes come from identification on the
shipped models. Browser-side rendering is not included.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from defuse_widgets.data import load_mnist5k
from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.latent_map import fit_or_load
from defuse_widgets.stages.identification import identify
from defuse_widgets.models.inference import encode_mean
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.models.training import random_affine
from defuse_widgets.widgets import LatentExplorer, RegionGallery

from ._common import timeit

CACHE = Path(__file__).parent / "results" / ".cache"


def _paper_scale_codes(vae, data, n: int = 60000, seed: int = 0):
    """(n, d) codes and labels: the training images, then affine distortions of them."""
    gen = torch.Generator().manual_seed(seed)
    X, y = data.X_train, data.y_train
    parts, labels = [X], [y]
    while sum(len(p) for p in parts) < n:
        parts.append(random_affine(X, gen))
        labels.append(y)
    X, y = torch.cat(parts)[:n], torch.cat(labels)[:n]
    return encode_mean(vae, X).numpy(), y.numpy()


def run(quick: bool = False) -> list:
    torch.manual_seed(0)
    classifier, vae, _ = load_pretrained()
    data = load_mnist5k()
    rows = []

    # --- the embedded default: regions of the quickstart's settings
    adv = identify(classifier, vae, data.X_train, data.y_train, Q=20, a=50, b=50, centered=False, seed=0,
                   progress=False)
    regions = Distiller(n_components=30, eps=0.01, max_samples=3000,
                        seed=0).fit(adv, n_classes=10).regions_
    gallery = RegionGallery(regions, vae, classifier, tau=0.5, n_samples=64)
    taus = np.geomspace(0.01, 1.0, 21)
    t = timeit(lambda i: setattr(gallery._slider, "value", float(taus[i % len(taus)])),
               repeat=20)
    rows.append(dict(what="τ slider → new 64-image gallery", value=f"{t['median_ms']:.0f} ms "
                     f"(p90 {t['p90_ms']:.0f})", target="≤ 200 ms", met=t["p90_ms"] <= 200,
                     note=f"median of {t['repeat']} slider moves, region 0, 32×32 decodes",
                     raw=t))

    train_codes = encode_mean(vae, data.X_train).numpy()
    explorer = LatentExplorer(train_codes, data.y_train, adv, vae=vae, classifier=classifier,
                              regions=regions, background=False,
                              cache_path=CACHE / "map-mnist5k.npz")
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(adv), 50)
    t = timeit(lambda i: explorer.select_point("adversarial", int(picks[i % 50])), repeat=50)
    rows.append(dict(what="point click → decoded image", value=f"{t['median_ms']:.1f} ms "
                     f"(p90 {t['p90_ms']:.1f})", target="≤ 100 ms", met=t["p90_ms"] <= 100,
                     note=f"{len(train_codes)} training + {len(adv)} adversarial points",
                     raw=t))
    if quick:
        return rows

    # --- paper scale: 60k training + 10k adversarial points
    codes60, labels60 = _paper_scale_codes(vae, data)
    adv10 = adv.subset(np.arange(min(10000, len(adv))))
    cached = (CACHE / "map-60k.npz").exists()
    t0 = time.perf_counter()
    latent_map = fit_or_load(codes60, adv10.codes, cache_path=CACHE / "map-60k.npz",
                             seed=0, n_jobs=-1)
    fit_s = time.perf_counter() - t0
    regions10 = Distiller(n_components=30, eps=0.01, max_samples=3000,
                          seed=0).fit(adv10, n_classes=10).regions_
    t0 = time.perf_counter()
    big = LatentExplorer(codes60, labels60, adv10, vae=vae, classifier=classifier,
                         regions=regions10, latent_map=latent_map, background=False)
    build_ms = (time.perf_counter() - t0) * 1000
    rows.append(dict(what="70k-point scatter: build the FigureWidget", value=f"{build_ms:.0f} ms",
                     note=f"60,000 training + 10,000 adversarial points; t-SNE map "
                          f"{'loaded from cache' if cached else 'fitted'} in {fit_s:.0f} s",
                     raw={"ms": build_ms}))
    big_regions = [k for k in range(len(regions10))][:10]
    t = timeit(lambda i: setattr(big, "region", big_regions[i % len(big_regions)]
                                 if i % 2 == 0 else None), repeat=20)
    rows.append(dict(what="70k-point scatter: change the highlighted region",
                     value=f"{t['median_ms']:.1f} ms (p90 {t['p90_ms']:.1f})",
                     note="alternating a region and none; updates one trace", raw=t))
    picks60 = rng.integers(0, len(codes60), 50)
    t = timeit(lambda i: big.select_point("train", int(picks60[i % 50])), repeat=50)
    rows.append(dict(what="70k-point scatter: point click → decoded image",
                     value=f"{t['median_ms']:.1f} ms (p90 {t['p90_ms']:.1f})", target="≤ 100 ms",
                     met=t["p90_ms"] <= 100, raw=t))
    return rows
