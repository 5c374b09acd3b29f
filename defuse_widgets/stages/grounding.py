"""Regions grounded in real images: which held-out images fall in each region, and how the
classifier does on them.

A region is a Gaussian N(μ_k, Σ_k) in the β-VAE's latent space, shown so far
only through decodes. :func:`ground_regions` encodes real images (validation,
test) to their encoder means and assigns each to at most one region: image i
belongs to region k when its squared Mahalanobis distance
d²_ik = (z_i − μ_k)ᵀ (Σ_k + ridge·I)⁻¹ (z_i − μ_k) is at most the χ²_d quantile
at ``alpha`` (the ellipsoid holding ``alpha`` of the region's own mass); when
several regions hold it, the one with the highest responsibility
log π_k + log N(z_i | μ_k, Σ_k) wins, and an image inside none gets -1.

Verdict (:meth:`RegionGrounding.verdict`): pooled over the splits, a region
with at least ``min_support`` real images is ``"confirmed"`` when a one-sided
binomial test rejects, at ``level`` (5%), that the classifier is as accurate
on them as on all images of those splits (P[X ≤ n_correct], X ~ Bin(count,
overall accuracy)); otherwise ``"not_confirmed"``. Fewer images: ``"no_support"``.

Measured (shipped mnist5k models, ``DefuseConfig.quick()``: 26 regions, 10
latent dimensions, 500 validation and 1,000 test images). alpha=0.99 gives a
region to 24 validation (4.8%) and 51 test (5.1%) images, 5 of the 55
misclassified ones among them; 5 regions reach ``min_support`` (58 of their 63
images right, 92% against 96.3% overall: none ``confirmed``), 21 get
``no_support``. alpha=0.9: 8 and 21 images; 0.999: 51 and 91. A hard argmax of
the responsibilities, without the cut, gives every image a region although the
median image lies at d² ≈ 70 from the nearest one, far past χ²_10(0.99) = 23.2:
it would ground regions in images that are not in them. Of the fitted
adversarial codes, 94.7% fall inside a region at 0.99.
This module imports no UI code.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from defuse_widgets._validation import check_codes, check_int, check_labels, check_number, describe
from defuse_widgets.stages.regions import Regions

__all__ = ["VERDICTS", "VERDICT_WORDS", "RegionGrounding", "assign_to_regions", "ground_regions"]

#: The possible outcomes of :meth:`RegionGrounding.verdict`.
VERDICTS = ("confirmed", "not_confirmed", "no_support")
#: How each verdict reads everywhere (dashboard, region table, report): a short form for
#: a table cell and a long one for a badge or a sentence.
VERDICT_WORDS = {"confirmed": ("bug confirmed", "bug confirmed on real data"),
                 "not_confirmed": ("not confirmed", "not confirmed on real data"),
                 "no_support": ("too few real images", "too few real images to judge")}


def assign_to_regions(regions: Regions, codes, *, alpha: float = 0.99,
                      ridge: float = 1e-6) -> np.ndarray:
    """Region of each code: inside its χ² ellipsoid, highest responsibility first.

    Parameters
    ----------
    regions : Regions
    codes : ndarray of shape (n_samples, n_latent)
    alpha : float in (0, 1), default=0.99
        χ² level: a code is inside region k when d² ≤ ``chi2.ppf(alpha, n_latent)``.
    ridge : float >= 0, default=1e-6
        Added to each Σ_k's diagonal before inverting it.

    Returns
    -------
    ndarray of shape (n_samples,), int64
        Region index, or -1 when no region holds the code.
    """
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions; got {type(regions).__name__}.")
    z = check_codes("codes", codes, n_latent=regions.n_latent, min_rows=0)
    alpha = check_number("alpha", alpha, low=0, high=1, low_inclusive=False,
                         high_inclusive=False)
    ridge = check_number("ridge", ridge, low=0)
    d = regions.n_latent
    score = np.full((len(z), len(regions)), -np.inf)
    cut = stats.chi2.ppf(alpha, d)
    for k in range(len(regions)):
        cov = np.asarray(regions.covariances[k], float) + ridge * np.eye(d)
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"regions.covariances[{k}] must be positive definite after a "
                             f"ridge of {ridge:g}; it is not (raise ridge).") from exc
        y = np.linalg.solve(L, (z - regions.means[k]).T)
        d2 = (y ** 2).sum(0)
        log_density = -0.5 * (d2 + 2 * np.log(np.diag(L)).sum() + d * np.log(2 * np.pi))
        weight = max(float(regions.weights[k]), np.finfo(float).tiny)
        score[:, k] = np.where(d2 <= cut, np.log(weight) + log_density, -np.inf)
    if not len(regions):
        return np.full(len(z), -1, dtype=np.int64)
    best = score.argmax(1)
    return np.where(np.isfinite(score[np.arange(len(z)), best]), best, -1).astype(np.int64)


@dataclass(frozen=True)
class RegionGrounding:
    """Real images per region and per split, and the classifier's accuracy on them.

    Attributes
    ----------
    n_regions : int
    assignment : dict of str -> ndarray of shape (n_split,), int64
        Per split ("validation", "test"), each image's region or -1.
    correct : dict of str -> ndarray of shape (n_split,), bool
        Per split, whether the classifier is right on each image.
    alpha, ridge : float
        The assignment's χ² level and covariance ridge.
    min_support : int
        Real images a region needs before a verdict other than ``"no_support"``.
    level : float
        The one-sided binomial test's level.
    """

    n_regions: int
    assignment: dict
    correct: dict
    alpha: float = 0.99
    ridge: float = 1e-6
    min_support: int = 5
    level: float = 0.05

    @property
    def splits(self) -> tuple:
        """The split names, in order."""
        return tuple(self.assignment)

    def _pick(self, split):
        names = self.splits if split is None else (split,)
        if any(s not in self.assignment for s in names):
            raise ValueError(f"split must be one of {list(self.splits)} or None; got {split!r}.")
        a = np.concatenate([self.assignment[s] for s in names])
        return a, np.concatenate([self.correct[s] for s in names]).astype(bool)

    def count(self, k: int, split: str | None = None) -> int:
        """Real images of ``split`` (None: every split) in region ``k``."""
        a, _ = self._pick(split)
        return int((a == check_int("region", k, low=0, high=self.n_regions - 1)).sum())

    def n_correct(self, k: int, split: str | None = None) -> int:
        """Of those, how many the classifier gets right."""
        a, ok = self._pick(split)
        return int(ok[a == check_int("region", k, low=0, high=self.n_regions - 1)].sum())

    def accuracy(self, k: int, split: str | None = None) -> float | None:
        """The classifier's accuracy on region ``k``'s real images; None when it has none."""
        n = self.count(k, split)
        return self.n_correct(k, split) / n if n else None

    def overall_accuracy(self, split: str | None = None) -> float | None:
        """The classifier's accuracy on every image of ``split`` (None: all splits)."""
        _, ok = self._pick(split)
        return float(ok.mean()) if len(ok) else None

    def p_value(self, k: int, split: str | None = None) -> float | None:
        """P[X ≤ n_correct], X ~ Bin(count, overall accuracy); None without real images."""
        n, p0 = self.count(k, split), self.overall_accuracy(split)
        return float(stats.binom.cdf(self.n_correct(k, split), n, p0)) if n else None

    def verdict(self, k: int, split: str | None = None) -> str:
        """``"confirmed"``, ``"not_confirmed"`` or ``"no_support"`` (see the module notes)."""
        if self.count(k, split) < self.min_support:
            return "no_support"
        return "confirmed" if self.p_value(k, split) < self.level else "not_confirmed"

    def sentence(self, k: int, split: str | None = None) -> str:
        """The verdict of region ``k`` in plain English."""
        n, verdict = self.count(k, split), self.verdict(k, split)
        where = " or ".join(self.splits if split is None else (split,))
        if verdict == "no_support":
            lead = (f"No real {where} image falls in this region" if n == 0 else
                    f"Only {n} real {where} image{'s' * (n > 1)} fall{'s' * (n == 1)} in this "
                    f"region, fewer than the {self.min_support} needed to judge it")
            return (f"{lead}: it is either a rare case the data barely holds or an artefact "
                    "of the generator; real data cannot tell the two apart.")
        acc, p0, p = self.accuracy(k, split), self.overall_accuracy(split), self.p_value(k, split)
        head = (f"{n} real {where} images fall in this region and the classifier gets "
                f"{acc:.0%} of them right, against {p0:.0%} overall")
        if verdict == "confirmed":
            return (f"{head} (one-sided binomial test p = {p:.2g} < {self.level:g}): a bug "
                    "confirmed on real data.")
        return (f"{head} (p = {p:.2g}): real data does not confirm a bug here; the region may "
                "still hold failures the data lacks.")

    def summary(self) -> list:
        """One JSON-safe dict per region: count, n_correct, accuracy per split, verdict."""
        return [dict(region=k, **{s: dict(count=self.count(k, s), n_correct=self.n_correct(k, s),
                                          accuracy=self.accuracy(k, s)) for s in self.splits},
                     verdict=self.verdict(k), sentence=self.sentence(k))
                for k in range(self.n_regions)]

    def to_dict(self) -> dict:
        """A JSON-safe dict (no NaN; accuracy None without images), read by :meth:`from_dict`."""
        return dict(n_regions=self.n_regions, alpha=self.alpha, ridge=self.ridge,
                    min_support=self.min_support, level=self.level,
                    overall_accuracy={s: self.overall_accuracy(s) for s in self.splits},
                    splits={s: dict(assignment=self.assignment[s].tolist(),
                                    correct=self.correct[s].astype(int).tolist())
                            for s in self.splits},
                    regions=self.summary())

    @classmethod
    def from_dict(cls, data: dict) -> "RegionGrounding":
        """Inverse of :meth:`to_dict`; inconsistent data raises ValueError naming the field."""
        if not isinstance(data, dict) or not isinstance(data.get("splits"), dict):
            raise ValueError(f"grounding must be a dict with 'splits'; got {describe(data)}.")
        k = check_int("n_regions", data.get("n_regions"), low=0)
        assignment, correct = {}, {}
        for s, rec in data["splits"].items():
            a = np.asarray(rec["assignment"], dtype=np.int64).reshape(-1)
            ok = np.asarray(rec["correct"], dtype=np.int64).reshape(-1)
            if len(ok) != len(a) or (len(a) and (a.min() < -1 or a.max() >= k)):
                raise ValueError(f"splits[{s!r}] must hold one correct flag per image and "
                                 f"regions in [-1, {k - 1}]; it does not.")
            assignment[s], correct[s] = a, ok.astype(bool)
        return cls(k, assignment, correct, alpha=float(data["alpha"]),
                   ridge=float(data["ridge"]), min_support=int(data["min_support"]),
                   level=float(data["level"]))


