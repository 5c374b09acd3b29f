"""Command line: one subcommand per stage on one session folder, plus ``run`` and ``train``.

::

    defuse-widgets identify --session DIR [settings]
    defuse-widgets distill  --session DIR
    defuse-widgets label    --session DIR --simulated
    defuse-widgets correct  --session DIR
    defuse-widgets report   --session DIR [--html [PATH]]
    defuse-widgets status   --session DIR
    defuse-widgets copy     --session DIR DEST   # safe while people vote
    defuse-widgets run      [--quick] [--out DIR]     # all stages

Every subcommand drives the same :class:`~defuse_widgets.workflow.Session`
as the dashboard and the benchmarks. Without setting flags a session keeps
its own settings; a flag changes them (refused while results of the stage it
affects exist, unless ``--overwrite``, which archives them and never deletes).
"""
from __future__ import annotations

import argparse
import json
import sys

from defuse_widgets.stages.correction import PAPER_LAMS
from defuse_widgets.workflow.fidelity import FIDELITY_WARNING

#: Setting flags -> DefuseConfig fields.
_FLAG_FIELDS = ("dataset", "map_size", "tsne_iter", "Q", "a", "b", "centered", "max_per_instance",
                "n_components", "eps", "max_samples", "tau", "review_size", "rho", "n_workers",
                "error_rate", "lams", "epochs", "tolerance", "confidence", "selection", "baseline",
                "seed", "precision", "schedule", "label_review")
_STAGE_COMMANDS = ("identify", "distill", "label", "correct", "report", "status")


def _lams(text: str) -> tuple:
    try:
        lams = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--lams must be comma-separated numbers; "
                                         f"got {text!r}") from exc
    if not lams or any(v < 0 for v in lams):
        raise argparse.ArgumentTypeError(f"--lams must be non-negative numbers; got {text!r}")
    return lams


