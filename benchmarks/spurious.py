"""A spurious feature, found and fixed: Defuse on colour-biased digits, next to the debiasing peers.

``python -m benchmarks.spurious --seed N --rho R`` builds Biased-MNIST from the
embedded MNIST-5k (:func:`~defuse_widgets.data.synthetic.biased_digits`: each
class has a background colour, which a training or validation image gets with
probability ρ; test colours are uniform), and runs it as a user with their own
model and images would:

* the images are written as an ``.npz``, and the models as TorchScript files:
  the classifier under test (the package's CNN, trained on the biased training
  split with the paper's recipe), the β-VAE (``train-vae``'s recipe,
  :func:`~defuse_widgets.models.recipes.fit_vae`, on the biased training
  split) and the simulated annotator's oracle (``train-oracle``'s recipe on
  colour-randomised digits: people read the digit, not the background);
* :func:`~defuse_widgets.workflow.run_defuse` runs with the defaults on them
  (``--data --classifier --vae --oracle``), every arm also evaluated on the
  bias-conflicting and bias-aligned test images (measurement only);
* the peers train on the same images with the same budget (5 epochs for each
  final model, as the classifier under test): JTT, Learning from Failure and,
  as an upper bound no user has, reweighting by the known colour group; their
  hyper-parameters are chosen on the biased validation split only;
* Domino-style slice discovery is fitted on the validation split and scored,
  like Defuse's accepted regions, by precision@10 of each class's
  bias-conflicting test images.

The dataset (one colour draw per ρ) and the β-VAE and oracle trained on it
are fixed per ρ and cached; the seed varies the classifier under test, every
stage of Defuse and every peer. Each run writes
``results/spurious/rho<R>-s<N>.json``; the table ``results/spurious.md``
aggregates every JSON there.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "spurious"
CACHE = RESULTS / ".cache" / "spurious"
RHOS = (0.99, 0.995)
#: The dataset's colour draw (fixed per ρ: the seed varies the models and methods).
DATA_SEED = 0
#: The classifier under test: the package's CNN with the paper's recipe.
CLASSIFIER = dict(epochs=5, batch_size=64, lr=1.0, optimizer="adadelta")
#: The training budget of every peer's final model (the classifier's epochs).
EPOCHS = CLASSIFIER["epochs"]
#: JTT's upweighting factors (the paper's grid for CelebA/Waterbirds-sized problems).
JTT_UPWEIGHTS = (20, 50, 100)
#: A region is "found" when this share of its adversarial examples is one class's shape
#: decoded on another class's colour.
FOUND_SHARE = 0.5
_BORDER = 2   # background pixels: the frame of the 32x32 image (MNIST is padded from 28)


# ----------------------------------------------------------------------- inputs
def biased(rho: float):
    from defuse_widgets.data import load_mnist5k
    from defuse_widgets.data.synthetic import biased_digits

    return biased_digits(load_mnist5k(), rho, seed=DATA_SEED)


def write_images(b, path: Path) -> Path:
    """The biased splits as the ``.npz`` a user would give ``--data``."""
    d = b.data
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, X=d.X_train.numpy(), y=d.y_train.numpy(), X_val=d.X_val.numpy(),
                 y_val=d.y_val.numpy(), X_test=d.X_test.numpy(), y_test=d.y_test.numpy(),
                 class_names=np.array(d.class_names))
    return path


def oracle_file(log) -> Path:
    """``train-oracle``'s recipe on colour-randomised digits (cached once)."""
    from defuse_widgets.data import load_mnist5k
    from defuse_widgets.data.synthetic import coloured_digits
    from defuse_widgets.models import recipes

    path = CACHE / "oracle.pt"
    if not path.exists():
        t = time.perf_counter()
        oracle = recipes.fit_oracle(coloured_digits(load_mnist5k(), seed=DATA_SEED + 1),
                                    seed=DATA_SEED, progress=False)
        recipes.save_torchscript(oracle, path)
        log(f"  oracle trained on colour-randomised digits ({time.perf_counter() - t:.0f} s)")
    return path


