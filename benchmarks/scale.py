"""Scale to the paper's size (issue 25 §7): the whole workflow at 5k, 20k and 60k training images.

MNIST-5k's training split grows by shifted copies (±2 px, zero fill,
:func:`~defuse_widgets.data.synthetic.augmented_splits`) to N training images
(the paper's MNIST has 60,000); the validation and test splits grow by the
same factor N / 3,500, as a user's would. Two versions:

* ``grey``: 1×32×32 digits with the shipped classifier, β-VAE and oracle.
* ``colour``: 3×32×32 digits on random background colours
  (:func:`~defuse_widgets.data.synthetic.coloured_digits`), with an RGB
  classifier, β-VAE and oracle trained once here with the package's recipes
  (a few minutes; cached in ``results/.cache/`` keyed by their settings) and
  their fidelity recorded.

Each (version, N) runs in its own process, as a user would: a
:class:`~defuse_widgets.workflow.Session` with ``DefuseConfig(Q=100,
lams=(0.01, 0.1, 1.0))`` and the defaults otherwise, then ``identify``,
``distill``, ``label_simulated`` and ``correct``, each timed, and the
process's peak memory (VmHWM). Correction is timed in parts: the failure data
(D_f, the region sets and the baseline set, labelled one by one), and per arm
the set-up (checks, fingerprint, the model before), the training steps and
the evaluations.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.run --only scale            # both versions, 5k 20k 60k
    .venv/bin/python -m benchmarks.run --only scale --quick    # 1k and 2k, Q=10
    .venv/bin/python -m benchmarks.scale --versions grey --sizes 5000 60000   # a part
    .venv/bin/python -m benchmarks.scale --one grey 60000 --out json          # one run

A finished run's record is kept in ``results/.cache/scale/`` under a key of
its settings and the package's code, so an interrupted benchmark resumes;
``--fresh`` runs everything again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from defuse_widgets.callbacks import Callback

from ._common import RESULTS, peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
CACHE = RESULTS / ".cache"
SIZES, QUICK_SIZES = (5_000, 20_000, 60_000), (1_000, 2_000)
VERSIONS = ("grey", "colour")
#: Targets: time per training image at the largest size within 1.15× of the
#: smallest's, and at most 3 GB resident at 60k.
RATIO_TARGET, PEAK_TARGET_MB, PEAK_TARGET_N = 1.15, 3072, 60_000
#: The colour version's models: the package's recipes. The β-VAE has the grey family's
#: architecture with 3 channels, so a decode costs about as much as a grey one; it
#: trains with β=0.1, batches of 32 and no augmentation, because with the grey settings
#: its reconstructions kept the background colour and lost the digit.
COLOUR_SETTINGS = {
    "seed": 0,
    "classifier": dict(epochs=5, batch_size=64, lr=1.0, optimizer="adadelta"),
    "vae": dict(family="mnist", beta=0.1, anneal_steps=1000, epochs=150, batch_size=32,
                lr=1e-3, augment=False),
    "oracle": dict(epochs=15, batch_size=64, lr=1e-3, optimizer="adam", augment=True,
                   seed_offset=1000),
}
QUICK_COLOUR = {"vae": dict(epochs=5), "oracle": dict(epochs=2), "classifier": dict(epochs=2)}
#: How the colour version's images are stored: uint8 (0–255), a quarter of float32's
#: memory; the stages make them float batch by batch.
COLOUR_DTYPE = torch.uint8
STAGES = ("identification", "distillation", "labeling", "correction")


def config(quick: bool):
    """The run's settings: Q=100 (10 when quick), three λs, the defaults otherwise."""
    from defuse_widgets.workflow.config import DefuseConfig

    return DefuseConfig(Q=10 if quick else 100, lams=(0.01, 0.1, 1.0))


# ---------------------------------------------------------------------- models and data
def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def colour_settings(quick: bool) -> dict:
    s = json.loads(json.dumps(COLOUR_SETTINGS))
    for k, v in (QUICK_COLOUR if quick else {}).items():
        s[k].update(v)
    return s


