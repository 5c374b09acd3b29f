"""Scoring Defuse on planted bugs: annotators with known truth and one evaluation run.

:func:`evaluate_planted` runs identification → distillation → labeling →
correction on :class:`~benchmarks.harness.planted.PlantedData` with any annotator
that has :class:`~defuse_widgets.stages.annotators.SimulatedAnnotator`'s interface,
and scores the run against the planted truth (see :mod:`.planted`).

Two stand-ins for stronger annotators are built here:

* :class:`EnsembleOracle`: averages the softmax of several oracles (the
  benchmark trains them on clean labels for all styles); wrap it in a
  ``SimulatedAnnotator``.
* :class:`KnnOracle`: a "perfect" annotator that knows the true label of every
  real image, held-out and planted ones included; it labels an image by the
  clean labels of its nearest real images in a VAE's latent space.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.harness.planted import PlantedData
from benchmarks.harness.planted_scores import bug_purity, bug_recall, region_shares
from defuse_widgets._validation import check_int, describe
from defuse_widgets.models.inference import accuracy, decode, encode_mean
from defuse_widgets.stages.label_review import label_error_regions

__all__ = ["EnsembleOracle", "KnnOracle", "evaluate_planted", "identification_precision",
           "label_review_scores",
           "rendered_accuracy", "style_purity", "trace_purity"]


class EnsembleOracle(nn.Module):
    """Average of several oracles' softmax, returned as log-probabilities.

    Parameters
    ----------
    oracles : sequence of nn.Module
        Each maps images (n, C, H, W) to logits (n, n_classes).
    """

    def __init__(self, oracles):
        super().__init__()
        if not isinstance(oracles, (list, tuple)) or not oracles:
            raise TypeError(f"oracles must be a non-empty list of modules; "
                            f"got {describe(oracles)}.")
        self.oracles = nn.ModuleList(oracles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.softmax(o(x), dim=1) for o in self.oracles]).mean(0)
        return torch.log(p.clamp_min(1e-12))


class KnnOracle(nn.Module):
    """Label images by the clean labels of their ``k`` nearest real images.

    The images are encoded with ``vae`` (latent means) and compared with the
    codes of ``X_real``. The output is the log of the neighbours' label
    shares, so a ``SimulatedAnnotator`` around it votes "none of the above"
    when no label has at least its ``none_threshold`` share.

    Parameters
    ----------
    vae : nn.Module
        With ``encode(x) -> (mu, logvar)``.
    X_real : Tensor of shape (n, C, H, W)
    y_real : Tensor or ndarray of shape (n,)
        True (clean) labels.
    n_classes : int
    k : int, default=10
    """

    def __init__(self, vae: nn.Module, X_real: torch.Tensor, y_real, n_classes: int, *,
                 k: int = 10):
        super().__init__()
        self.vae = vae
        self.k = check_int("k", k, low=1)
        self.n_classes = check_int("n_classes", n_classes, low=2)
        self.register_buffer("codes", encode_mean(vae, X_real).float().clone())
        self.register_buffer("labels", torch.as_tensor(np.asarray(y_real), dtype=torch.long))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(x)[0]
        nn_idx = torch.cdist(z, self.codes.to(z.device)).topk(self.k, largest=False).indices
        votes = nn.functional.one_hot(self.labels.to(z.device)[nn_idx], self.n_classes).float()
        return torch.log(votes.mean(1).clamp_min(1e-6))


def identification_precision(adv, annotator, vae, clean_labels: np.ndarray, *,
                             n: int = 1000, seed: int = 0) -> float:
    """Share of adversarial examples whose decode the annotator labels as the source class.

    Parameters
    ----------
    adv : AdversarialExamples
    annotator : SimulatedAnnotator or alike
    vae : nn.Module
    clean_labels : ndarray of shape (n_train,)
        Clean labels of the images ``adv.source_index`` points into.
    n : int, default=1000
        Adversarial examples sampled (all when fewer).
    seed : int, default=0

    Returns
    -------
    float
        nan when there is no adversarial example.
    """
    if len(adv) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(adv), size=min(n, len(adv)), replace=False)
    labels = annotator.label(decode(vae, torch.from_numpy(adv.codes[pick])))
    return float(np.mean(labels == clean_labels[adv.source_index[pick]]))


def _bug_sets(planted: PlantedData) -> dict:
    sets = {}
    for i, _bug in enumerate(planted.bugs):
        sets[f"bug{i}"] = planted.held_out(i)
    return sets


def evaluate_planted(planted: PlantedData, classifier: nn.Module, vae: nn.Module, annotator,
                     config=None, *, correct: bool = True, min_purity: float = 0.5,
                     style_features=None, log=print) -> dict:
    """Run Defuse on planted data and score it against the planted bugs.

    Parameters
    ----------
    planted : PlantedData
    classifier, vae : nn.Module
        The classifier under test and the β-VAE, trained on ``planted.splits``.
    annotator
        Labels the review sets, the precision sample and the baseline's
        adversarial examples (e.g. a ``SimulatedAnnotator``).
    config : DefuseConfig, optional
        The run's settings; by default ``DefuseConfig.quick(label_review=50)``.
        ``config.label_review`` > 0 adds a correction arm ``"review"`` (not in
        the paper): the annotator labels that many training images nearest each
        accepted region and each label-error region
        (:mod:`~defuse_widgets.stages.label_review`), D is relabelled with its
        answers, then corrected with the same D_f, selected on the validation
        images the review left uncontested.
    correct : bool, default=True
        False stops after labeling.
    min_purity : float, default=0.5
        A bug counts as found by a region whose purity for it reaches this.
    style_features : callable, optional
        Maps images (n, C, H, W) to the features the styles were defined with;
        adds ``style_recall``, scored with :func:`style_purity`.
    log : callable, default=print

    Returns
    -------
    dict
        ``identification`` (counts, rate, precision), ``regions`` (candidates,
        accepted, per-region purity per bug), ``recall`` (over accepted
        regions) and ``recall_candidates`` (over all candidates), and with
        ``correct`` the accuracies on each bug's held-out real images and on
        test before, after Defuse and after the baseline.
        ``recall_with_label_errors`` counts label-error regions as found bugs too.
    """
    from defuse_widgets.workflow import DefuseConfig, Session

    t0, res = time.perf_counter(), {}
    splits, clean = planted.splits, planted.clean_train_labels()
    if config is None:
        config = DefuseConfig.quick(label_review=50)
    elif not isinstance(config, DefuseConfig):
        raise TypeError(f"config must be a DefuseConfig or None; got {type(config).__name__}.")
    label_review = config.label_review
    with tempfile.TemporaryDirectory() as tmp:   # the same workflow a user runs
        session = Session(Path(tmp) / "session", config, classifier=classifier, vae=vae,
                          data=splits, annotator=annotator)
        try:
            return _evaluate(session, planted, clean, res, t0, correct=correct,
                             min_purity=min_purity, label_review=label_review,
                             style_features=style_features, log=log)
        finally:
            session.close()


def _evaluate(session, planted, clean, res, t0, *, correct, min_purity, label_review,
              style_features, log) -> dict:
    vae, annotator = session.vae, session.simulated_annotator()
    adv = session.identify()
    prec = identification_precision(adv, annotator, vae, clean, seed=session.config.seed)
    res["identification"] = dict(n_decoded=adv.n_decoded, n_kept=len(adv), rate=adv.rate,
                                 precision=prec)
    log(f"  [identify] {adv.rate:.1%} misclassified, {len(adv)} kept, precision {prec:.2f}")
    if len(adv) < 2:
        res["recall"] = bug_recall(np.zeros((0, len(planted.bugs))))
        return res
    regions = session.distill()
    decisions = session.label_simulated()
    accepted = np.array([d.is_misclassification_region for d in decisions])
    label_err = label_error_regions(regions, decisions, rho=session.config.rho)
    purity = bug_purity(regions.assignment, adv.source_index, planted.bugs, len(regions))
    res["regions"] = dict(n_candidates=len(regions), n_accepted=int(accepted.sum()),
                          n_label_error=int(label_err.sum()),
                          purity=[dict(region=k, accepted=bool(accepted[k]),
                                       label_error=bool(label_err[k]),
                                       members=int((regions.assignment == k).sum()),
                                       label=decisions[k].label,
                                       purity=[round(float(p), 3) for p in purity[k]])
                                  for k in range(len(regions))])
    res["recall"] = bug_recall(purity, accepted, min_purity=min_purity)
    res["recall_candidates"] = bug_recall(purity, None, min_purity=min_purity)
    res["recall_with_label_errors"] = bug_recall(purity, accepted | label_err,
                                                 min_purity=min_purity)
    pool_codes = encode_mean(vae, planted.X_pool).numpy()
    tp = trace_purity(regions.assignment, adv.codes, pool_codes, planted.bugs, len(regions))
    res["trace_recall"] = bug_recall(tp, accepted, min_purity=min_purity)
    res["trace_recall_candidates"] = bug_recall(tp, None, min_purity=min_purity)
    for k, row in enumerate(res["regions"]["purity"]):
        row["trace_purity"] = [round(float(p), 3) for p in tp[k]]
    if style_features is not None:
        feats = np.asarray(style_features(decode(vae, torch.from_numpy(adv.codes))))
        sp = style_purity(regions.assignment, feats, clean[adv.source_index], planted.bugs,
                          len(regions))
        res["style_recall"] = bug_recall(sp, accepted, min_purity=min_purity)
        res["style_recall_candidates"] = bug_recall(sp, None, min_purity=min_purity)
        for k, row in enumerate(res["regions"]["purity"]):
            row["style_purity"] = [round(float(p), 3) for p in sp[k]]
    log(f"  [regions] {int(accepted.sum())}/{len(regions)} accepted; bugs found "
        f"{res['recall']['found']} (candidates {res['recall_candidates']['found']}); "
        f"best purity {[round(p, 2) for p in res['recall']['best_purity']]}; style: "
        f"{res.get('style_recall', {}).get('found')} "
        f"{res.get('style_recall_candidates', {}).get('found')}; nearest-image trace: "
        f"{res['trace_recall']['found']} {res['trace_recall_candidates']['found']}; "
        f"{int(label_err.sum())} label-error regions, with them found "
        f"{res['recall_with_label_errors']['found']}")
    if correct and accepted.any():
        res["correction"] = _correct(session, planted, label_review=label_review)
        log(f"  [correct] {res['correction']['summary']}")
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _correct(session, planted, *, label_review) -> dict:
    """The correction arms of :meth:`Session.correct` (label review included), scored on the
    bugs.
    """
    bug_sets = _bug_sets(planted)
    sets = session.failure_data()
    out = {"n_finetune": len(sets["y_f"]),
           "n_baseline": 0 if sets["y_adv"] is None else int(len(sets["y_adv"]))}
    keys = ["test", "validation", "region_test", *bug_sets]
    if label_review:
        out["label_review"] = label_review_scores(session, planted)
    sweeps = session.correct(sets=sets, extra_eval_sets=bug_sets)
    for name, corr in sweeps.items():
        before = {k: float(corr.before_[k]) for k in keys}
        if out.setdefault("before", before) != before:   # the review arm's reviewed validation
            out[name + "_before"] = before
        out[name] = {"lam": corr.best_["lam"], **{k: float(corr.best_[k]) for k in keys}}
        out[name + "_tradeoff"] = [{"lam": r["lam"], **{k: float(r[k]) for k in keys}}
                                   for r in corr.results_]
    bugs = list(bug_sets)
    mean = lambda r: float(np.mean([r[k] for k in bugs]))  # noqa: E731
    out["summary"] = {s: dict(bugs=round(mean(out[s]), 3), test=round(out[s]["test"], 3))
                      for s in ("before", "defuse", "baseline", "review") if s in out}
    return out


def label_review_scores(session, planted: PlantedData) -> dict:
    """The session's label review, scored on the planted labels.

    The simulated reviewer first answers what it has not answered yet
    (:meth:`~defuse_widgets.workflow.Session.review_labels_simulated`).

    Returns
    -------
    dict
        Training images reviewed and relabelled (``n_reviewed``,
        ``n_contested``), how many of those were planted (``n_true``,
        ``precision``, ``recall``, ``per_bug``), per region, and the
        validation review's counts.
    """
    session.review_labels_simulated()
    sets = session.label_review_sets()
    reviewed = session.reviewed_labels(sets)
    changed = reviewed["train"][2]
    wrong = np.zeros(len(planted.splits.y_train), bool)
    for b in planted.bugs:
        if b.kind == "mislabelled":
            wrong[b.train_index] = True
    review = sets["train"]
    tp = int(wrong[changed].sum())
    per_region = {int(k): [int((review.region == k).sum()),
                           int(np.isin(changed, review.index[review.region == k]).sum())]
                  for k in np.unique(review.region)}
    return dict(n_reviewed=len(review), n_contested=len(changed), n_true=tp,
                precision=tp / max(len(changed), 1), recall=tp / max(int(wrong.sum()), 1),
                per_bug=[int(wrong[changed][np.isin(changed, b.train_index)].sum())
                         for b in planted.bugs],
                per_region_reviewed_contested=per_region,
                validation=dict(n_reviewed=len(sets["validation"]),
                                n_contested=len(reviewed["validation"][2])))


def style_purity(assignment: np.ndarray, features: np.ndarray, source_label: np.ndarray,
                 bugs, n_regions: int) -> np.ndarray:
    """Share of each region's members that *look like* a bug's sub-style.

    A member counts for bug ``b`` when its source class is ``b.source_class``
    and the features of its decode are nearest to ``b.centroids[b.style]``
    among that class's sub-style centroids. Unlike :func:`bug_purity`, this
    does not need the member to come from one of the few planted images.

    Parameters
    ----------
    assignment : ndarray of shape (n_examples,)
    features : ndarray of shape (n_examples, d)
        Features of each example's decode, in the space the styles were
        defined in.
    source_label : ndarray of shape (n_examples,)
    bugs : sequence of PlantedBug
    n_regions : int

    Returns
    -------
    ndarray of shape (n_regions, n_bugs)
    """
    assignment = np.asarray(assignment)
    F = np.asarray(features, dtype=np.float64)
    src = np.asarray(source_label)
    if F.ndim != 2 or len(F) != len(assignment) or src.shape != assignment.shape:
        raise ValueError(f"features must have shape ({len(assignment)}, d) and source_label "
                         f"({len(assignment)},); got {describe(features)} and "
                         f"{describe(source_label)}.")
    n_regions = check_int("n_regions", n_regions, low=0)
    in_style = np.zeros((len(F), len(bugs)), bool)
    for j, b in enumerate(bugs):
        d = np.linalg.norm(F[:, None, :] - b.centroids[None], axis=2)
        in_style[:, j] = (src == b.source_class) & (d.argmin(1) == b.style)
    return region_shares(assignment, in_style, n_regions)


def trace_purity(assignment: np.ndarray, codes: np.ndarray, reference_codes: np.ndarray,
                 bugs, n_regions: int) -> np.ndarray:
    """Share of each region's members whose nearest real image belongs to a bug's sub-style.

    Where :func:`~benchmarks.harness.planted.bug_purity` traces a member back to
    the training image it was perturbed from, this traces it to the real image
    it *lies nearest to* in latent space, among every image of the pool
    (held-out and dropped ones included: the truth is known for all of them).
    A rare bug keeps only a few training images, so few examples can start
    from one; this asks instead whether the region sits where the bug's real
    images are.

    Parameters
    ----------
    assignment : ndarray of shape (n_examples,)
    codes : ndarray of shape (n_examples, n_latent)
        Latent codes of the adversarial examples.
    reference_codes : ndarray of shape (n_pool, n_latent)
        Latent means of every pool image, in pool order, from the same VAE.
    bugs : sequence of PlantedBug
    n_regions : int

    Returns
    -------
    ndarray of shape (n_regions, n_bugs)
    """
    assignment = np.asarray(assignment)
    Z = torch.as_tensor(np.asarray(codes), dtype=torch.float32)
    R = torch.as_tensor(np.asarray(reference_codes), dtype=torch.float32)
    if Z.ndim != 2 or len(Z) != len(assignment) or R.ndim != 2 or R.shape[1] != Z.shape[1]:
        raise ValueError(f"codes must have shape ({len(assignment)}, d) and reference_codes "
                         f"(n_pool, d); got {describe(codes)} and {describe(reference_codes)}.")
    n_regions = check_int("n_regions", n_regions, low=0)
    nearest = np.concatenate([torch.cdist(Z[i:i + 4096], R).argmin(1).numpy()
                              for i in range(0, len(Z), 4096)]) if len(Z) else np.zeros(0, int)
    member = np.zeros((len(R), len(bugs)), bool)
    for j, b in enumerate(bugs):
        member[b.members, j] = True
    hit = member[nearest]
    return region_shares(assignment, hit, n_regions)


def rendered_accuracy(classifier: nn.Module, vae: nn.Module, X: torch.Tensor,
                      y: torch.Tensor) -> float:
    """Classifier accuracy on the VAE's reconstructions of images ``X`` (shape (n, C, H, W)).

    A bug that the classifier shows on real images but not on their
    reconstructions lies in detail the VAE does not render; no latent search
    with that VAE can find it.
    """
    return accuracy(classifier, decode(vae, encode_mean(vae, X)), y)