def ground_regions(regions: Regions, splits: dict, *, alpha: float = 0.99, ridge: float = 1e-6,
                   min_support: int = 5, level: float = 0.05) -> RegionGrounding:
    """Assign real images to regions and record whether the classifier is right on them.

    Parameters
    ----------
    regions : Regions
    splits : dict of str -> (codes, y, y_pred)
        Per split name (e.g. "validation", "test"): encoder means of its images,
        ndarray of shape (n, n_latent); true labels, shape (n,); the classifier's
        predictions, shape (n,).
    alpha, ridge
        As in :func:`assign_to_regions`.
    min_support : int >= 1, default=5
    level : float in (0, 1), default=0.05

    Returns
    -------
    RegionGrounding

    Examples
    --------
    >>> X, y = data.X_val, data.y_val  # doctest: +SKIP
    >>> z = encode_mean(vae, X).numpy()  # doctest: +SKIP
    >>> g = ground_regions(regions, {"validation": (z, y, predict(clf, X))})  # doctest: +SKIP
    >>> g.verdict(0), g.sentence(0)  # doctest: +SKIP
    """
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions; got {type(regions).__name__}.")
    if not isinstance(splits, dict) or not splits:
        raise TypeError(f"splits must be a non-empty dict of name -> (codes, y, y_pred); "
                        f"got {describe(splits)}.")
    min_support = check_int("min_support", min_support, low=1)
    level = check_number("level", level, low=0, high=1, low_inclusive=False,
                         high_inclusive=False)
    assignment, correct = {}, {}
    for name, triple in splits.items():
        if not isinstance(name, str) or not isinstance(triple, (tuple, list)) or len(triple) != 3:
            raise TypeError(f"splits[{name!r}] must be a (codes, y, y_pred) tuple keyed by a "
                            f"str; got {describe(triple)}.")
        codes, y, y_pred = triple
        z = check_codes(f"splits[{name!r}] codes", codes, n_latent=regions.n_latent,
                        min_rows=0)
        kw = dict(n_samples=len(z), n_classes=regions.n_classes)
        y = check_labels(f"splits[{name!r}] y", y, **kw).numpy()
        y_pred = check_labels(f"splits[{name!r}] y_pred", y_pred, **kw).numpy()
        assignment[name] = assign_to_regions(regions, z, alpha=alpha, ridge=ridge)
        correct[name] = y == y_pred
    return RegionGrounding(len(regions), assignment, correct, alpha=float(alpha),
                           ridge=float(ridge), min_support=min_support, level=level)