def _settings_parser() -> argparse.ArgumentParser:
    s = argparse.ArgumentParser(add_help=False)
    g = s.add_argument_group("settings (default: the session's own; a new session gets "
                             "DefuseConfig's defaults)")
    g.add_argument("--quick", action="store_true", help="CI-sized settings (Q=20, K=30, 3000 "
                   "codes, lambdas 0.01,0.1,1, 2 epochs); explicit flags still override")
    g.add_argument("--dataset", choices=["mnist5k"], help="dataset with shipped weights "
                   "[mnist5k] (others: use the Python API)")
    g.add_argument("--Q", "-Q", type=int, help="perturbations per training image [100]")
    g.add_argument("--a", type=float, help="Beta(a, b) noise parameter a [50]")
    g.add_argument("--b", type=float, help="Beta(a, b) noise parameter b [50]")
    g.add_argument("--literal", dest="centered", action="store_false", default=None,
                   help="the paper's literal Algorithm 1: Beta noise without subtracting its "
                   "mean a/(a+b) (default: centred noise)")
    g.add_argument("--max-per-instance", type=int, help="cap on |psi| per image [100]")
    g.add_argument("--K", "-K", type=int, dest="n_components",
                   help="upper bound on mixture components [100]")
    g.add_argument("--eps", type=float, help="drop components with weight <= eps [0.01]")
    g.add_argument("--max-samples", type=int, help="codes the mixture is fit on [10000]")
    g.add_argument("--tau", type=float, help="sample diversity of N(mu, tau*Sigma) [0.5]")
    g.add_argument("--review-size", type=int, help="review samples per region [10]")
    g.add_argument("--rho", type=float, help="misclassification-region threshold [0.5]")
    g.add_argument("--n-workers", type=int, help="simulated annotator's workers [5]")
    g.add_argument("--error-rate", type=float,
                   help="per-vote error rate of the simulated annotator's workers [0]")
    g.add_argument("--lams", type=_lams, help="comma-separated lambda list [the paper's 17 "
                   f"values, {','.join(f'{v:g}' for v in PAPER_LAMS)}]")
    g.add_argument("--epochs", type=int, help="fine-tuning epochs per lambda [3]")
    g.add_argument("--selection", choices=("interval", "balanced", "validation", "training"),
                   help="lambda selection rule: interval = the best region-validation "
                   "accuracy among lambdas whose validation accuracy is not significantly "
                   "below the model before (paired interval); validation and training are "
                   "the paper's rules; balanced allows a fixed drop --tolerance [interval]")
    g.add_argument("--confidence", type=float, help="level of the paired intervals of the "
                   "interval rule and of the corrected/not verdict [0.95]")
    g.add_argument("--tolerance", type=float, help="validation-accuracy drop the balanced "
                   "rule allows [0.005]")
    g.add_argument("--label-review", type=int, metavar="N", help="label review: the "
                   "simulated reviewer checks the labels of the N training images nearest "
                   "each accepted or label-error region; correction gets a 'review' arm on "
                   "the relabelled data [0: off]")
    g.add_argument("--no-baseline", dest="baseline", action="store_false", default=None,
                   help="skip the baseline arm (adversarial examples labelled one by one)")
    g.add_argument("--seed", type=int, help="seed of every stage [0]")
    g.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="bf16 autocast of decoding, classifying and fine-tuning; auto is "
                   "bf16 where the CPU (AVX-512 BF16/AMX) or GPU runs it natively [auto]")
    g.add_argument("--schedule", choices=("halving", "full"),
                   help="lambda sweep: successive halving (the best third of the lambdas "
                   "trains on after each epoch) or every lambda for every epoch [halving]")
    g.add_argument("--map-size", type=int, help="training images on the dashboard's latent "
                   "map [2000]")
    g.add_argument("--tsne-iter", type=int, help="t-SNE iterations of the latent map [500]")
    i = s.add_argument_group("your own images and models (recorded in the session: later "
                             "commands on the folder need none of these)")
    i.add_argument("--data", metavar="PATH", help="an ImageFolder (root/<class>/*.png, or "
                   "root/{train,val,test}/<class>/...) or an .npz with X and y [the embedded "
                   "MNIST-5k]")
    for role, what in (("classifier", "the classifier under test"),
                       ("vae", "the beta-VAE trained on the same images (train-vae makes one)"),
                       ("oracle", "the simulated annotator's oracle (train-oracle makes one); "
                        "without it, people vote in the dashboard")):
        i.add_argument(f"--{role}", metavar="SPEC", help=f"{what}: a TorchScript file, or "
                       f"package.module:factory with --{role}-weights")
        i.add_argument(f"--{role}-weights", metavar="FILE", help=f"state_dict of a --{role} "
                       "factory (loaded with weights_only=True)")
    i.add_argument("--min-fidelity", type=float, metavar="X", help="stop (exit 2) before "
                   "identification when the classifier keeps less than this share of its "
                   f"validation accuracy on the beta-VAE's reconstructions [warn below "
                   f"{FIDELITY_WARNING:g}]")
    r = s.add_argument_group("running")
    r.add_argument("--overwrite", action="store_true", help="accept settings that differ "
                   "from the session's by moving the results they make stale to archive/ "
                   "(never deletes)")
    r.add_argument("--device", help="cpu, cuda or cuda:N [cuda when available]")
    r.add_argument("--no-progress", action="store_true", help="hide progress output")
    return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defuse-widgets",
                                description="Defuse: find, distill, label and correct model bugs "
                                "on one session folder.")
    sub = p.add_subparsers(dest="command", required=True)
    settings = _settings_parser()
    run = sub.add_parser("run", parents=[settings], help="all four stages headless",
                         description="Run all four Defuse stages on the embedded MNIST-5k "
                         "subset with the shipped weights and the SIMULATED annotator (an "
                         "oracle CNN standing in for people). Prints a Figure 4-style table "
                         "and writes a session folder with results.json. A killed run "
                         "resumes from its finished stages.")
    run.add_argument("--out", "--session", dest="session",
                     help="session folder [runs/defuse; with --quick runs/defuse-quick]")
    helps = {"identify": "identification: find unrestricted adversarial examples",
             "distill": "distillation: fit the misclassification-region mixture",
             "label": "labeling: let the simulated annotator vote on every region",
             "correct": "correction: the lambda sweep of Defuse and the baseline",
             "report": "print the Figure 4 table; reads only (--html: also write "
                       "results.json and an HTML report to share)",
             "status": "print what the session folder holds; reads only"}
    for name in _STAGE_COMMANDS:
        c = sub.add_parser(name, parents=[settings], help=helps[name], description=helps[name])
        c.add_argument("--session", "--out", dest="session", required=True,
                       help="the session folder")
        if name == "label":
            c.add_argument("--simulated", action="store_true", required=True,
                           help="vote with the simulated annotator (people vote in the "
                           "dashboard's Labeling tab)")
        if name == "status":
            c.add_argument("--json", action="store_true", help="print JSON")
        if name == "report":
            c.add_argument("--html", nargs="?", const="", metavar="PATH",
                           help="also write the HTML report, one self-contained file with "
                           "the regions' images, votes, decisions, the tradeoff plot and the "
                           "Figure 4 table [PATH: report.html in the session folder]")
    cp = sub.add_parser("copy", help="copy or back up a session safely, even while people "
                        "vote", description="Copy a session folder to DEST: the vote store "
                        "by SQLite's online backup API (every vote committed before the copy "
                        "began), every other listed file checked against the manifest. Use it "
                        "instead of cp while a labeling process holds the store.")
    cp.add_argument("--session", required=True, help="the session folder (only read)")
    cp.add_argument("dest", help="a new folder for the copy")
    cp.add_argument("--archive", action="store_true", help="also copy archive/")
    _train_parsers(sub)
    t = sub.add_parser("train", help="train the shipped classifier, beta-VAE and oracle",
                       description="Reproduce the shipped weights of the embedded default "
                       "(fixed seed) and report their generative fidelity.")
    t.add_argument("--out", help="output folder [the package's weights folder]")
    t.add_argument("--device", help="cpu, cuda or cuda:N [cuda when available]")
    return p


