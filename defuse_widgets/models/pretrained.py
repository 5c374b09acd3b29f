"""Shipped weights for the embedded default and the command that reproduces them.

``defuse-widgets train`` runs :func:`train_default_models`, which trains the
classifier under test, the β-VAE and the oracle behind the simulated
annotator on the training split of ``mnist5k`` with a fixed seed, and writes
state_dicts plus a JSON report (settings and generative fidelity).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from defuse_widgets.data import load_mnist5k
from defuse_widgets.models import BetaVAE, MnistCNN, OracleCNN
from defuse_widgets.models.training import reconstruction_fidelity, train_classifier, train_vae
from defuse_widgets.storage.persistence import load_state_dict, save_json, save_state_dict

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

#: Settings of the shipped models; the β-VAE ones were chosen to reach the
#: 0.93 held-out reconstruction accuracy (docs: "Generative fidelity").
DEFAULT_SETTINGS = {
    "seed": 0,
    "classifier": dict(epochs=5, batch_size=64, lr=1.0, optimizer="adadelta"),
    "vae": dict(family="mnist", beta=0.25, anneal_steps=2000, epochs=200, batch_size=64,
                lr=1e-3, augment=True),
    "oracle": dict(epochs=30, batch_size=64, lr=1e-3, optimizer="adam", augment=True,
                   seed_offset=1000),
}


def _load(module: torch.nn.Module, path: Path) -> torch.nn.Module:
    if not path.exists():
        raise ValueError(f"weights file must exist; got missing {path}. Run "
                         "`defuse-widgets train` to produce it.")
    module.load_state_dict(load_state_dict(path))   # weights_only: refuses code in pickles
    return module.eval()


def load_pretrained(dataset: str = "mnist5k", *, weights_dir=None) -> tuple:
    """Load the shipped classifier, β-VAE and oracle for ``dataset``.

    Parameters
    ----------
    dataset : {"mnist5k"}
        Only the embedded default ships weights.
    weights_dir : str or Path, optional
        Folder with ``<dataset>_{classifier,vae,oracle}.pt``; defaults to the
        package's own.

    Returns
    -------
    classifier : MnistCNN
    vae : BetaVAE
    oracle : OracleCNN
        Backs the simulated annotator.
    """
    if dataset != "mnist5k":
        raise ValueError(f"dataset must be 'mnist5k' to use shipped weights; got {dataset!r}. "
                         "Train models for other datasets with defuse_widgets.models.training.")
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    vae_cfg = DEFAULT_SETTINGS["vae"]
    classifier = _load(MnistCNN(1, 32, 10), d / f"{dataset}_classifier.pt")
    vae = _load(BetaVAE.from_family(vae_cfg["family"]), d / f"{dataset}_vae.pt")
    oracle = _load(OracleCNN(1, 10), d / f"{dataset}_oracle.pt")
    return classifier, vae, oracle


def load_report(dataset: str = "mnist5k", *, weights_dir=None) -> dict:
    """Return the JSON report written next to the shipped weights."""
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    return json.loads((d / f"{dataset}.json").read_text())


def train_default_models(out_dir=None, *, settings=None, device=None,
                         progress: bool = True, log=print) -> dict:
    """Train and save the embedded default's classifier, β-VAE and oracle.

    Parameters
    ----------
    out_dir : str or Path, optional
        Where to write the weights; defaults to the package's ``weights`` folder.
    settings : dict, optional
        Overrides of :data:`DEFAULT_SETTINGS` (same nested keys).
    device : optional
    progress : bool
    log : callable

    Returns
    -------
    dict
        The report that is also written to ``mnist5k.json``.
    """
    cfg = json.loads(json.dumps(DEFAULT_SETTINGS))
    for k, v in (settings or {}).items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    seed = cfg["seed"]
    data = load_mnist5k()
    report = {"dataset": "mnist5k", "settings": cfg, "torch": torch.__version__}
    t0 = time.perf_counter()

    c = cfg["classifier"]
    torch.manual_seed(seed)
    classifier = train_classifier(MnistCNN(1, 32, 10), data.X_train, data.y_train,
                                  epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"],
                                  optimizer=c["optimizer"], seed=seed, device=device,
                                  progress=progress)
    log(f"classifier trained ({time.perf_counter() - t0:.0f}s)")

    o = cfg["oracle"]
    torch.manual_seed(seed + o["seed_offset"])
    oracle = train_classifier(OracleCNN(1, 10), data.X_train, data.y_train, epochs=o["epochs"],
                              batch_size=o["batch_size"], lr=o["lr"], optimizer=o["optimizer"],
                              augment=o["augment"], seed=seed + o["seed_offset"], device=device,
                              progress=progress)
    log(f"oracle trained ({time.perf_counter() - t0:.0f}s)")

    v = cfg["vae"]
    torch.manual_seed(seed)
    vae = train_vae(BetaVAE.from_family(v["family"]), data.X_train, beta=v["beta"],
                    anneal_steps=v["anneal_steps"], epochs=v["epochs"],
                    batch_size=v["batch_size"], lr=v["lr"], augment=v["augment"], seed=seed,
                    device=device, progress=progress)
    log(f"beta-VAE trained ({time.perf_counter() - t0:.0f}s)")

    classifier.cpu(), vae.cpu(), oracle.cpu()
    report["fidelity"] = {
        split: reconstruction_fidelity(classifier, vae, X, y, device="cpu")
        for split, (X, y) in {"validation": (data.X_val, data.y_val),
                              "test": (data.X_test, data.y_test)}.items()}
    from defuse_widgets.models.inference import accuracy
    report["oracle_accuracy"] = {"validation": accuracy(oracle, data.X_val, data.y_val),
                                 "test": accuracy(oracle, data.X_test, data.y_test)}
    report["train_seconds"] = round(time.perf_counter() - t0, 1)
    for name, model in (("classifier", classifier), ("vae", vae), ("oracle", oracle)):
        save_state_dict(out / f"mnist5k_{name}.pt", model.state_dict())
    save_json(out / "mnist5k.json", report, default=None)
    return report
