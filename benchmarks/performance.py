"""Performance issue: the default run against today's fp32 full sweep, side by side.

Everything here is measured in one invocation on an otherwise idle machine:

1. ``defuse-widgets run`` with the defaults (bf16 where the CPU runs it
   natively, successive halving) and with ``--precision fp32 --schedule
   full`` (the sweep as it was), each in its own process: wall time, peak
   memory, the Figure-4 numbers and the selected λ.
2. The λ choice of every schedule × precision on the fp32 run's data: full
   sweeps in fp32 and bf16, and successive halving replayed on their
   per-epoch records (a λ's records do not depend on the schedule: each λ has
   its own random streams, see ``tests/stages/test_correction_sweep.py``).
3. One λ-epoch, evaluation included: today's path (fp32, evaluation batches
   of 1,024) against the new one (bf16 training, channels-last, fp32
   evaluation in batches of 256).
4. Identification: the decoder + classifier ceiling in fp32 and bf16 over
   three alternating runs, and how often the misclassified/not decision of
   the same decode agrees.

Usage::

    .venv/bin/python -m benchmarks.run --only performance            # about 45 min
    .venv/bin/python -m benchmarks.run --only performance --quick    # CI-sized runs
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ._common import peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
FIG4 = ("validation", "test", "region_test")


def one_run(out: str, flags: list) -> dict:
    """Run ``defuse-widgets run`` in this process; return time, peak memory and results."""
    from defuse_widgets.cli import main

    t = time.perf_counter()
    code = main(["run", "--no-progress", "--out", out, *flags])
    elapsed = time.perf_counter() - t
    peak = peak_rss_mb()
    return {"code": code, "seconds": elapsed, "peak_mb": peak}


def _subprocess_run(out: Path, flags: list) -> dict:
    """One run in a fresh process; a run that finished before (``<out>.json``) is reused."""
    done = out.with_suffix(".json")
    if done.exists():
        info = json.loads(done.read_text())
    else:
        cmd = [sys.executable, "-m", "benchmarks.performance", "--one-run", str(out), *flags]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        done.write_text(json.dumps(info))
    info["results"] = json.loads((out / "results.json").read_text())
    info["correction"] = json.loads((out / "correction.json").read_text())
    return info


def _fig4(res: dict, arm: str = "defuse") -> dict:
    rec = res["correction"][arm]
    best = rec["results"][rec["best_index"]]
    return {k: best[k] for k in FIG4} | {"lam": best["lam"], "epoch": best["epoch"]}


def halving_choice(record: dict, selection: str, tolerance: float) -> float:
    """The λ successive halving selects, replayed on a full sweep's per-epoch records."""
    from defuse_widgets.stages.correction import Corrector
    from defuse_widgets.stages.correction.sweep import best_score, prune

    c = Corrector(selection=selection, tolerance=tolerance)
    c.before_ = record["before"]
    lams = record["params"]["lams"]
    epochs = record["params"]["epochs"]
    hist = record["history"]
    cands = list(range(len(lams)))
    trained = {i: 1 for i in cands}
    for epoch in range(1, epochs):
        scores = {i: best_score([r for r in hist if r["lam"] == lams[i]], epoch) for i in cands}
        cands = prune(cands, scores, lams)
        for i in cands:
            trained[i] = epoch + 1
    finals = [max((r for r in hist if r["lam"] == lams[i] and r["epoch"] <= trained[i]),
                  key=c._rank) for i in range(len(lams))]
    i_best = max(range(len(lams)), key=lambda i: (*c._rank(finals[i]), -lams[i]))
    return lams[i_best]