def _train_parsers(sub) -> None:
    v = sub.add_parser("train-vae", help="train a beta-VAE on your images and report its "
                       "fidelity", description="Train the package's beta-VAE family, sized to "
                       "the images, on the training split of --data; stop early when the "
                       "validation loss stops improving; write it as TorchScript (--vae FILE "
                       "reads it) and, with --classifier, a fidelity report next to it "
                       "(<out>.fidelity.json): the classifier's accuracy on validation images "
                       "against on their reconstructions, overall and per class.")
    o = sub.add_parser("train-oracle", help="train the simulated annotator's oracle on your "
                       "images", description="Train the oracle CNN behind the simulated "
                       "annotator with the shipped oracle's recipe; write it as TorchScript "
                       "(--oracle FILE reads it).")
    for p in (v, o):
        p.add_argument("--data", required=True, metavar="PATH", help="ImageFolder or .npz")
        p.add_argument("--out", required=True, metavar="FILE", help="the TorchScript file to "
                       "write (an existing file is refused unless --overwrite)")
        p.add_argument("--epochs", type=int, help="epoch cap [200 for a grey VAE, 150 for "
                       "colour, 30 for the oracle]")
        p.add_argument("--seed", type=int, default=0, help="seed [0]")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--device", help="cpu, cuda or cuda:N [cuda when available]")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    v.add_argument("--latent", type=int, help="latent dimensions [10; 15 from 128 px]")
    v.add_argument("--width", type=int, help="convolution width [32 for one channel, 64 "
                   "for colour, as in the paper's MNIST and SVHN models]")
    v.add_argument("--beta", type=float, help="KL weight beta [0.25 for grey images, 0.1 "
                   "for colour]")
    v.add_argument("--patience", type=int, default=10, help="epochs without a 0.1%% better "
                   "validation loss before stopping [10]")
    v.add_argument("--classifier", metavar="SPEC", help="the classifier under test, for the "
                   "fidelity report")
    v.add_argument("--classifier-weights", metavar="FILE")