def colour_models(quick: bool = False, *, log=print) -> tuple:
    """The colour version's classifier, β-VAE and oracle, trained once and cached.

    Returns
    -------
    (classifier, vae, oracle, report)
        ``report`` holds the settings, the training time and the fidelity:
        classifier accuracy on the (unshifted) coloured test images and on
        their VAE reconstructions, and the oracle's test accuracy.
    """
    from defuse_widgets.data import load_mnist5k
    from defuse_widgets.data.synthetic import coloured_digits
    from defuse_widgets.models import BetaVAE, MnistCNN, OracleCNN
    from defuse_widgets.models.inference import accuracy
    from defuse_widgets.models.training import reconstruction_fidelity, train_classifier, train_vae
    from defuse_widgets.storage.persistence import load_state_dict, save_state_dict

    s = colour_settings(quick)
    v, c, o, seed = s["vae"], s["classifier"], s["oracle"], s["seed"]

    def build():
        return (MnistCNN(3, 32, 10), BetaVAE.from_family(v["family"], in_channels=3),
                OracleCNN(3, 10))

    folder = CACHE / f"colour-models-{_key(s)}"
    if (folder / "report.json").exists():
        models = build()
        for name, m in zip(("classifier", "vae", "oracle"), models):
            m.load_state_dict(load_state_dict(folder / f"{name}.pt"))
            m.eval()
        return (*models, {**json.loads((folder / "report.json").read_text()), "cached": True})
    data = coloured_digits(load_mnist5k(), seed=seed)
    clf, vae, oracle = build()
    t = time.perf_counter()
    train_classifier(clf, data.X_train, data.y_train, seed=seed, progress=False, **c)
    log(f"  colour classifier trained ({time.perf_counter() - t:.0f} s)")
    train_classifier(oracle, data.X_train, data.y_train, seed=seed + o["seed_offset"],
                     progress=False, **{k: o[k] for k in o if k != "seed_offset"})
    log(f"  colour oracle trained ({time.perf_counter() - t:.0f} s)")
    train_vae(vae, data.X_train, seed=seed, progress=False,
              **{k: v[k] for k in v if k != "family"})
    seconds = time.perf_counter() - t
    log(f"  colour β-VAE trained ({seconds:.0f} s)")
    report = {"settings": s, "train_seconds": seconds, "torch": torch.__version__,
              "fidelity": reconstruction_fidelity(clf, vae, data.X_test, data.y_test,
                                                  device="cpu"),
              "oracle_accuracy": accuracy(oracle, data.X_test, data.y_test)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, m in (("classifier", clf), ("vae", vae), ("oracle", oracle)):
        save_state_dict(folder / f"{name}.pt", m.state_dict())
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    return clf.eval(), vae.eval(), oracle.eval(), {**report, "cached": False}


def build_data(version: str, n: int, *, seed: int = 0):
    """MNIST-5k grown to ``n`` training images (validation and test in proportion)."""
    from defuse_widgets.data import load_mnist5k
    from defuse_widgets.data.synthetic import augmented_splits, coloured_digits

    data = augmented_splits(load_mnist5k(seed=seed), n, seed=seed)
    if version == "colour":
        data = coloured_digits(data, seed=seed, dtype=COLOUR_DTYPE)
    return data



# ------------------------------------------------------------------------- one run
class SweepClock(Callback):
    """Split each correction arm's sweep into set-up, training steps and evaluations.

    Its :meth:`start` is ``run_arms``' ``on_start`` (called before ``fit``'s
    checks), so set-up is the checks, the checkpoint fingerprint and the
    evaluation of the model before; evaluation is everything between an
    epoch's last step and the next λ's first (the epoch's evaluation, and
    for a finished λ its evaluation on every set and its checkpoint).
    """

    def __init__(self):
        self.arms = {}

    def start(self, name, corrector):
        self.arms[name] = self._arm = {"setup": 0.0, "training": 0.0, "evaluation": 0.0,
                                       "total": 0.0, "batches": 0, "lam_epochs": 0}
        self._t0 = self._t = time.perf_counter()

    def _lap(self, part):
        now = time.perf_counter()
        self._arm[part] += now - self._t
        self._t = now

    def on_train_begin(self, corrector, **kw):
        self._lap("setup")

    def on_lam_begin(self, corrector, **kw):
        self._lap("evaluation")

    def on_batch_end(self, corrector, **kw):
        self._lap("training")
        self._arm["batches"] += 1

    def on_epoch_end(self, corrector, **kw):
        self._lap("evaluation")
        self._arm["lam_epochs"] += 1

    def on_train_end(self, corrector, **kw):
        self._lap("evaluation")
        self._arm["total"] = time.perf_counter() - self._t0


def one(version: str, n: int, quick: bool = False, *, log=print) -> dict:
    """Run the workflow once in this process; return times, counts and the peak memory."""
    from defuse_widgets.models.pretrained import load_pretrained
    from defuse_widgets.workflow.session import Session

    torch.manual_seed(0)
    t0 = time.perf_counter()
    if version == "grey":
        clf, vae, oracle = load_pretrained("mnist5k")
    else:
        clf, vae, oracle, _ = colour_models(quick, log=log)
    data = build_data(version, n)
    rec = {"version": version, "n_train": len(data.y_train), "n_val": len(data.y_val),
           "n_test": len(data.y_test), "dtype": str(data.X_train.dtype).replace("torch.", ""),
           "seconds": {"data": time.perf_counter() - t0}, "cpu_seconds": {}, "peak_after": {}}
    sec, cpu, peak = rec["seconds"], rec["cpu_seconds"], rec["peak_after"]
    folder = Path(tempfile.mkdtemp(prefix=f"defuse-scale-{version}-{n}-"))
    session = None
    try:
        t = time.perf_counter()
        session = Session(folder, config(quick), classifier=clf, vae=vae, oracle=oracle,
                          data=data)
        sec["open"], peak["open"] = time.perf_counter() - t, peak_rss_mb()
        for stage, step in (("identification", session.identify),
                            ("distillation", session.distill),
                            ("labeling", session.label_simulated)):
            t, c = time.perf_counter(), time.process_time()
            out = step()
            sec[stage], peak[stage] = time.perf_counter() - t, peak_rss_mb()
            cpu[stage] = time.process_time() - c
            log(f"  [{version} {n:,}] {stage}: {sec[stage]:.1f} s, peak {peak[stage]:.0f} MB")
            if stage == "identification":
                rec["counts"] = {"decodes": out.n_decoded, "adversarial": len(out),
                                 "misclassified": out.params["n_misclassified"],
                                 "rechecked": out.params.get("n_rechecked", 0)}
            elif stage == "distillation":
                rec["counts"]["regions"] = len(out)
            else:
                rec["counts"]["accepted"] = sum(d.is_misclassification_region for d in out)
        t, c = time.perf_counter(), time.process_time()
        sets = session.failure_data()
        sec["failure_data"], peak["failure_data"] = time.perf_counter() - t, peak_rss_mb()
        cpu["failure_data"] = time.process_time() - c
        rec["counts"].update(finetune=len(sets["y_f"]), baseline=0 if sets["y_adv"] is None
                             else len(sets["y_adv"]),
                             eval_sets={k: len(v[1]) for k, v in sets["eval_sets"].items()})
        clock = SweepClock()
        t, c = time.perf_counter(), time.process_time()
        arms = session.correct(sets=sets, callbacks=[clock], on_start=clock.start)
        sec["sweeps"], peak["sweeps"] = time.perf_counter() - t, peak_rss_mb()
        cpu["sweeps"] = time.process_time() - c
        for d in (sec, cpu):
            d["correction"] = d["failure_data"] + d["sweeps"]
        log(f"  [{version} {n:,}] correction: {sec['correction']:.1f} s, peak "
            f"{peak['sweeps']:.0f} MB")
        rec["arms"] = clock.arms
        best = arms["defuse"].best_
        rec["figure4"] = {k: best[k] for k in ("lam", "validation", "test", "region_test")
                          if k in best} if best else None
    finally:
        if session is not None:
            session.close()
        shutil.rmtree(folder, ignore_errors=True)
    for d in (sec, cpu):
        d["total"] = sum(d[s] for s in STAGES)
    rec["peak_mb"] = peak_rss_mb()
    rec["fidelity"] = fidelity_on_copies(clf, vae, data)   # after the peak: not the workflow's
    return rec


def fidelity_on_copies(classifier, vae, data) -> dict:
    """Classifier accuracy on the test split's original images and on their shifted copies,
    and on the VAE reconstructions of each (the copies come after the 1,000 originals).
    """
    from defuse_widgets.models.training import reconstruction_fidelity

    n0 = 1000   # MNIST-5k's test split
    parts = {"originals": slice(0, n0), "copies": slice(n0, None)}
    return {name: reconstruction_fidelity(classifier, vae, data.X_test[sl], data.y_test[sl])
            for name, sl in parts.items() if len(data.y_test[sl])}


# ---------------------------------------------------------------------- the section
def _code_key() -> str:
    """The package's code as it is now (commit and uncommitted changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "defuse_widgets", "benchmarks",
                               ":(exclude)benchmarks/results"],   # results are not code
                              cwd=ROOT, capture_output=True).stdout
    except OSError:
        return "unknown"
    return head[:12] + "-" + hashlib.sha256(diff).hexdigest()[:12]


def record_path(version: str, n: int, quick: bool) -> Path:
    """Where the record of (version, N) with today's settings and code is kept."""
    key = _key({"version": version, "n": n, "config": config(quick).to_dict(),
                "colour": colour_settings(quick) if version == "colour" else None,
                "dtype": str(COLOUR_DTYPE), "code": _code_key()})
    return CACHE / "scale" / f"{version}-{n}-{'quick-' if quick else ''}{key}.json"


def run_one_subprocess(version: str, n: int, quick: bool, fresh: bool = False,
                       log=print) -> dict:
    """One (version, N) in a fresh process; a record of the same settings and code is reused."""
    done = record_path(version, n, quick)
    if done.exists() and not fresh:
        log(f"  [{version} {n:,}] reusing {done.relative_to(ROOT)}")
        return json.loads(done.read_text())
    cmd = [sys.executable, "-m", "benchmarks.scale", "--one", version, str(n), "--out", "json",
           *(["--quick"] if quick else [])]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)   # stderr shows
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with code {proc.returncode}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["wall_s"] = time.perf_counter() - t
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(rec, indent=1))
    return rec


