"""Server-side widget latencies (issue 3 targets, issue 4 §5).

What a browser event costs in the kernel, from the Python call that the event
triggers to the widget state that goes back to the page:

* τ slider → new gallery: set the slider's value (linked to ``RegionGallery.tau``)
  and wait for the 64-image PNG grid (decode, classify, draw).
* point click → decoded image: ``LatentExplorer.select_point``, what a plotly
  click calls (decode one code, classify, draw).
* 70k-point scatter: build the explorer's ``FigureWidget`` with 60,000
  training and 10,000 adversarial points, then change the highlighted region.
* "all regions" τ change (issue 15): the gallery's every-region view of 20
  regions × 16 samples redrawn after a slider move, and what 50 such moves
  leave behind (widgets, traced Python memory, resident memory).

* bytes to open a resumed dashboard (issue 15): the synced state of every widget
  of a dashboard on a finished quick session, plotly.js included.

``python -m benchmarks.widget_latency --gallery`` runs only the gallery and bytes rows
and merges them into the machine's results file.

The 60,000 training codes are encodings of the 3,500 embedded MNIST training
images and of random small affine distortions of them (the embedded subset has
no 60,000 images); the 10,000 adversarial codes come from identification on the
shipped models. Browser-side rendering is not included.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from ipywidgets.widgets import widget as ipywidget

from defuse_widgets.data import load_mnist5k
from defuse_widgets.models.inference import encode_mean
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.models.training import random_affine
from defuse_widgets.stages.distillation import Distiller
from defuse_widgets.stages.identification import identify
from defuse_widgets.stages.latent_map import LatentMap, fit_or_load
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets import LatentExplorer, RegionGallery

from ._common import RESULTS, machine, machine_tag, markdown, timeit

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


def _cached_map(train_codes, codes, path: Path, **params) -> LatentMap:
    """The map of ``train_codes`` from ``path`` when it fits, else fitted and saved there."""
    cached = LatentMap.load(path) if path.exists() else None
    m = fit_or_load(train_codes, codes, cached=cached, **params)
    if m is not cached:
        path.parent.mkdir(parents=True, exist_ok=True)
        m.save(path)
    return m


def _first_regions(regions, n: int):
    """The first ``n`` regions (members of the others count as in no region)."""
    keep = slice(0, n)
    assignment = np.where(regions.assignment < n, regions.assignment, -1)
    return dataclasses.replace(regions, means=regions.means[keep],
                               covariances=regions.covariances[keep],
                               weights=regions.weights[keep], component=regions.component[keep],
                               assignment=assignment)


def _rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def gallery_rows(classifier, vae, regions, *, n_regions: int = 20, n_moves: int = 50) -> list:
    """The "all regions" view: τ change latency, and what ``n_moves`` τ changes leave behind."""
    if len(regions) < n_regions:
        raise ValueError(f"need {n_regions} regions; the distillation kept {len(regions)}.")
    regions = _first_regions(regions, n_regions)
    gallery = RegionGallery(regions, vae, classifier, tau=0.5, n_samples=16, mode="all")
    taus = np.geomspace(0.01, 1.0, 21)
    t = timeit(lambda i: setattr(gallery._slider, "value", float(taus[i % len(taus)])),
               repeat=20)
    cpu = time.process_time()
    for i in range(5):
        gallery._slider.value = float(taus[(i + 3) % len(taus)])
    cpu_ms = (time.process_time() - cpu) / 5 * 1000
    rows = [dict(what=f"\"all regions\" τ change, {n_regions} regions",
                 value=f"{t['median_ms']:.0f} ms (p90 {t['p90_ms']:.0f})", target="≤ 300 ms",
                 met=t["median_ms"] <= 300,
                 note=f"median of {t['repeat']} slider moves, {n_regions} × 16 samples, one "
                      f"decode and one classifier pass (precision auto); process CPU time "
                      f"{cpu_ms:.0f} ms per move", raw=dict(t, cpu_ms=cpu_ms))]

    # memory held: traced from here on, so the first n_moves also trace the grids on
    # display (which replace untraced ones); growth is what the next n_moves add
    gc.collect()
    tracemalloc.start()
    widgets0, rss = len(ipywidget._instances), [_rss_mb()]
    held = []
    for _ in range(2):
        for i in range(n_moves):
            gallery._slider.value = float(taus[i % len(taus)])
        gc.collect()
        held.append(tracemalloc.get_traced_memory()[0] / 1024)
        rss.append(_rss_mb())
    tracemalloc.stop()
    widgets = len(ipywidget._instances) - widgets0
    grown_kb = held[1] - held[0]
    rows.append(dict(what=f"memory held after {n_moves} \"all regions\" τ changes",
                     value=f"{widgets:+d} widgets, {grown_kb:+.0f} KB", target="no growth",
                     met=widgets == 0 and grown_kb < 256,
                     note=f"widgets alive after {2 * n_moves} τ changes minus before; Python "
                          f"memory held (tracemalloc) after {2 * n_moves} minus after "
                          f"{n_moves} ({held[0]:.0f} KB after the first {n_moves}, the grids on"
                          f" display); resident memory before, after {n_moves} and "
                          f"{2 * n_moves}: {' / '.join(f'{m:.0f}' for m in rss)} MB",
                     raw=dict(widgets=widgets, traced_kb=held, grown_kb=grown_kb, rss_mb=rss)))
    return rows


def wire_rows() -> list:
    """Bytes a page receives when it opens a resumed dashboard (every stage done).

    The session is ``run_defuse`` with the quick settings (made once, cached).
    The state of every live widget is what the front end gets when it connects;
    plotly.js travels once, in the hidden carrier, instead of once per figure.
    """
    import plotly
    from ipywidgets import Widget

    from defuse_widgets.widgets import DefuseDashboard
    from defuse_widgets.widgets._plotly_shared import SharedFigureWidget, state_bytes
    from defuse_widgets.workflow import DefuseConfig, run_defuse

    session = CACHE / "quick-session"
    if not (session / "correction.json").exists():
        run_defuse(DefuseConfig.quick(), out=session, overwrite=True, progress=False,
                   log=lambda *a, **k: None)
    Widget.close_all()
    dash = DefuseDashboard.embedded(session=session, annotator="bench")
    dash.explorer.wait()
    dash._render()
    figures = [w for w in ipywidget._instances.values() if isinstance(w, SharedFigureWidget)]
    total = state_bytes()
    bundle = (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").stat().st_size
    without = total + (len(figures) - 1) * bundle
    n = len(ipywidget._instances)
    dash.close()
    return [dict(what="bytes sent to open a resumed dashboard",
                 value=f"{total / 1e6:.1f} MB", target="≤ 6 MB (plotly.js once)",
                 met=total <= 6e6,
                 note=f"{n} widgets, {len(figures)} plotly figures; the plotly.js bundle "
                      f"({bundle / 1e6:.1f} MB) is sent once; with plotly's own FigureWidget "
                      f"it would be {without / 1e6:.1f} MB",
                 raw=dict(bytes=total, figures=len(figures), widgets=n, bundle=bundle,
                          per_figure_bundle_bytes=without))]


def _default_regions(classifier, vae, data):
    """Adversarial examples and regions of the quickstart's settings (embedded MNIST)."""
    adv = identify(classifier, vae, data.X_train, data.y_train, Q=20, a=50, b=50,
                   centered=False, seed=0, progress=False)
    return adv, Distiller(n_components=30, eps=0.01, max_samples=3000,
                          seed=0).fit(adv, n_classes=10).regions_


