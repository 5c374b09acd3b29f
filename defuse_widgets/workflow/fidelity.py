"""The fidelity gate: is the β-VAE good enough for its decodes to mean something?

Defuse's adversarial examples are decodes of the β-VAE. When the classifier
already fails on plain reconstructions of real images, most "adversarial
examples" are reconstruction artefacts, not model failures. The gate measures
the classifier's accuracy on validation images and on their reconstructions
(the encoder mean, decoded), overall and per class, and the **fidelity**: the
share of the classifier's accuracy that survives reconstruction,

    fidelity = accuracy on reconstructions / accuracy on images.

Below :data:`FIDELITY_WARNING` (0.9: reconstructions lose more than a tenth of
the classifier's accuracy) every entry point warns. The shipped MNIST-5k
β-VAE keeps 0.97 of it. This module imports no UI code.
"""
from __future__ import annotations

import numpy as np
import torch

from defuse_widgets._validation import check_number

__all__ = ["FIDELITY_WARNING", "FidelityError", "fidelity_report", "fidelity_text",
           "fidelity_warning"]

#: Fidelity below which the CLI, the dashboard and the report warn.
FIDELITY_WARNING = 0.9


class FidelityError(ValueError):
    """The generator's fidelity is below the ``min_fidelity`` a run asked for."""


def fidelity_report(classifier, vae, X: torch.Tensor, y: torch.Tensor, class_names, *,
                    split: str = "validation", device="cpu") -> dict:
    """Classifier accuracy on images and on their reconstructions, overall and per class.

    Parameters
    ----------
    classifier, vae : nn.Module
    X : Tensor of shape (n, C, H, W), float in [0, 1] or uint8
    y : Tensor of shape (n,)
    class_names : sequence of str
    split : str
        Which split ``X`` is, for the record.

    Returns
    -------
    dict
        ``split``, ``n``, ``accuracy_images``, ``accuracy_reconstructions``,
        ``fidelity`` (their ratio), ``active_dims`` and ``per_class`` (a list of
        ``{"class", "n", "accuracy_images", "accuracy_reconstructions"}``).
    """
    from defuse_widgets.models.inference import decode, encode_mean, predict

    mu = encode_mean(vae, X, device=device)
    recon = decode(vae, mu, device=device)
    y = np.asarray(torch.as_tensor(y))
    right_img = predict(classifier, X, device=device).numpy() == y
    right_rec = predict(classifier, recon, device=device).numpy() == y
    per_class = [{"class": str(name), "n": int((y == c).sum()),
                  "accuracy_images": _mean(right_img[y == c]),
                  "accuracy_reconstructions": _mean(right_rec[y == c])}
                 for c, name in enumerate(class_names)]
    acc_img, acc_rec = _mean(right_img), _mean(right_rec)
    return {"split": split, "n": int(len(y)), "accuracy_images": acc_img,
            "accuracy_reconstructions": acc_rec,
            "fidelity": acc_rec / acc_img if acc_img else 0.0,
            "active_dims": int((mu.var(0) > 0.01).sum()), "per_class": per_class}


def _mean(right: np.ndarray) -> float:
    return float(right.mean()) if len(right) else float("nan")


def fidelity_warning(report: dict, threshold: float = FIDELITY_WARNING) -> str | None:
    """The sentence every entry point shows when ``report``'s fidelity is below ``threshold``."""
    if report["fidelity"] >= threshold:
        return None
    worst = sorted(report["per_class"], key=lambda c: c["accuracy_reconstructions"])[:3]
    names = ", ".join(f"{c['class']} {c['accuracy_reconstructions']:.0%}" for c in worst)
    return (f"Low generator fidelity: the classifier is right on {report['accuracy_images']:.1%} "
            f"of the {report['split']} images but on only "
            f"{report['accuracy_reconstructions']:.1%} of their β-VAE reconstructions "
            f"(fidelity {report['fidelity']:.2f}, below {threshold:g}; worst classes: {names}). "
            "The adversarial examples will be mostly reconstruction artefacts, not model "
            "failures: train the β-VAE longer or larger (defuse-widgets train-vae) before "
            "trusting the regions.")


def check_fidelity(report: dict, min_fidelity: float | None) -> None:
    """Raise :class:`FidelityError` when the fidelity is below ``min_fidelity`` (None: never)."""
    if min_fidelity is None:
        return
    min_fidelity = check_number("min_fidelity", min_fidelity, low=0, high=1)
    if report["fidelity"] < min_fidelity:
        raise FidelityError(
            f"min_fidelity is {min_fidelity:g} but the generator's fidelity is "
            f"{report['fidelity']:.3f} (classifier accuracy {report['accuracy_images']:.3f} on "
            f"{report['split']} images, {report['accuracy_reconstructions']:.3f} on their "
            "reconstructions); stopped before identification. Train a better β-VAE, or lower "
            "--min-fidelity.")


def fidelity_text(report: dict) -> str:
    """The fidelity report as a small table (one line per class)."""
    lines = [f"Generator fidelity on {report['n']} {report['split']} images: classifier "
             f"accuracy {report['accuracy_images']:.3f} on images, "
             f"{report['accuracy_reconstructions']:.3f} on reconstructions "
             f"(fidelity {report['fidelity']:.3f}; {report['active_dims']} active latent dims)",
             f"  {'class':<20}{'n':>6}{'images':>10}{'recon.':>10}"]
    for c in report["per_class"]:
        lines.append(f"  {c['class'][:19]:<20}{c['n']:>6}{c['accuracy_images']:>10.3f}"
                     f"{c['accuracy_reconstructions']:>10.3f}")
    return "\n".join(lines)