def _stage_note(r: dict) -> str:
    s, c = r["seconds"], r["counts"]
    arms = "; ".join(f"{name}: set-up {a['setup']:.0f} s, training {a['training']:.0f} s, "
                     f"evaluation {a['evaluation']:.0f} s ({a['lam_epochs']} λ-epochs)"
                     for name, a in r["arms"].items())
    return (f"identification {s['identification']:.0f} s "
            f"({c['decodes'] / s['identification']:,.0f} decodes/s), distillation "
            f"{s['distillation']:.1f} s, labeling {s['labeling']:.1f} s, correction "
            f"{s['correction']:.0f} s (failure data {s['failure_data']:.1f} s; {arms}); "
            f"{1e3 * s['total'] / r['n_train']:.2f} ms per training image "
            f"(identification {1e3 * s['identification'] / r['n_train']:.2f} ms); "
            f"{c['decodes']:,} decodes, {c['adversarial']:,} adversarial examples kept, "
            f"{c['regions']} regions, {c['accepted']} accepted; data built in "
            f"{s['data']:.1f} s, session opened in {s['open']:.1f} s; classifier test accuracy "
            + ", ".join(f"{k} {f['accuracy_images']:.3f} (reconstructions "
                        f"{f['accuracy_reconstructions']:.3f})"
                        for k, f in r.get("fidelity", {}).items()))