def _lam_epoch(session_dir: Path, quick: bool) -> list:
    from defuse_widgets.stages.correction import Corrector
    from defuse_widgets.workflow.session import Session

    session = Session(session_dir)
    sets = session.failure_data()
    data = session.data
    lams, epochs = (0.01, 0.1), (1 if quick else 3)
    variants = {"today (fp32, eval batches of 1,024)": dict(precision="fp32", eval_batch_size=1024),
                "fp32, eval batches of 256": dict(precision="fp32"),
                "bf16 + channels-last training and evaluation (close calls re-made in fp32), "
                "eval batches of 256": dict(precision="bf16", channels_last=True)}
    times, rows = {}, []
    for name, kw in variants.items():
        c = Corrector(lams=lams, epochs=epochs, device="cpu", **kw)
        t = time.perf_counter()
        c.fit(session.classifier, data.X_train, data.y_train, sets["X_f"], sets["y_f"],
              eval_sets=sets["eval_sets"])
        times[name] = (time.perf_counter() - t) / (len(lams) * epochs)
        if kw["precision"] == "bf16":
            rows.append(_eval_check(c, sets["eval_sets"]))
        rows.append({"what": f"one λ-epoch, evaluation included: {name}",
                     "value": f"{times[name]:.2f} s", "seconds": times[name],
                     "note": f"{len(lams)} λ × {epochs} epochs; D {len(data.y_train)}, D_f "
                             f"{len(sets['y_f'])}, eval sets "
                             + ", ".join(f"{k} {len(v[1])}" for k, v in sets["eval_sets"].items())
                             + f"; selected λ {c.best_['lam']:g}"})
    session.close()
    first, last = list(times.values())[0], list(times.values())[-1]
    rows.append({"what": "one λ-epoch: today / new", "value": f"{first / last:.2f}×",
                 "target": "≥ 2.5×", "met": first / last >= 2.5, "ratio": first / last})
    return rows


def _eval_check(corrector, eval_sets: dict) -> dict:
    """Every accuracy a bf16 sweep reported, against an fp32 evaluation of the same weights."""
    from defuse_widgets.models.inference import accuracy

    n = same = 0
    worst = 0.0
    for res, state in zip(corrector.results_, corrector._best_states):
        model = copy.deepcopy(corrector.best_model_)
        model.load_state_dict(state)
        for k, (X, y) in eval_sets.items():
            ref = accuracy(model.eval(), X, y, batch_size=256)
            n, same = n + 1, same + (ref == res[k])
            worst = max(worst, abs(ref - res[k]))
    return {"what": "bf16 sweep's reported accuracies equal to an fp32 evaluation of the "
                    "same weights", "value": f"{same} of {n}", "target": "all",
            "met": same == n, "note": f"largest difference {100 * worst:.2f} points"}


