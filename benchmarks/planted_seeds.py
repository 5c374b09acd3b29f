"""Planted bugs over seeds, run exactly as a user runs Defuse, next to the peer methods.

For each seed: plant the three default bugs in MNIST-5k (see
:mod:`benchmarks.planted_bugs`), train (or load from the cache) the
classifier, β-VAE and the simulated annotator's oracle on the planted
training split, then call :func:`defuse_widgets.workflow.run_defuse`, the
function ``defuse-widgets run`` calls, with the **default settings** plus
``--label-review N``. The only addition is measurement: every correction arm
is also evaluated on each bug's held-out real images (``extra_eval_sets``;
the selection rule never sees them). Then, on the same planted data:

* bugs found through accepted or label-error regions (purity ≥ 0.5, as in
  :mod:`~benchmarks.harness.planted_scores`);
* the held-out real-image gain and test change of each correction arm;
* the peers of :func:`~benchmarks.harness.peers.compare_peers`:
  Domino-style slice discovery and k-means on errors (precision@10 of the
  best slice on held-out real images, 5 slices and as many slices as Defuse
  has candidate regions), cleanlab's ``find_label_issues`` against label
  review (precision and recall of the planted mislabelled images).

Run ``python -m benchmarks.planted_seeds --seed N [--label-review N]`` once per
seed (each about 15 minutes here, models cached under
``benchmarks/results/.cache/planted/``), then ``--table`` to write
``benchmarks/results/planted-seeds.md`` (per-seed table, mean ± sd) from the
per-seed JSON files in ``benchmarks/results/planted-seeds/``.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness.peers import compare_peers
from benchmarks.harness.planted import plant_bugs
from benchmarks.harness.planted_eval import label_review_scores
from benchmarks.harness.planted_scores import bug_purity, bug_recall
from benchmarks.planted_bugs import train_models
from defuse_widgets.data import load_mnist5k
from defuse_widgets.models.inference import encode_mean
from defuse_widgets.models.pretrained import DEFAULT_SETTINGS, load_pretrained
from defuse_widgets.stages.annotators import SimulatedAnnotator
from defuse_widgets.stages.label_review import label_error_regions
from defuse_widgets.workflow import DefuseConfig, Session, run_defuse

OUT = Path(__file__).parent / "results" / "planted-seeds"
ARMS = ("defuse", "review", "baseline")


def planted_for(seed: int):
    """The planted data of ``seed``, as :func:`benchmarks.planted_bugs.measure` builds it."""
    torch.manual_seed(seed)
    data = load_mnist5k(seed=seed)
    _, shipped_vae, _ = load_pretrained()
    features = encode_mean(shipped_vae, torch.cat([data.X_train, data.X_val, data.X_test]))
    return plant_bugs(data, features=features.numpy(), seed=seed)


def measure(seed: int, label_review: int = 50, quick: bool = False, log=print) -> dict:
    """One seed: the default workflow with label review, scored on the planted bugs.

    ``quick`` takes ``DefuseConfig.quick()`` instead of the defaults (a smoke run).
    """
    t0 = time.perf_counter()
    planted = planted_for(seed)
    clf, vae, sim, _, times = train_models(planted, vae_epochs=DEFAULT_SETTINGS["vae"]["epochs"],
                                           oracle_epochs=8, n_ensemble=0, seed=seed, log=log)
    config = (DefuseConfig.quick if quick else DefuseConfig)(seed=seed, label_review=label_review)
    bug_sets = {f"bug{i}": planted.held_out(i) for i in range(len(planted.bugs))}
    annotator = SimulatedAnnotator(sim, n_workers=config.n_workers, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "session"
        t = time.perf_counter()
        res = run_defuse(config, out=out, classifier=clf, vae=vae, data=planted.splits,
                         annotator=annotator, extra_eval_sets=bug_sets, progress=False, log=log)
        run_seconds = time.perf_counter() - t
        session = Session(out, classifier=clf, vae=vae, data=planted.splits,
                          annotator=annotator)
        try:
            doc = _score(session, planted, res, log)
        finally:
            session.close()
    doc.update(seed=seed, label_review=label_review, config=config.to_dict(),
               train_seconds=times, run_seconds=round(run_seconds, 1),
               seconds=round(time.perf_counter() - t0, 1))
    return doc


def _score(session, planted, res, log) -> dict:
    adv, regions, decisions = (session.load_adversarial(), session.load_regions(),
                               session.load_decisions())
    accepted = np.array([d.is_misclassification_region for d in decisions])
    label_err = label_error_regions(regions, decisions, rho=session.config.rho)
    purity = bug_purity(regions.assignment, adv.source_index, planted.bugs, len(regions))
    doc = dict(bugs=[b.name for b in planted.bugs],
               regions=dict(n_candidates=len(regions), n_accepted=int(accepted.sum()),
                            n_label_error=int(label_err.sum())),
               recall=bug_recall(purity, accepted),
               recall_with_label_errors=bug_recall(purity, accepted | label_err),
               recall_candidates=bug_recall(purity, None),
               corrected_model=res.get("corrected_model"), arms={})
    keys = ["validation", "test", "region_test"] + [f"bug{i}" for i in range(len(planted.bugs))]
    correction = session.load_correction() or {}
    for name in ARMS:
        arm = correction.get(name)
        if arm is None or arm["best"] is None:
            continue
        before, best = arm["before"], arm["best"]
        bugs_before = float(np.mean([before[k] for k in keys[3:]]))
        bugs_after = float(np.mean([best[k] for k in keys[3:]]))
        doc["arms"][name] = dict(lam=best["lam"], corrected=arm.get("corrected"),
                                 before={k: before[k] for k in keys},
                                 after={k: best[k] for k in keys},
                                 bugs_gain=bugs_after - bugs_before,
                                 test_change=best["test"] - before["test"],
                                 tradeoff=[{k: r[k] for k in (*keys, "lam", "region_validation",
                                                              "validation_change_low",
                                                              "validation_change_high")}
                                           for r in arm["results"]])
    review_stats = label_review_scores(session, planted)
    t = time.perf_counter()
    from defuse_widgets.evaluation.label_issues import out_of_fold_probs
    s = planted.splits
    oof = out_of_fold_probs(s.X_train, s.y_train, n_folds=3, epochs=3, seed=session.config.seed)
    oof_seconds = time.perf_counter() - t
    doc["peers"] = {}
    for n_slices in sorted({5, len(regions)}):
        doc["peers"][str(n_slices)] = compare_peers(
            planted, session.classifier, session.vae, regions, accepted, n_slices=n_slices,
            n_components=max(25, n_slices),
            oof_probs=oof, label_review=review_stats, seed=session.config.seed, log=log)
    doc["peers_oof_seconds"] = round(oof_seconds, 1)
    log(f"[seed] found {sum(doc['recall_with_label_errors']['found'])}/3 with label-error "
        f"regions; arms " + "; ".join(f"{n}: bugs {a['bugs_gain']:+.3f}, test "
                                      f"{a['test_change']:+.3f}, λ {a['lam']:g}"
                                      for n, a in doc["arms"].items()))
    return doc


def _mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.3f} ± {sd:.3f}"


def _bug_label(name: str) -> str:
    """``"mislabelled-2/s2->8"`` → ``"2 → 8"`` (the sub-style differs per seed)."""
    kind, _, rest = name.partition("/")
    return f"{kind.rpartition('-')[2]} → {rest.rpartition('->')[2]}" if rest else name


def table(docs: dict) -> list[str]:
    """Markdown: per-seed rows and mean ± sd, then the peers per bug."""
    seeds = sorted(docs)
    md = ["| seed | found (accepted / + label-error) | Defuse: λ, bugs gain, test | "
          "+ label review: λ, bugs gain, test | baseline: bugs gain, test | "
          "label review precision / recall | cleanlab precision / recall |",
          "|---|---|---|---|---|---|---|"]
    for s in seeds:
        d = docs[s]
        a = d["arms"]

        def cell(n, a=a):
            return (f"{a[n]['lam']:g}, {a[n]['bugs_gain']:+.3f}, {a[n]['test_change']:+.3f}"
                    + ("" if a[n].get("corrected") is not False else " (not corrected)")
                    if n in a else "–")

        p5 = d["peers"]["5"]["label_issues"]
        lr, cl = p5.get("label_review", {}), p5["cleanlab"]
        md.append(f"| {s} | {sum(d['recall']['found'])}/3 / "
                  f"{sum(d['recall_with_label_errors']['found'])}/3 | {cell('defuse')} | "
                  f"{cell('review')} | "
                  + (f"{a['baseline']['bugs_gain']:+.3f}, {a['baseline']['test_change']:+.3f}"
                     if "baseline" in a else "–")
                  + f" | {lr.get('precision', 0):.2f} / {lr.get('recall', 0):.2f} | "
                  f"{cl['precision']:.2f} / {cl['recall']:.2f} |")
    arm = lambda n, key: _mean_sd([docs[s]["arms"].get(n, {}).get(key) for s in seeds])  # noqa: E731
    found = [sum(docs[s]["recall_with_label_errors"]["found"]) for s in seeds]
    md.append(f"| mean ± sd ({len(seeds)} seeds) | ≥ 2/3 on {sum(f >= 2 for f in found)} of "
              f"{len(seeds)} | " + " | ".join(f"bugs {arm(n, 'bugs_gain')}, test "
                                              f"{arm(n, 'test_change')}" for n in ARMS)
              + " | | |")
    md += ["", "Precision@10 of the best-matching slice or region per bug, on held-out real "
           "images (recovered: ≥ 0.5), mean over seeds; in brackets the share of the bug's "
           "images among its class's pool images (what a slice that only knows the class "
           "gets):", "",
           "| method | slices | " + " | ".join(_bug_label(b) for b in docs[seeds[0]]["bugs"])
           + " | recovered |", "|---|---|" + "---|" * len(docs[seeds[0]]["bugs"]) + "---|"]
    methods = {}
    for s in seeds:
        for key, peers in docs[s]["peers"].items():
            size = "5" if key == "5" else "as many as Defuse's candidates"
            for m, r in peers["slices"].items():
                if m.startswith("defuse") and key != "5":
                    continue
                name = m if m.startswith("defuse") else (m, size)
                methods.setdefault(name, []).append(r)
    share = np.mean([docs[s]["peers"]["5"]["pool"]["class_share"] for s in seeds], axis=0)
    for name, rs in methods.items():
        label, size = (name, "Defuse's") if isinstance(name, str) else name
        prec = np.mean([r["precision"] for r in rs], axis=0)
        rec = np.mean([r["recovered_fraction"] for r in rs])
        md.append(f"| {label} | {size} | " + " | ".join(f"{p:.2f} ({c:.2f})"
                                                     for p, c in zip(prec, share))
                  + f" | {rec:.2f} |")
    return md


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return
    if "--table" in argv:
        docs = {int(p.stem[4:]): json.loads(p.read_text()) for p in sorted(OUT.glob("seed*.json"))}
        md = table(docs)
        (OUT.parent / "planted-seeds.md").write_text("\n".join(md) + "\n")
        print("\n".join(md))
        return
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
    n = int(argv[argv.index("--label-review") + 1]) if "--label-review" in argv else 50
    quick = "--quick" in argv
    doc = measure(seed, label_review=n, quick=quick)
    out = OUT / f"{'quick-' if quick else ''}seed{seed}.json"
    OUT.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=float))
    print(f"written to {out} ({doc['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