def vae_file(b, rho: float, log) -> tuple[Path, dict]:
    """``train-vae``'s recipe on the biased training split (cached per ρ)."""
    from defuse_widgets.models import recipes

    path, report = CACHE / f"rho{rho:g}" / "vae.pt", CACHE / f"rho{rho:g}" / "vae.json"
    if not path.exists():
        t = time.perf_counter()
        vae, history = recipes.fit_vae(b.data, width=32, seed=DATA_SEED, progress=False)
        recipes.save_torchscript(vae, path)
        report.write_text(json.dumps({"epochs": len(history), "history": history,
                                      "seconds": time.perf_counter() - t}))
        log(f"  β-VAE trained: {len(history)} epochs ({time.perf_counter() - t:.0f} s)")
    return path, json.loads(report.read_text())


def classifier_file(b, rho: float, seed: int, log) -> Path:
    """The classifier under test, trained on the biased training split (cached per seed)."""
    from defuse_widgets.models import MnistCNN, recipes
    from defuse_widgets.models.training import train_classifier

    path = CACHE / f"rho{rho:g}" / f"classifier-s{seed}.pt"
    if not path.exists():
        torch.manual_seed(seed)
        clf = MnistCNN(3, 32, 10)
        train_classifier(clf, b.data.X_train, b.data.y_train, seed=seed, progress=False,
                         **CLASSIFIER)
        recipes.save_torchscript(clf.cpu().eval(), path)
        log(f"  classifier trained (seed {seed})")
    return path


# ---------------------------------------------------------------------- metrics
def test_sets(b) -> dict:
    """The bias-conflicting and bias-aligned test images, as correction eval sets."""
    conf = torch.as_tensor(b.conflicting("test"))
    X, y = b.data.X_test, b.data.y_test
    return {"conflicting": (X[conf], y[conf]), "aligned": (X[~conf], y[~conf])}


def scores(model, sets: dict, b) -> dict:
    from defuse_widgets.models.inference import accuracy

    return {"conflicting": accuracy(model, *sets["conflicting"]),
            "aligned": accuracy(model, *sets["aligned"]),
            "test": accuracy(model, b.data.X_test, b.data.y_test),
            "validation": accuracy(model, b.data.X_val, b.data.y_val)}