def _identification(quick: bool) -> list:
    from defuse_widgets.data import load_dataset
    from defuse_widgets.models.inference import encode_mean
    from defuse_widgets.models.precision import autocast, guarded_argmax
    from defuse_widgets.models.pretrained import load_pretrained

    clf, vae = load_pretrained()[:2]
    clf.eval(), vae.eval()
    data = load_dataset("mnist5k")
    n_img, Q = (500, 10) if quick else (3500, 10)
    X, y = data.X_train[:n_img], data.y_train[:n_img]
    mu = encode_mean(vae, X)
    rng = np.random.default_rng(0)
    eps = torch.from_numpy(rng.beta(50, 50, size=(n_img, Q, mu.shape[1])) - 0.5).float()
    z = (mu[:, None] + eps).reshape(-1, mu.shape[1])

    fmt = {"fp32": torch.contiguous_format, "bf16": torch.channels_last}
    models = {p: (copy.deepcopy(clf).to(memory_format=f), copy.deepcopy(vae).to(memory_format=f))
              for p, f in fmt.items()}

    def forward(precision):
        c, v = models[precision]

        def f(zb):
            with autocast(precision, "cpu"):
                return c(v.decode(zb).contiguous(memory_format=fmt[precision]))
        return f

    def decide(mode):
        """Decisions, decodes re-made in fp32, and the best throughput over batch sizes 64
        and 256, as identify runs them (fp32: today's path; bf16: autocast on channels-last
        copies; guarded: bf16 with the close calls decoded and classified again in fp32).
        """
        best, n_re = 0.0, 0
        for bs in (64, 256):
            t = time.perf_counter()
            with torch.inference_mode():
                if mode == "guarded":
                    pred, n_re = guarded_argmax(forward("bf16"), forward("fp32"), z,
                                                batch_size=bs)
                else:
                    f = forward(mode)
                    pred = torch.cat([f(z[i:i + bs]).argmax(1) for i in range(0, len(z), bs)])
            best = max(best, len(z) / (time.perf_counter() - t))
        return (pred.view(n_img, Q) != y[:, None]), best, n_re

    modes = ("fp32", "bf16", "guarded")
    for m in modes:
        decide(m)   # warm-up
    speeds, agree, n_re = {m: [] for m in modes}, {m: [] for m in modes[1:]}, 0
    for _ in range(3):
        out = {m: decide(m) for m in modes}
        for m in modes:
            speeds[m].append(out[m][1])
        for m in modes[1:]:
            agree[m].append(float((out[m][0] == out["fp32"][0]).float().mean()))
        n_re = out["guarded"][2]
    ratio = {m: np.array(speeds[m]) / np.array(speeds["fp32"]) for m in modes[1:]}
    runs = lambda m: "3 runs: " + ", ".join(f"{v:,.0f}" for v in speeds[m])  # noqa: E731
    rows = [{"what": "identification ceiling fp32 (decoder + classifier, best of batches 64, "
                     "256)", "value": f"{np.mean(speeds['fp32']):,.0f} decodes/s",
             "note": runs("fp32")},
            {"what": "identification ceiling bf16 autocast, no re-check",
             "value": f"{np.mean(speeds['bf16']):,.0f} decodes/s ({ratio['bf16'].mean():.2f}×)",
             "note": runs("bf16") + f"; decisions equal to fp32's: "
                                    f"{100 * min(agree['bf16']):.2f} %"},
            {"what": "identification bf16 with close calls re-made in fp32 (the default)",
             "value": f"{np.mean(speeds['guarded']):,.0f} decodes/s",
             "note": runs("guarded") + f"; {n_re:,} of {len(z):,} decodes "
                                       f"({100 * n_re / len(z):.2f} %) re-made in fp32"},
            {"what": "identification bf16 (with re-check) / fp32",
             "value": f"{ratio['guarded'].mean():.2f}× (min {ratio['guarded'].min():.2f}, "
                      f"max {ratio['guarded'].max():.2f})", "target": "≥ 1.7×",
             "met": bool(ratio["guarded"].mean() >= 1.7),
             "ratios": [float(r) for r in ratio["guarded"]]},
            {"what": "misclassified/not decisions equal in bf16 (with re-check) and fp32",
             "value": f"{100 * min(agree['guarded']):.3f} %", "target": "≥ 99.5 %",
             "met": bool(min(agree["guarded"]) >= 0.995),
             "note": f"{len(z):,} decodes ({n_img} images × Q={Q}, centred Beta(50, 50) "
                     f"noise), the same in every run"}]
    return rows