def rows_of(version: str, recs: dict) -> list:
    """Rows of one version from its records ``{N: record}``."""
    rows, base_n = [], min(recs)
    base = recs[base_n]
    for n, r in sorted(recs.items()):
        s = r["seconds"]
        rows.append({"what": f"scale {version}, {n:,} training images: workflow wall time",
                     "value": f"{s['total']:.0f} s", "note": _stage_note(r), "raw": r})
        if n != base_n:
            per = s["total"] / n / (base["seconds"]["total"] / base_n)
            per_id = (s["identification"] / n) / (base["seconds"]["identification"] / base_n)
            per_c = (s["correction"] / n) / (base["seconds"]["correction"] / base_n)
            rows.append({"what": f"scale {version}: time per training image, {n:,} vs "
                                 f"{base_n:,}", "value": f"{per:.2f}×",
                         "target": f"≤ {RATIO_TARGET}×", "met": per <= RATIO_TARGET,
                         "ratio": per, "note": f"identification {per_id:.2f}×, correction "
                                               f"{per_c:.2f}×"})
        big = n >= PEAK_TARGET_N
        rows.append({"what": f"scale {version}, {n:,}: peak memory (VmHWM of its process)",
                     "value": f"{r['peak_mb']:.0f} MB", "peak_mb": r["peak_mb"],
                     "target": f"≤ {PEAK_TARGET_MB} MB" if big else "",
                     "met": r["peak_mb"] <= PEAK_TARGET_MB if big else None,
                     "note": "after each stage: " + ", ".join(
                         f"{k} {v:.0f}" for k, v in r["peak_after"].items())
                             + f" MB; images stored as {r['dtype']}"})
    return rows


