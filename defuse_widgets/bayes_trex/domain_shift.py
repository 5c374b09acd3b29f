"""Bayes-TrEx domain-shift overconfidence check (the paper's §4.6, with embedded data).

The paper trains a classifier on SVHN, samples high-confidence level sets with
an MNIST generator and has people relabel the draws: on those confident draws
the classifier is right far less often than its confidence says (80 % for the
baseline, 72 % for ADDA, at an average confidence over 0.99). Neither data set
can be downloaded here, so the embedded substitute is

* source domain: MNIST-5k (the classifier under test, trained on it);
* shifted domain: scikit-learn's 8×8 digits upsampled to the classifier's
  input size (:func:`upsampled_digits`): blocky, thick, frame-filling digits.

:class:`DomainShiftCheck` samples ``P_c = 1`` for every class with a
generator of the shifted domain (and, for comparison, of the source domain),
has an annotator label the confident draws, and reports the share the
annotator labels otherwise, the histograms of target-class confidence and,
given real shifted images, the classifier's accuracy on them.

This module imports no UI code.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from defuse_widgets._validation import (
    check_images,
    check_int,
    check_labels,
    check_module,
    check_number,
    check_seed,
    describe,
)
from defuse_widgets.bayes_trex.evaluation import confident_failures
from defuse_widgets.bayes_trex.level_sets import LevelSetSampler, Target
from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.data.splits import DataSplits, to_splits
from defuse_widgets.models.inference import predict_logits
from defuse_widgets.models.probes import check_logits, latent_size

__all__ = ["upsampled_digits", "DomainShiftCheck"]


def upsampled_digits(*, size: int = 32, seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> DataSplits:
    """scikit-learn's 1,797 8×8 digits, bilinearly upsampled to 1×size×size in [0, 1].

    Parameters
    ----------
    size : int, default=32
        Output side; 32 matches the MNIST-5k images (28×28 padded to 32×32).
        The digits fill the whole frame, unlike MNIST's centred 20×20 strokes:
        that is part of the shift.
    seed : int, default=0
        Seed of the stratified split.
    fractions : tuple of 3 floats, default=(0.7, 0.1, 0.2)

    Returns
    -------
    DataSplits
        Named ``"digits-upsampled"``, images of shape (n, 1, size, size).
    """
    from sklearn.datasets import load_digits

    size = check_int("size", size, low=8)
    d = load_digits()
    X = torch.from_numpy((d.images[:, None] / 16.0).astype(np.float32))
    X = torch.nn.functional.interpolate(X, size=(size, size), mode="bilinear",
                                        align_corners=False).clamp(0, 1)
    return to_splits("digits-upsampled", X.numpy(), d.target.astype(np.int64),
                     tuple(str(i) for i in range(10)), fractions=fractions,
                     seed=check_seed("seed", seed))


def _domain_result(sampler, annotator, classes, min_confidence, max_images, edges, seed) -> dict:
    per_class, conf = {}, []
    tot = dict(n_draws=0, n_confident=0, n_annotated=0, n_confirmed=0, n_other_class=0)
    weighted_conf = 0.0
    for c in classes:
        r = confident_failures(sampler, annotator, target_class=c, min_confidence=min_confidence,
                               max_images=max_images, seed=seed)
        for k in tot:
            tot[k] += r[k]
        if r["n_confident"]:
            weighted_conf += r["mean_confidence"] * r["n_confident"]
        per_class[c] = {k: r[k] for k in ("n_confident", "n_annotated", "n_confirmed",
                                          "annotator_labels")}
        conf.append(sampler.samples(Target.high_confidence(c))[1][:, c])
    conf = np.concatenate(conf)
    n = tot["n_annotated"]
    return dict(tot, per_class=per_class,
                overconfident_share=tot["n_confirmed"] / n if n else None,
                other_class_share=tot["n_other_class"] / n if n else None,
                mean_confidence=weighted_conf / tot["n_confident"] if tot["n_confident"] else None,
                confident_share=tot["n_confident"] / tot["n_draws"],
                histogram=np.histogram(conf, edges)[0].tolist())


class DomainShiftCheck(BaseEstimator):
    """High-confidence level sets of a classifier in a shifted domain, labelled by an annotator.

    Parameters
    ----------
    classes : sequence of int, optional
        Classes c whose ``P_c = 1`` level sets are sampled; all by default.
    n_chains : int, default=8
        Chains per class and domain.
    n_warmup, n_samples : int, default=150, 50
    sigma : float, default=0.05
    min_confidence : float, default=0.9
        A draw is confident when ``P_c >= min_confidence``; the annotator
        labels the confident draws.
    max_images : int, default=2000
        Confident draws per class sent to the annotator at most.
    n_bins : int, default=10
        Equal-width bins of [0, 1] for the confidence histograms.
    device : str or torch.device, optional
    seed : int, default=0

    Attributes
    ----------
    shifted_, source_ : LevelSetSampler or None
        The fitted samplers (``source_`` only when a source decoder was given).
    results_ : dict
        ``"shifted"`` and, when sampled, ``"source"``: ``n_draws``,
        ``n_confident``, ``n_annotated``, ``n_confirmed`` (annotator says not
        c), ``n_other_class`` (of those, another class rather than none of the
        above), ``overconfident_share`` = n_confirmed / n_annotated (None
        without confident draws), ``other_class_share``, ``mean_confidence``
        of the confident draws, ``confident_share``, ``histogram`` (counts of
        the target-class confidence of every draw, shape (n_bins,)) and
        ``per_class``. ``"real_shifted"`` when real shifted images were given:
        ``n_images``, ``accuracy``, ``n_confident``, ``confident_error_share``,
        ``mean_confidence`` and ``histogram`` of the top confidence.
    bin_edges_ : ndarray of shape (n_bins + 1,)

    Examples
    --------
    >>> check = DomainShiftCheck(n_chains=4).fit(clf, vae_digits, digits_annotator,
    ...     source_decoder=vae, source_annotator=oracle_annotator)  # doctest: +SKIP
    >>> check.results_["shifted"]["overconfident_share"]              # doctest: +SKIP
    """

    def __init__(self, *, classes=None, n_chains: int = 8, n_warmup: int = 150,
                 n_samples: int = 50, sigma: float = 0.05, min_confidence: float = 0.9,
                 max_images: int = 2000, n_bins: int = 10, device=None, seed: int = 0):
        self.classes = classes
        self.n_chains = n_chains
        self.n_warmup = n_warmup
        self.n_samples = n_samples
        self.sigma = sigma
        self.min_confidence = min_confidence
        self.max_images = max_images
        self.n_bins = n_bins
        self.device = device
        self.seed = seed

    def fit(self, classifier: nn.Module, shifted_decoder: nn.Module, shifted_annotator, *,
            source_decoder: nn.Module | None = None, source_annotator=None,
            X_shifted=None, y_shifted=None,
            callback: ProgressCallback | None = None) -> "DomainShiftCheck":
        """Sample, annotate and summarise both domains.

        Parameters
        ----------
        classifier : nn.Module
            Trained on the source domain; images (n, C, H, W) -> logits (n, n_classes).
        shifted_decoder : BetaVAE or nn.Module
            Generator of the shifted domain (codes -> images like the classifier's).
        shifted_annotator : object with ``label(images) -> ndarray (n,)``
            Labels shifted-domain images, e.g. a
            :class:`~defuse_widgets.stages.annotators.SimulatedAnnotator` whose
            oracle was trained on labelled shifted-domain images.
        source_decoder, source_annotator : optional
            The same for the source domain, for the in-domain comparison;
            both or neither.
        X_shifted : Tensor of shape (n, C, H, W), optional
        y_shifted : Tensor of shape (n,), optional
            Real labelled shifted-domain images (e.g. a test split).
        callback : ProgressCallback, optional
            Passed to each :meth:`LevelSetSampler.fit`.

        Returns
        -------
        self
        """
        check_module("classifier", classifier)
        check_module("shifted_decoder", shifted_decoder)
        for name, annot in (("shifted_annotator", shifted_annotator),
                            ("source_annotator", source_annotator)):
            if (annot is not None or name == "shifted_annotator") and not callable(
                    getattr(annot, "label", None)):
                raise TypeError(f"{name} must have a label(images) method; got {describe(annot)}.")
        if (source_decoder is None) != (source_annotator is None):
            raise ValueError("source_decoder and source_annotator must be given together; got "
                             f"{describe(source_decoder)} and {describe(source_annotator)}.")
        min_conf = check_number("min_confidence", self.min_confidence, low=0, high=1)
        max_images = check_int("max_images", self.max_images, low=1)
        n_bins = check_int("n_bins", self.n_bins, low=1)
        seed = check_seed("seed", self.seed)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        params = dict(n_chains=self.n_chains, n_warmup=self.n_warmup, n_samples=self.n_samples,
                      sigma=self.sigma, device=self.device, seed=seed)
        n_classes = None
        results = {}
        for name, decoder, annot in (("shifted", shifted_decoder, shifted_annotator),
                                     ("source", source_decoder, source_annotator)):
            if decoder is None:
                continue
            if n_classes is None:
                n_classes = self._n_classes(classifier, decoder)
                classes = self._classes(n_classes)
            ls = LevelSetSampler(targets=[Target.high_confidence(c) for c in classes], **params)
            ls.fit(classifier, decoder, callback=callback)
            setattr(self, f"{name}_", ls)
            results[name] = _domain_result(ls, annot, classes, min_conf, max_images, edges, seed)
        if source_decoder is None:
            self.source_ = None
        if X_shifted is not None or y_shifted is not None:
            results["real_shifted"] = self._real(classifier, X_shifted, y_shifted, min_conf, edges)
        self.results_ = results
        self.bin_edges_ = edges
        return self

    def _classes(self, n_classes: int) -> list:
        if self.classes is None:
            return list(range(n_classes))
        classes = [check_int("classes", c, low=0, high=n_classes - 1)
                   for c in np.atleast_1d(self.classes).tolist()]
        if not classes:
            raise ValueError("classes must name at least one class; got an empty sequence.")
        return classes

    @torch.no_grad()
    def _n_classes(self, classifier, decoder) -> int:
        n_latent = check_int("decoder.n_latent", latent_size(decoder), low=1)
        decode_fn = decoder.decode if hasattr(decoder, "decode") else decoder
        param = next(decoder.parameters(), None)
        z = torch.zeros(1, n_latent, device=param.device if param is not None else "cpu")
        x = decode_fn(z)
        return int(check_logits(classifier.to(x.device)(x)).shape[1])

    def _real(self, classifier, X, y, min_conf, edges) -> dict:
        if X is None or y is None:
            raise ValueError("X_shifted and y_shifted must be given together; got "
                             f"{describe(X)} and {describe(y)}.")
        X = check_images("X_shifted", X)
        y = check_labels("y_shifted", y, n_samples=len(X)).numpy()
        param = next(classifier.parameters(), None)
        probs = torch.softmax(predict_logits(classifier, X, device=param.device if param is not None
                                             else "cpu"), 1).numpy()
        top, pred = probs.max(1), probs.argmax(1)
        confident = top >= min_conf
        return {"n_images": int(len(X)), "accuracy": float((pred == y).mean()),
                "n_confident": int(confident.sum()),
                "confident_error_share": (float((pred[confident] != y[confident]).mean())
                                          if confident.any() else None),
                "mean_confidence": float(top.mean()),
                "histogram": np.histogram(top, edges)[0].tolist()}