def run(quick: bool = False) -> list:
    torch.manual_seed(0)
    classifier, vae, _ = load_pretrained()
    data = load_mnist5k()
    rows = []

    # --- the embedded default: regions of the quickstart's settings
    adv, regions = _default_regions(classifier, vae, data)
    gallery = RegionGallery(regions, vae, classifier, tau=0.5, n_samples=64)
    taus = np.geomspace(0.01, 1.0, 21)
    t = timeit(lambda i: setattr(gallery._slider, "value", float(taus[i % len(taus)])),
               repeat=20)
    rows.append(dict(what="τ slider → new 64-image gallery", value=f"{t['median_ms']:.0f} ms "
                     f"(p90 {t['p90_ms']:.0f})", target="≤ 200 ms", met=t["p90_ms"] <= 200,
                     note=f"median of {t['repeat']} slider moves, region 0, 32×32 decodes",
                     raw=t))

    rows += gallery_rows(classifier, vae, regions)
    rows += wire_rows()

    train_codes = encode_mean(vae, data.X_train).numpy()
    explorer = LatentExplorer(train_codes, data.y_train, adv, vae=vae, classifier=classifier,
                              regions=regions, background=False,
                              latent_map=_cached_map(train_codes, adv.codes,
                                                     CACHE / "map-mnist5k.npz"))
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
    latent_map = _cached_map(codes60, adv10.codes, CACHE / "map-60k.npz", seed=0, n_jobs=-1)
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


def main(argv=None) -> int:
    """``--gallery``: run only the gallery rows and merge them into the results file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.widget_latency")
    parser.add_argument("--gallery", action="store_true", required=True,
                        help="only the 'all regions' rows (and the bytes a resumed dashboard "
                             "sends), merged into the widgets section")
    parser.parse_args(argv)
    torch.manual_seed(0)
    classifier, vae, _ = load_pretrained()
    cached = CACHE / "regions-default.npz"   # the default regions, kept for reruns
    if cached.exists():
        regions = Regions.from_npz(np.load(cached))
    else:
        _, regions = _default_regions(classifier, vae, load_mnist5k())
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **regions.to_npz())
    new = gallery_rows(classifier, vae, regions) + wire_rows()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    for r in new:   # the section keeps its own date; these rows say theirs
        r["note"] += (f"; measured {stamp} (--gallery), load average "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    path = RESULTS / f"{machine_tag(machine())}.json"
    doc = json.loads(path.read_text())
    section = doc["sections"].setdefault("widgets", {"measured": stamp, "rows": []})
    kept = [r for r in section["rows"] if r["what"] not in {r["what"] for r in new}]
    first = next((i for i, r in enumerate(kept) if r["what"].startswith("point click")),
                 len(kept))
    section["rows"] = kept[:first] + new + kept[first:]
    path.write_text(json.dumps(doc, indent=1, default=float))
    path.with_suffix(".md").write_text(markdown(doc))
    for r in new:
        print(f"  {r['what']}: {r['value']}  {r.get('target', '')}  {r.get('note', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
