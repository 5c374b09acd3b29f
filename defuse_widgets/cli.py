"""Command line: ``defuse-widgets run`` (all four stages) and ``defuse-widgets train``."""
from __future__ import annotations

import argparse
import sys

from .correction import PAPER_LAMS
from .data.registry import DATASETS


def _lams(text: str) -> tuple:
    try:
        lams = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lams must be comma-separated numbers; got {text!r}")
    if not lams or any(v < 0 for v in lams):
        raise argparse.ArgumentTypeError(f"--lams must be non-negative numbers; got {text!r}")
    return lams


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defuse-widgets",
                                description="Defuse: find, distill, label and correct model bugs.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run identify -> distill -> label -> correct headless",
                       description="Run all four Defuse stages on the embedded MNIST-5k subset "
                       "with the shipped weights and the SIMULATED annotator (an oracle CNN "
                       "standing in for people). Prints a Figure 4-style table and writes a "
                       "session directory with results.json.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--quick", action="store_true", help="CI-sized run (Q=20, K=30, 3000 codes, "
                   "lambdas 0.01,0.1,1, 2 epochs); explicit flags still override")
    r.add_argument("--dataset", default="mnist5k", choices=["mnist5k"],
                   help="dataset with shipped weights (others: use the Python API)")
    r.add_argument("--Q", "-Q", type=int, help="perturbations per training image [100; quick 20]")
    r.add_argument("--a", type=float, help="Beta(a, b) noise parameter a [50]")
    r.add_argument("--b", type=float, help="Beta(a, b) noise parameter b [50]")
    r.add_argument("--literal", dest="centered", action="store_false", default=None,
                   help="the paper's literal Algorithm 1: add Beta(a, b) noise without "
                   "subtracting its mean a/(a+b) (default: centred noise)")
    r.add_argument("--centered", dest="centered", action="store_true", default=None,
                   help="centred noise (the default; kept for older scripts)")
    r.add_argument("--max-per-instance", type=int, help="cap on |psi| per image [100]")
    r.add_argument("--K", "-K", type=int, dest="n_components",
                   help="upper bound on mixture components [100; quick 30]")
    r.add_argument("--eps", type=float, help="drop components with weight <= eps [0.01]")
    r.add_argument("--max-samples", type=int,
                   help="down-sample adversarial codes before the mixture fit [10000]")
    r.add_argument("--tau", type=float, help="sample diversity of N(mu, tau*Sigma) [0.5]")
    r.add_argument("--rho", type=float, help="misclassification-region threshold [0.5]")
    r.add_argument("--error-rate", type=float,
                   help="per-vote error rate of the simulated annotator's workers [0]")
    r.add_argument("--lams", type=_lams,
                   help="comma-separated lambda list [the paper's 17 values, "
                   f"{','.join(f'{v:g}' for v in PAPER_LAMS)}]")
    r.add_argument("--tolerance", type=float, help="validation-accuracy drop the "
                   "lambda selection allows [0.005]")
    r.add_argument("--epochs", type=int, help="fine-tuning epochs per lambda [3; quick 2]")
    r.add_argument("--device", help="cpu, cuda or cuda:N [cuda when available]")
    r.add_argument("--seed", type=int, help="seed of every stage [0]")
    r.add_argument("--out", help="session directory [runs/defuse; quick runs/defuse-quick]")
    r.add_argument("--overwrite", action="store_true",
                   help="delete an existing session in --out that used other settings")
    r.add_argument("--no-progress", action="store_true", help="hide progress bars")

    t = sub.add_parser("train", help="train the shipped classifier, beta-VAE and oracle",
                       description="Reproduce the shipped weights of the embedded default "
                       "(fixed seed) and report their generative fidelity.")
    t.add_argument("--out", help="output folder [the package's weights folder]")
    t.add_argument("--device", help="cpu, cuda or cuda:N [cuda when available]")
    return p


_FLAG_FIELDS = ("Q", "a", "b", "max_per_instance", "n_components", "eps", "max_samples", "tau",
                "rho", "error_rate", "lams", "tolerance", "epochs", "device", "seed", "out")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from .pretrained import train_default_models
        report = train_default_models(args.out, device=args.device)
        fid = report["fidelity"]["test"]
        print(f"held-out test accuracy: images {fid['accuracy_images']:.3f}, "
              f"VAE reconstructions {fid['accuracy_reconstructions']:.3f}")
        return 0
    from .pipeline import DefuseConfig, run_defuse

    kw = {f: getattr(args, f) for f in _FLAG_FIELDS if getattr(args, f) is not None}
    kw.update(dataset=args.dataset, progress=not args.no_progress, overwrite=args.overwrite)
    if args.centered is not None:
        kw["centered"] = args.centered
    try:
        cfg = DefuseConfig.quick(**kw) if args.quick else DefuseConfig(**kw)
        run_defuse(cfg)
    except (ValueError, TypeError) as exc:
        print(f"defuse-widgets: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