def background_colour(X: torch.Tensor) -> np.ndarray:
    """Palette index nearest each image's border colour. X: (n, 3, H, W), uint8 or [0, 1]."""
    from defuse_widgets.data.synthetic import PALETTE

    X = X.float() / 255 if X.dtype == torch.uint8 else X.float()
    frame = torch.ones(X.shape[-2:], dtype=torch.bool)
    frame[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
    rgb = X[:, :, frame].mean(-1).numpy() * 255                  # (n, 3)
    d = ((rgb[:, None, :] - PALETTE[None].astype(float)) ** 2).sum(-1)
    return d.argmin(1)


def found_regions(session, max_members: int = 400, seed: int = 0) -> list:
    """Per accepted region: its members' shape (source label) and decoded background colour.

    A region is *found* when at least :data:`FOUND_SHARE` of its adversarial
    examples are one class's shape on another class's colour.
    """
    from defuse_widgets.models.inference import decode

    adv = session.load_adversarial()
    regions = session.load_regions(adv)
    accepted = [d.region for d in session.load_decisions() if d.is_misclassification_region]
    rng, out = np.random.default_rng(seed), []
    for k in accepted:
        members = np.flatnonzero(regions.assignment == k)
        members = rng.choice(members, min(len(members), max_members), replace=False)
        colour = background_colour(decode(session.vae, torch.as_tensor(adv.codes[members])))
        shape = adv.true_label[members]
        share = [float(np.mean((shape == c) & (colour != c))) for c in range(10)]
        c = int(np.argmax(share))
        out.append(dict(region=int(k), members=int((regions.assignment == k).sum()),
                        shape_class=c, conflicting_share=round(share[c], 3),
                        main_colour=int(np.bincount(colour[shape == c], minlength=10).argmax()),
                        found=share[c] >= FOUND_SHARE))
    return out


# ------------------------------------------------------------------------ arms
def run_defuse_arm(b, rho, seed, paths, quick, log) -> dict:
    from defuse_widgets.models.loading import ModelSpec
    from defuse_widgets.workflow import DefuseConfig, Session, run_defuse
    from defuse_widgets.workflow.inputs import SessionInputs

    folder = OUT / ".sessions" / f"rho{rho:g}-s{seed}"
    config = (DefuseConfig.quick(seed=seed) if quick else DefuseConfig(seed=seed))
    inputs = SessionInputs(data=str(paths["data"]),
                           **{r: ModelSpec(str(paths[r])) for r in ("classifier", "vae",
                                                                    "oracle")})
    t = time.perf_counter()
    res = run_defuse(config, out=folder, inputs=inputs, extra_eval_sets=test_sets(b),
                     progress=False, log=lambda *a: None)
    seconds = time.perf_counter() - t
    session = Session(folder, read_only=True)
    try:
        regions = found_regions(session, seed=seed)
        arms = {}   # the classifier before fine-tuning is the peers' ERM
        for arm in ("baseline", "defuse"):
            if arm in res.get("correction", {}):
                arms[arm] = _arm(res["correction"][arm]["best"])
        fidelity = res["fidelity"]["fidelity"]
    finally:
        session.close()
    log(f"  Defuse: {len(regions)} accepted regions, {sum(r['found'] for r in regions)} "
        f"found ({seconds:.0f} s)")
    return dict(arms=arms, regions=regions, found=any(r["found"] for r in regions),
                fidelity=fidelity, seconds=round(seconds, 1),
                n_adversarial=res["identification"]["n_kept"],
                n_candidates=res["labeling"]["n_candidates"])


def coverage(b, session_folder, regions: list, erm) -> dict:
    """Accuracy on the conflicting test images whose (class, colour) pair a found region covers.

    Defuse can only teach the shape-on-colour pairs its regions decode; the
    other conflicting pairs are left as they were. ``regions`` is
    :func:`found_regions`' list.
    """
    from defuse_widgets.models.inference import correct
    from defuse_widgets.workflow import Session

    pairs = {(r["shape_class"], r["main_colour"]) for r in regions if r["found"]}
    d, conf = b.data, b.conflicting("test")
    y, colour = d.y_test.numpy(), b.colours["test"]
    covered = conf & np.array([(int(a), int(c)) in pairs for a, c in zip(y, colour)])
    session = Session(session_folder, read_only=True)
    try:
        fixed = session.load_corrected_classifier()
        label = {dd.region: dd.label for dd in session.load_decisions()}
    finally:
        session.close()
    right = sum(label.get(r["region"]) == r["shape_class"] for r in regions if r["found"])
    out = dict(pairs=sorted([list(p) for p in pairs]), n_pairs=len(pairs), of_pairs=90,
               n_found=sum(r["found"] for r in regions), n_labelled_as_shape=int(right),
               n_covered=int(covered.sum()), n_uncovered=int((conf & ~covered).sum()))
    for name, model in (("erm", erm), ("defuse", fixed)):
        if model is None:
            continue
        ok = correct(model, d.X_test, d.y_test)
        out[name] = {"covered": float(ok[covered].mean()) if covered.any() else None,
                     "uncovered": float(ok[conf & ~covered].mean())}
    return out


def add_coverage() -> None:
    """Add :func:`coverage` to every result JSON that lacks it (its session must be there)."""
    from defuse_widgets.models.loading import load_model

    for path in sorted(OUT.glob("rho*-s*.json")):
        r = json.loads(path.read_text())
        folder = OUT / ".sessions" / f"rho{r['rho']:g}-s{r['seed']}"
        if "coverage" in r or not folder.exists():
            continue
        b = biased(r["rho"])
        erm = load_model(str(CACHE / f"rho{r['rho']:g}" / f"classifier-s{r['seed']}.pt"),
                         role="classifier")
        r["defuse"]["coverage"] = coverage(b, folder, r["defuse"]["regions"], erm)
        r["coverage"] = True
        path.write_text(json.dumps(r, indent=1))
    write_table()


def _arm(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("conflicting", "aligned", "test", "validation", "lam")}


def peers(b, clf, seed, log) -> dict:
    from defuse_widgets.evaluation import debiasing
    from defuse_widgets.models import MnistCNN
    from defuse_widgets.models.inference import accuracy

    d, sets, out = b.data, test_sets(b), {"erm": scores(clf, test_sets(b), b)}

    def make():
        return MnistCNN(3, 32, 10)

    def val(model):
        return accuracy(model, d.X_val, d.y_val)

    t = time.perf_counter()
    model, info = debiasing.jtt(make, d.X_train, d.y_train, d.X_val, d.y_val,
                                upweights=JTT_UPWEIGHTS, epochs=EPOCHS, seed=seed, select=val)
    info = {k: v for k, v in info.items() if k in ("n_errors", "scores", "lam_up")}
    out["jtt"] = {**scores(model, sets, b), "info": info,
                  "seconds": round(time.perf_counter() - t, 1)}
    t = time.perf_counter()
    model, info = debiasing.lff(make, d.X_train, d.y_train, epochs=EPOCHS, seed=seed)
    info = {"mean_weight": float(info["mean_weight"])}
    out["lff"] = {**scores(model, sets, b), "info": info,
                  "seconds": round(time.perf_counter() - t, 1)}
    t = time.perf_counter()
    model, _ = debiasing.group_reweighted(make, d.X_train, d.y_train, b.colours["train"],
                                          epochs=EPOCHS, seed=seed)
    out["group_reweighting"] = {**scores(model, sets, b),
                                "seconds": round(time.perf_counter() - t, 1)}
    log("  peers: " + ", ".join(f"{k} {v['conflicting']:.3f}" for k, v in out.items()))
    return out


def slice_discovery(b, clf, session_folder, seed) -> dict:
    """Domino on the validation split and Defuse's accepted regions, scored on the test split."""
    from benchmarks.harness.peers import best_slice_precision, defuse_region_scores
    from defuse_widgets.evaluation.slice_discovery import DominoMixture, classifier_outputs
    from defuse_widgets.workflow import Session

    d = b.data
    y_pool = d.y_test.numpy()
    hit = np.stack([(y_pool == c) & b.conflicting("test") for c in range(10)], 1)
    F_val, P_val = classifier_outputs(clf, d.X_val)
    F_pool, P_pool = classifier_outputs(clf, d.X_test)
    S = DominoMixture(n_slices=5, n_components=25, seed=seed).fit(
        F_val, d.y_val.numpy(), P_val).predict_proba(F_pool, y_pool, P_pool)
    out = {"domino": best_slice_precision(S, hit, k=10, seed=seed)}
    session = Session(session_folder, read_only=True)
    try:
        accepted = np.array([dd.is_misclassification_region for dd in session.load_decisions()])
        regions = session.load_regions()
        S = defuse_region_scores(regions, session.vae, d.X_test, accepted=accepted)
        out["defuse_accepted"] = best_slice_precision(S, hit, k=10, seed=seed)
    finally:
        session.close()
    for v in out.values():
        v["mean_precision"] = round(float(np.mean(v["precision"])), 4)
    return out


def _eager(scripted):
    """The classifier as an eager MnistCNN (slice discovery hooks its last nn.Linear)."""
    from defuse_widgets.models import MnistCNN

    model = MnistCNN(3, 32, 10)
    model.load_state_dict(scripted.state_dict())
    return model.eval()


# --------------------------------------------------------------------------- run
def run(seed: int, rho: float, *, quick: bool = False, log=print) -> dict:
    from defuse_widgets.models.loading import load_model

    t = time.perf_counter()
    b = biased(rho)
    log(f"spurious: rho={rho:g}, seed={seed}: {b.data}; bias-conflicting train/val/test "
        + "/".join(str(int(b.conflicting(s).sum())) for s in ("train", "val", "test")))
    vae, vae_report = vae_file(b, rho, log)
    paths = dict(data=write_images(b, CACHE / f"rho{rho:g}" / "images.npz"),
                 classifier=classifier_file(b, rho, seed, log), vae=vae,
                 oracle=oracle_file(log))
    clf = _eager(load_model(str(paths["classifier"]), role="classifier"))
    result = dict(seed=seed, rho=rho, quick=quick, data_seed=DATA_SEED, epochs=EPOCHS,
                  n_conflicting={s: int(b.conflicting(s).sum()) for s in ("train", "val",
                                                                          "test")},
                  vae_epochs=vae_report["epochs"])
    result["defuse"] = run_defuse_arm(b, rho, seed, paths, quick, log)
    result["defuse"]["coverage"] = coverage(b, OUT / ".sessions" / f"rho{rho:g}-s{seed}",
                                            result["defuse"]["regions"], clf)
    result["coverage"] = True
    result["peers"] = peers(b, clf, seed, log)
    result["slices"] = slice_discovery(b, clf, OUT / ".sessions" / f"rho{rho:g}-s{seed}", seed)
    result["seconds"] = round(time.perf_counter() - t, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"rho{rho:g}-s{seed}{'-quick' if quick else ''}.json"
    (OUT / name).write_text(json.dumps(result, indent=1))
    write_table()
    return result


# ------------------------------------------------------------------------- table
_ARMS = (("ERM (the classifier as trained)", lambda r: r["peers"]["erm"], "nothing"),
         ("Defuse", lambda r: r["defuse"]["arms"].get("defuse"),
          "a generator, a human annotator"),
         ("Defuse's baseline arm", lambda r: r["defuse"]["arms"].get("baseline"),
          "a generator, a label per adversarial example"),
         ("JTT", lambda r: r["peers"]["jtt"], "nothing (validation for λ_up)"),
         ("Learning from Failure", lambda r: r["peers"]["lff"], "nothing"),
         ("Group reweighting (upper bound)", lambda r: r["peers"]["group_reweighting"],
          "the colour of every training image"))


def _ms(values) -> str:
    v = [100 * x for x in values if x is not None]
    if not v:
        return "–"
    return f"{np.mean(v):.1f} ± {np.std(v, ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def write_table() -> Path:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("rho*-s*.json"))
            if not p.stem.endswith("quick")]
    lines = ["# Spurious feature: colour-biased MNIST-5k (`python -m benchmarks.spurious`)", "",
             "Accuracy in % on the test split (uniform colours), mean ± sd over seeds; "
             "*conflicting*: test images off their class's colour, *aligned*: on it. "
             "Generated from `results/spurious/*.json`.", ""]
    for rho in sorted({r["rho"] for r in runs}):
        rs = [r for r in runs if r["rho"] == rho]
        seeds = ", ".join(str(r["seed"]) for r in rs)
        lines += [f"## ρ = {rho:g} ({len(rs)} seed{'s' * (len(rs) != 1)}: {seeds})",
                  "", "| method | conflicting | aligned | test | needs |", "|---|---|---|---|---|"]
        for name, get, needs in _ARMS:
            got = [get(r) for r in rs]
            got = [g for g in got if g]
            lines.append(f"| {name} | {_ms(g['conflicting'] for g in got)} | "
                         f"{_ms(g['aligned'] for g in got)} | {_ms(g['test'] for g in got)} | "
                         f"{needs} |")
        found = ", ".join(f"seed {r['seed']}: {'yes' if r['defuse']['found'] else 'no'} "
                          f"({sum(g['found'] for g in r['defuse']['regions'])} of "
                          f"{len(r['defuse']['regions'])} accepted regions)" for r in rs)
        cov = [r["defuse"].get("coverage") for r in rs if r["defuse"].get("coverage")]
        if cov:
            lines += ["", "Annotation: the simulated annotator labelled "
                      + ", ".join(f"{c['n_labelled_as_shape']} of {c['n_found']}" for c in cov
                                  if "n_found" in c)
                      + " found regions with the class of the digit's shape."]
            lines += ["", "Coverage: the found regions decode "
                      + ", ".join(f"{c['n_pairs']}" for c in cov) + " of the 90 (class, "
                      "colour) conflicting pairs; on the conflicting test images of those "
                      "pairs Defuse's corrected model scores "
                      + _ms(c["defuse"]["covered"] for c in cov if "defuse" in c)
                      + " (ERM " + _ms(c["erm"]["covered"] for c in cov) + "), on the other "
                      "pairs " + _ms(c["defuse"]["uncovered"] for c in cov if "defuse" in c)
                      + " (ERM " + _ms(c["erm"]["uncovered"] for c in cov) + ")."]
        lines += ["", f"Found (an accepted region ≥ {FOUND_SHARE:.0%} one class's shape on "
                  f"another's colour): {found}.", "",
                  "Slice precision@10 of each class's bias-conflicting test images (mean over "
                  "classes): Domino " + _ms(r["slices"]["domino"]["mean_precision"] for r in rs)
                  + ", Defuse's accepted regions "
                  + _ms(r["slices"]["defuse_accepted"]["mean_precision"] for r in rs) + ".", ""]
    path = RESULTS / "spurious.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.spurious", description=__doc__
                                .split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rho", type=float, default=0.99, choices=RHOS)
    p.add_argument("--quick", action="store_true", help="CI-sized Defuse settings")
    p.add_argument("--table", action="store_true", help="only rebuild results/spurious.md "
                   "(adding the coverage analysis to results that lack it)")
    args = p.parse_args(argv)
    if args.table:
        add_coverage()
        print(write_table())
        return 0
    run(args.seed, args.rho, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