def _inputs(args):
    """The SessionInputs the flags name, or None when they name none."""
    from defuse_widgets.models.loading import ModelSpec
    from defuse_widgets.workflow.inputs import ROLES, SessionInputs

    specs = {}
    for role in ROLES:
        spec, weights = getattr(args, role, None), getattr(args, f"{role}_weights", None)
        if weights is not None and spec is None:
            raise ValueError(f"--{role}-weights needs --{role} package.module:factory; got "
                             f"--{role}-weights {weights!r} alone.")
        if spec is not None:
            specs[role] = ModelSpec(spec, weights)
    inputs = SessionInputs(data=getattr(args, "data", None), **specs)
    return None if inputs.empty else inputs


def _config(args):
    """The DefuseConfig the flags ask for, or None to keep the session's own."""
    from defuse_widgets.workflow import DefuseConfig, Session
    from defuse_widgets.workflow.config import OWN_DATA

    flags = {f: getattr(args, f) for f in _FLAG_FIELDS if getattr(args, f, None) is not None}
    if getattr(args, "data", None) is not None:
        flags["dataset"] = OWN_DATA
    if not flags and not args.quick:
        return None
    base = DefuseConfig.quick() if args.quick else Session.saved_config(args.session)
    return (base or DefuseConfig()).replace(**flags)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from defuse_widgets.models.pretrained import train_default_models
        report = train_default_models(args.out, device=args.device)
        fid = report["fidelity"]["test"]
        print(f"held-out test accuracy: images {fid['accuracy_images']:.3f}, "
              f"VAE reconstructions {fid['accuracy_reconstructions']:.3f}")
        return 0
    try:
        if args.command in ("train-vae", "train-oracle"):
            return _train_own(args)
        if args.command == "copy":
            return _copy(args)
        return _run(args)
    except PermissionError as exc:
        print(f"defuse-widgets: error: {_permission_text(exc)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"defuse-widgets: error: {exc}", file=sys.stderr)
        return 2


def _permission_text(exc: PermissionError) -> str:
    """A permission error as one, with what still works and what to do."""
    if exc.filename is None:
        return str(exc)
    return (f"permission denied: cannot write {exc.filename!r} ({exc.strerror}); nothing "
            "else was written. `status` and `report` read a read-only session; to run a "
            "stage, give write access to the folder, or work on a copy (`defuse-widgets copy "
            "--session S DEST`).")


def _run(args) -> int:
    from defuse_widgets.workflow import Session, figure4_table, report, run_defuse
    from defuse_widgets.workflow.pipeline import no_annotator_steps, stage_steps
    from defuse_widgets.workflow.report import status, status_text

    if args.command == "run" and args.session is None:
        args.session = "runs/defuse-quick" if args.quick else "runs/defuse"
    config = _config(args)
    inputs = _inputs(args)
    progress = not args.no_progress
    if getattr(args, "html", None):
        from defuse_widgets.workflow.html_report import check_report_path

        check_report_path(args.html, args.session, name="--html")   # before any work
    if args.command == "run":
        run_defuse(config, out=args.session, overwrite=args.overwrite, device=args.device,
                   progress=progress, inputs=inputs, min_fidelity=args.min_fidelity)
        return 0
    read_only = args.command == "status" or (args.command == "report" and args.html is None)
    session = Session(args.session, config, device=args.device, overwrite=args.overwrite,
                      inputs=inputs, read_only=read_only)
    try:
        if args.command == "status":
            info = status(session)
            print(json.dumps(info, indent=2) if args.json else status_text(info))
        elif args.command == "report":
            html = None if args.html is None else session.write_html_report(args.html or None)
            res = report(session) if html is None else session.folder.load("results.json")
            print(figure4_table(res) if "figure4" in res else
                  "no correction yet: the Figure 4 table needs the correct stage")
            if html is not None:
                print(f"results written to {session.folder.file('results.json')}")
                print(f"HTML report written to {html}")
        else:
            stage = {"identify": "identification", "distill": "distillation",
                     "label": "labeling", "correct": "correction"}[args.command]
            session.check_order(stage)   # before any work, and nothing written
            if session.done(stage):
                print(f"{stage}: the session already holds this stage's result; pass "
                      "--overwrite to run it again (earlier results move to archive/).")
                if not args.overwrite:
                    return 0
                session.archive_from(stage)
            if stage == "labeling" and session.simulated_annotator() is None:
                raise ValueError(no_annotator_steps(session))
            step = dict(stage_steps(session, progress, print,
                                    min_fidelity=args.min_fidelity))[stage]
            step()
            print(status_text(status(session)))
    finally:
        session.close()
    return 0


def _copy(args) -> int:
    from defuse_widgets.storage.session_copy import copy_session

    done = copy_session(args.session, args.dest, archive=args.archive)
    votes = "no vote store" if done["votes"] is None else f"{done['votes']} votes"
    print(f"copied {args.session} to {done['path']}: {len(done['files'])} listed files, "
          f"{votes}; the copy passed the checks of an open")
    return 0


def _train_own(args) -> int:
    """``train-vae`` and ``train-oracle``: a model for the user's images, as TorchScript."""
    from pathlib import Path

    from defuse_widgets._validation import resolve_device
    from defuse_widgets.data.images import load_images
    from defuse_widgets.models import recipes

    out, device = Path(args.out).expanduser(), resolve_device(args.device)
    report_path = out.with_name(out.stem + ".fidelity.json")
    for path in (out, report_path) if args.command == "train-vae" else (out,):
        if path.exists() and not args.overwrite:   # refused before any work
            raise FileExistsError(f"{path} already exists; it is left as it is. Choose "
                                  "another --out, or pass --overwrite to replace it.")
    data = load_images(args.data)
    print(f"[data] {data}")
    progress = not args.no_progress
    if args.command == "train-oracle":
        from defuse_widgets.models.inference import accuracy

        oracle = recipes.fit_oracle(data, epochs=args.epochs, seed=args.seed, device=device,
                                    progress=progress)
        recipes.save_torchscript(oracle, out, overwrite=args.overwrite)
        print(f"oracle written to {out}; validation accuracy "
              f"{accuracy(oracle, data.X_val, data.y_val):.3f}")
        return 0
    return _train_vae(args, data, out, report_path, device, progress)


def _train_vae(args, data, out, report_path, device, progress: bool) -> int:
    from defuse_widgets.models import recipes
    from defuse_widgets.models.loading import ModelSpec
    from defuse_widgets.workflow.fidelity import fidelity_report, fidelity_text, fidelity_warning
    from defuse_widgets.workflow.inputs import check_fit

    classifier = None
    if args.classifier is not None:
        classifier = ModelSpec(args.classifier, args.classifier_weights).load("classifier")
        check_fit(data, classifier=classifier)   # before training
    vae, history = recipes.fit_vae(data, n_latent=args.latent, width=args.width, beta=args.beta,
                                   epochs=args.epochs, patience=args.patience, seed=args.seed,
                                   device=device, progress=progress)
    recipes.save_torchscript(vae, out, overwrite=args.overwrite)
    best = min(history, key=lambda h: h["validation_loss"])
    print(f"beta-VAE written to {out}: {len(history)} epochs, best validation loss "
          f"{best['validation_loss']:.2f} at epoch {best['epoch']}")
    if classifier is None:
        print("no fidelity report: pass --classifier to measure how much of its accuracy "
              "survives reconstruction")
        return 0
    report = fidelity_report(classifier, vae, data.X_val, data.y_val, data.class_names)
    recipes.save_training_report(report_path, {"vae": str(out.resolve()), "data": str(args.data),
                                               "history": history, "report": report},
                                 overwrite=args.overwrite)
    print(fidelity_text(report))
    warning = fidelity_warning(report)
    print(warning if warning else "fidelity is fine for Defuse")
    print(f"fidelity report written to {report_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