def run(quick: bool = False, *, sizes=None, versions=None, fresh: bool = False,
        log=print) -> list:
    """Every (version, N): one process each; returns the section's rows."""
    sizes = sorted(sizes or (QUICK_SIZES if quick else SIZES))
    rows = []
    for version in versions or VERSIONS:
        if version == "colour":
            clf, vae, oracle, rep = colour_models(quick, log=log)
            f = rep["fidelity"]
            rows.append({"version": version,
                         "what": "scale colour: models' fidelity (coloured MNIST-5k test split)",
                         "value": f"classifier {f['accuracy_images']:.3f} on images, "
                                  f"{f['accuracy_reconstructions']:.3f} on reconstructions",
                         "note": f"oracle {rep['oracle_accuracy']:.3f}; {f['active_dims']} "
                                 f"active latent dims; trained in {rep['train_seconds']:.0f} s"
                                 f"{' (cached)' if rep['cached'] else ''}; settings "
                                 f"{json.dumps(rep['settings'])}", "raw": rep})
            del clf, vae, oracle
        recs = {}
        for n in sizes:
            recs[n] = run_one_subprocess(version, n, quick, fresh, log=log)
            log(f"  [{version} {n:,}] total {recs[n]['seconds']['total']:.0f} s, peak "
                f"{recs[n]['peak_mb']:.0f} MB")
        for n in set(QUICK_SIZES if quick else SIZES) - set(recs):   # parts run earlier
            if record_path(version, n, quick).exists():
                recs[n] = json.loads(record_path(version, n, quick).read_text())
        rows += [{"version": version, **r} for r in rows_of(version, recs)]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split(
        "\n")[0])
    p.add_argument("--one", nargs=2, metavar=("VERSION", "N"),
                   help="run one version at one size in this process")
    p.add_argument("--out", choices=("json", "text"), default="text",
                   help="with --one: print the record as one JSON line (last line)")
    p.add_argument("--sizes", type=int, nargs="+", help=f"training sizes (default {SIZES})")
    p.add_argument("--versions", nargs="+", choices=VERSIONS, help="default: both")
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, Q=10")
    p.add_argument("--fresh", action="store_true", help="ignore records of earlier runs")
    p.add_argument("--tag", help="results file name (default: derived from the machine)")
    args = p.parse_args(argv)
    if args.one:
        version, n = args.one[0], int(args.one[1])
        if version not in VERSIONS:
            p.error(f"VERSION must be one of {VERSIONS}; got {version!r}")

        def log(*a, **k):
            print(*a, **k, file=sys.stderr, flush=True)

        rec = one(version, n, args.quick, log=log)
        print(json.dumps(rec) if args.out == "json" else json.dumps(rec, indent=1))
        return 0
    from ._common import machine, machine_tag, save

    info = machine()
    rows = run(args.quick, sizes=args.sizes, versions=args.versions, fresh=args.fresh)
    tag = args.tag or machine_tag(info) + ("-quick" if args.quick else "")
    for r in rows:
        print(f"  {r['what']}: {r['value']}  {r.get('target', '')}", flush=True)
    path = RESULTS / f"{tag}.json"    # rows of the versions not run now stay
    old = json.loads(path.read_text())["sections"].get("scale", {}) if path.exists() else {}
    ran = set(args.versions or VERSIONS)
    rows = [r for r in old.get("rows", []) if r.get("version") not in ran] + rows
    rows.sort(key=lambda r: VERSIONS.index(r["version"]))   # stable: each version's order
    print(f"→ {save('scale', rows, info, tag)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