def run(quick: bool = False) -> list:
    from defuse_widgets.stages.correction.arms import run_arms
    from defuse_widgets.workflow.session import Session

    rows = _identification(quick)
    # a fixed work folder, so a benchmark that failed after a run reuses it
    tmp = Path(tempfile.gettempdir()) / f"defuse-perf{'-quick' if quick else ''}"
    tmp.mkdir(exist_ok=True)
    base = ["--quick"] if quick else []
    new = _subprocess_run(tmp / "new", base)
    old = _subprocess_run(tmp / "fp32_full", [*base, "--precision", "fp32", "--schedule", "full"])
    for name, info in (("new defaults (auto → bf16, halving)", new),
                       ("fp32, full sweep (as before)", old)):
        fig = _fig4(info)
        rows.append({"what": f"`defuse-widgets run{' --quick' if quick else ''}`: {name}",
                     "value": f"{info['seconds']:.0f} s", "seconds": info["seconds"],
                     "target": "≤ 480 s" if info is new and not quick else "",
                     "met": (info["seconds"] <= 480) if info is new and not quick else None,
                     "peak_mb": info["peak_mb"], "figure4": fig,
                     "timings": info["results"].get("timings"),
                     "note": f"peak {info['peak_mb']:.0f} MB; selected λ {fig['lam']:g}; "
                             + ", ".join(f"{k} {100 * fig[k]:.1f}" for k in FIG4)})
    diff = max(abs(_fig4(new)[k] - _fig4(old)[k]) * 100 for k in FIG4)
    rows.append({"what": "Figure-4 numbers, new defaults vs fp32 full sweep (largest gap)",
                 "value": f"{diff:.1f} points", "target": "≤ 1 point", "met": diff <= 1.0})
    rows.append({"what": "peak memory, new defaults vs fp32 full sweep",
                 "value": f"{new['peak_mb']:.0f} MB vs {old['peak_mb']:.0f} MB",
                 "note": "VmHWM of each run's own process (not ru_maxrss, which counts the parent)",
                 "met": new["peak_mb"] <= old["peak_mb"] * 1.02})

    # λ choice per schedule and precision, on the fp32 run's data (cached in the work folder)
    bf16_path = tmp / "bf16_full.json"
    if bf16_path.exists():
        bf16_rec = json.loads(bf16_path.read_text())
    else:
        session = Session(tmp / "fp32_full")
        sets = session.failure_data()
        c = session.config
        arms = {"defuse": (sets["X_f"], sets["y_f"])}
        t = time.perf_counter()
        bf16 = run_arms(session.classifier, session.data.X_train, session.data.y_train, arms,
                        eval_sets=sets["eval_sets"], lams=c.lams, epochs=c.epochs,
                        batch_size=c.batch_size, selection=c.selection, tolerance=c.tolerance,
                        seed=c.seed, device="cpu", schedule="full", precision="bf16")["defuse"]
        session.close()
        bf16_rec = {"before": bf16.before_, "params": bf16.sweep_params(),
                    "history": list(bf16.history_), "best": bf16.best_,
                    "seconds": time.perf_counter() - t}
        bf16_path.write_text(json.dumps(bf16_rec, default=float))
    fp32_rec = old["correction"]["defuse"]
    params = fp32_rec["params"]
    choice = {"fp32 full": fp32_rec["results"][fp32_rec["best_index"]]["lam"],
              "fp32 halving (replayed)": halving_choice(fp32_rec, params["selection"],
                                                        params["tolerance"]),
              "bf16 full": bf16_rec["best"]["lam"],
              "bf16 halving (replayed)": halving_choice(bf16_rec, params["selection"],
                                                        params["tolerance"])}
    same = len(set(choice.values())) == 1
    rows.append({"what": "selected λ by schedule and precision (Defuse arm, fp32 run's data)",
                 "value": "; ".join(f"{k}: {v:g}" for k, v in choice.items()),
                 "target": "the same λ", "met": same, "choice": choice})
    fp32_best = fp32_rec["results"][fp32_rec["best_index"]]
    gap = max(abs(bf16_rec["best"][k] - fp32_best[k]) * 100 for k in FIG4)
    rows.append({"what": "Figure-4 numbers, bf16 vs fp32 training (full sweep, same data)",
                 "value": f"{gap:.1f} points", "target": "≤ 0.5 point", "met": gap <= 0.5,
                 "note": "bf16 " + ", ".join(f"{k} {100 * bf16_rec['best'][k]:.1f}" for k in FIG4)
                         + "; fp32 " + ", ".join(f"{k} {100 * fp32_best[k]:.1f}" for k in FIG4)
                         + f"; the bf16 full sweep of the Defuse arm took "
                           f"{bf16_rec['seconds']:.0f} s"})
    lam_path = tmp / "lam_epoch.json"
    if not lam_path.exists():
        lam_path.write_text(json.dumps(_lam_epoch(tmp / "fp32_full", quick), default=float))
    rows += json.loads(lam_path.read_text())
    (Path(__file__).parent / "results" / "performance-detail.json").write_text(json.dumps(
        {"new": {k: new[k] for k in ("seconds", "peak_mb")} | {"figure4": _fig4(new)},
         "fp32_full": {k: old[k] for k in ("seconds", "peak_mb")} | {"figure4": _fig4(old)},
         "bf16_full_defuse": bf16_rec,
         "fp32_full_defuse": fp32_rec, "choice": choice}, indent=1, default=float))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one-run":
        print(json.dumps(one_run(sys.argv[2], sys.argv[3:])))
    else:
        print(__doc__)
