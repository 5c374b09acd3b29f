"""A 2-D t-SNE map of the latent space (paper Fig. 2), fitted with openTSNE.

The map is fitted once on the training codes (encoder means of the training
images). Unrestricted adversarial examples are then placed into the same map
with openTSNE's ``TSNEEmbedding.transform``, so adding codes never recomputes
the map. ``joint=True`` instead embeds training and adversarial codes together,
as the paper does for Fig. 2 (Appendix B.5: perplexity 30).

Maps are cached as plain arrays (``np.savez``, no pickles): the 2-D
coordinates and the codes they were fitted on. Loading rebuilds the openTSNE
affinity index from the saved codes the first time :meth:`LatentMap.transform`
needs it, so a cached map is displayed without any t-SNE work.
"""
from __future__ import annotations

import json
import os

import numpy as np

# openTSNE (and the sklearn modules it uses) load at import time, not inside the
# background thread that fits the map while another thread may import sklearn.
from openTSNE import TSNE, TSNEEmbedding
from openTSNE.affinity import PerplexityBasedNN

from defuse_widgets._validation import check_codes, check_int, check_number
from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.storage.persistence import SessionFormatError, load_npz, save_npz

__all__ = ["LatentMap", "fit_or_load"]


_FORMAT_VERSION = 1


class LatentMap:
    """t-SNE map of latent codes with out-of-sample placement of new codes.

    Parameters
    ----------
    perplexity : float, default=30
        t-SNE perplexity (paper: 30). Clamped to ``(n - 1) / 3`` for fewer
        than 91 fitted codes.
    joint : bool, default=False
        When True, :meth:`fit` embeds ``train_codes`` and ``codes`` jointly
        (paper Fig. 2); otherwise ``codes`` are placed with
        :meth:`transform` into the map of ``train_codes`` alone.
    n_iter : int, default=500
        Iterations after the early-exaggeration phase.
    early_exaggeration_iter : int, default=250
    seed : int, default=0
    n_jobs : int, default=1
        Threads for openTSNE (scikit-learn convention, -1 for all cores).

    Attributes
    ----------
    embedding_ : ndarray of shape (n_train, 2)
        Map coordinates of the training codes, centred on the origin.
    codes_embedding_ : ndarray of shape (n_codes, 2) or None
        Map coordinates of the ``codes`` given to :meth:`fit`.
    reference_codes_ : ndarray of shape (n_reference, n_latent)
        Codes the map's affinities were computed on: the training codes, then
        ``codes`` when ``joint``.
    reference_embedding_ : ndarray of shape (n_reference, 2)
    codes_ : ndarray of shape (n_codes, n_latent) or None
        The ``codes`` given to :meth:`fit`.
    perplexity_ : float
        The perplexity actually used after clamping.
    interrupted_ : bool
        True when a callback stopped the optimisation early.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> m = LatentMap(n_iter=50, early_exaggeration_iter=25).fit(rng.normal(size=(60, 4)))
    >>> m.embedding_.shape, m.transform(rng.normal(size=(3, 4))).shape
    ((60, 2), (3, 2))
    """

    def __init__(self, *, perplexity: float = 30.0, joint: bool = False, n_iter: int = 500,
                 early_exaggeration_iter: int = 250, seed: int = 0,
                 n_jobs: int = 1) -> None:
        self.perplexity = perplexity
        self.joint = joint
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.seed = seed
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    def fit(self, train_codes, codes=None, *, callback: ProgressCallback | None = None
            ) -> "LatentMap":
        """Fit the map on ``train_codes`` and place ``codes`` into it.

        Parameters
        ----------
        train_codes : ndarray of shape (n_train, n_latent)
            Encoder means of the training images; at least 4 rows.
        codes : ndarray of shape (n_codes, n_latent), optional
            Adversarial codes; embedded jointly when ``joint``, else placed
            with :meth:`transform`.
        callback : callable, optional
            ``callback(stage, iteration, n_iter)`` is called with stage
            ``"affinities"``, ``"optimize"`` (every 25 iterations) and
            ``"transform"``. Returning True during ``"optimize"`` stops the
            optimisation; the map then holds the embedding reached so far.

        Returns
        -------
        self : LatentMap
        """
        self._check_params()
        train = check_codes("train_codes", train_codes, min_rows=4)
        extra = None if codes is None else check_codes("codes", codes, n_latent=train.shape[1])
        if self.joint and extra is None:
            raise ValueError("codes must be given when joint=True; got None.")
        reference = np.vstack([train, extra]) if self.joint else train
        notify = callback or (lambda *a: None)


        n_total = self.n_iter + self.early_exaggeration_iter
        notify("affinities", 0, n_total)
        self.perplexity_ = min(float(self.perplexity), (len(reference) - 1) / 3)
        affinities = PerplexityBasedNN(reference, perplexity=self.perplexity_,
                                       n_jobs=self.n_jobs, random_state=self.seed)
        done = [0]

        def _progress(iteration, error, embedding):
            done[0] += 25
            return bool(notify("optimize", min(done[0], n_total), n_total))

        tsne = TSNE(n_iter=self.n_iter, early_exaggeration_iter=self.early_exaggeration_iter,
                    n_jobs=self.n_jobs, random_state=self.seed,
                    callbacks=_progress, callbacks_every_iters=25)
        result = tsne.fit(reference, affinities=affinities)
        self.interrupted_ = done[0] < n_total
        emb = np.array(result, dtype=np.float64)
        emb -= (emb.max(0) + emb.min(0)) / 2   # transform() assumes a centred map
        self._set_fitted(reference, emb, len(train), affinities)
        self.codes_ = extra
        if extra is None:
            self.codes_embedding_ = None
        elif self.joint:
            self.codes_embedding_ = emb[len(train):]
        else:
            notify("transform", 0, len(extra))
            self.codes_embedding_ = self.transform(extra)
        return self

    def fit_transform(self, train_codes, codes=None, **kw) -> np.ndarray:
        """Fit and return ``embedding_``, shape (n_train, 2)."""
        return self.fit(train_codes, codes, **kw).embedding_

    def transform(self, codes) -> np.ndarray:
        """Place new codes into the fitted map without changing it.

        Parameters
        ----------
        codes : ndarray of shape (m, n_latent)

        Returns
        -------
        ndarray of shape (m, 2)
        """
        self._check_fitted()
        z = check_codes("codes", codes, n_latent=self.reference_codes_.shape[1])

        # A fresh TSNEEmbedding each call: transform() re-centres its reference in
        # place, and the fitted one still carries the progress callback.
        reference = TSNEEmbedding(self.reference_embedding_, self._affinities(),
                                  n_jobs=self.n_jobs, random_state=self.seed)
        n_ref = len(self.reference_codes_)
        placed = reference.transform(z, perplexity=min(5.0, n_ref / 3), k=min(25, n_ref))
        return np.array(placed, dtype=np.float64)

    def place(self, codes) -> np.ndarray:
        """Map coordinates of ``codes``, shape (m, 2).

        ``codes_embedding_`` when ``codes`` are exactly the codes given to
        :meth:`fit` (no work), otherwise :meth:`transform`.
        """
        self._check_fitted()
        z = check_codes("codes", codes, n_latent=self.reference_codes_.shape[1])
        if self.codes_ is not None and np.array_equal(self.codes_, z):
            return self.codes_embedding_
        return self.transform(z)

    # ---------------------------------------------------------------- cache
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted map to ``path`` with ``np.savez`` (arrays only, no pickles)."""
        self._check_fitted()
        params = dict(self.get_params(), perplexity_=self.perplexity_,
                      interrupted_=self.interrupted_, version=_FORMAT_VERSION)
        no_codes = np.zeros((0, self.reference_codes_.shape[1]))
        save_npz(path, dict(reference_codes=self.reference_codes_,
                     reference_embedding=self.reference_embedding_,
                     n_train=np.int64(self.n_train_),
                     codes=no_codes if self.codes_ is None else self.codes_,
                     codes_embedding=(np.zeros((0, 2)) if self.codes_embedding_ is None
                                      else self.codes_embedding_),
                     has_codes=np.bool_(self.codes_ is not None),
                     params=np.array(json.dumps(params))))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatentMap":
        """Read a map written by :meth:`save`; no t-SNE is run.

        The openTSNE affinity index needed by :meth:`transform` is rebuilt from
        the saved codes on the first call to :meth:`transform`.

        Raises
        ------
        SessionFormatError
            When the file is missing, truncated, holds pickles, is of another
            format version or its arrays do not fit together.
        """
        data = load_npz(path, required=("reference_codes", "reference_embedding", "n_train",
                                        "codes", "codes_embedding", "has_codes", "params"))
        try:
            params = json.loads(str(data["params"]))
            if params.pop("version", None) != _FORMAT_VERSION:
                raise ValueError(f"the file must be a LatentMap of format version "
                                 f"{_FORMAT_VERSION}")
            self = cls(**{k: v for k, v in params.items() if not k.endswith("_")})
            self._check_params()
            self.perplexity_ = float(params["perplexity_"])
            self.interrupted_ = bool(params["interrupted_"])
            ref, emb, n_train = data["reference_codes"], data["reference_embedding"], \
                int(data["n_train"])
            if ref.ndim != 2 or emb.shape != (len(ref), 2) or not 0 < n_train <= len(ref):
                raise ValueError(f"reference codes {ref.shape}, embedding {emb.shape} and "
                                 f"n_train {n_train} must fit together")
            self._set_fitted(ref, emb, n_train, None)
            has = bool(data["has_codes"])
            codes, codes_emb = data["codes"], data["codes_embedding"]
            if has and (codes.ndim != 2 or codes.shape[1] != ref.shape[1]
                        or codes_emb.shape != (len(codes), 2)):
                raise ValueError(f"codes {codes.shape} and their embedding {codes_emb.shape} "
                                 "must fit the reference codes")
            self.codes_ = codes if has else None
            self.codes_embedding_ = codes_emb if has else None
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise SessionFormatError(path, f"file is not a valid LatentMap: {exc}.") from exc
        return self

    # -------------------------------------------------------------- helpers
    def get_params(self) -> dict:
        """Constructor parameters as a dict (scikit-learn convention)."""
        return dict(perplexity=self.perplexity, joint=self.joint, n_iter=self.n_iter,
                    early_exaggeration_iter=self.early_exaggeration_iter,
                    seed=self.seed, n_jobs=self.n_jobs)

    def _set_fitted(self, reference, emb, n_train, affinities) -> None:
        self.reference_codes_ = np.asarray(reference, dtype=np.float64)
        self.reference_embedding_ = np.asarray(emb, dtype=np.float64)
        self.n_train_ = n_train
        self.embedding_ = self.reference_embedding_[:n_train]
        self._affinity_index = affinities

    def _affinities(self):
        if self._affinity_index is None:
                self._affinity_index = PerplexityBasedNN(
                self.reference_codes_, perplexity=self.perplexity_, n_jobs=self.n_jobs,
                random_state=self.seed)
        return self._affinity_index

    def _check_params(self) -> None:
        check_number("perplexity", self.perplexity, low=0, low_inclusive=False)
        if not isinstance(self.joint, (bool, np.bool_)):
            raise TypeError(f"joint must be True or False; got {self.joint!r}.")
        check_int("n_iter", self.n_iter, low=0)
        check_int("early_exaggeration_iter", self.early_exaggeration_iter, low=0)
        check_int("seed", self.seed, low=0)
        check_int("n_jobs", self.n_jobs)

    def _check_fitted(self) -> None:
        if not hasattr(self, "embedding_"):
            raise RuntimeError("This LatentMap is not fitted yet; call fit() or load() first.")


def fit_or_load(train_codes, codes=None, *, cached: LatentMap | None = None,
                callback: ProgressCallback | None = None, **params) -> LatentMap:
    """Return a map of ``train_codes`` with ``codes`` placed, reusing ``cached`` when it fits.

    ``cached`` is reused when it was fitted on the same training codes with
    the same parameters. If only ``codes`` differ, they are placed into it
    with :meth:`LatentMap.transform` (not when ``joint``, which refits).
    Nothing is written: the caller saves a fresh map (a session does it with
    :meth:`~defuse_widgets.workflow.Session.save_latent_map`).

    Parameters
    ----------
    train_codes : ndarray of shape (n_train, n_latent)
    codes : ndarray of shape (n_codes, n_latent), optional
    cached : LatentMap, optional
        A fitted map, for example from :meth:`LatentMap.load`.
    callback : ProgressCallback, optional
        See :meth:`LatentMap.fit`.
    **params
        :class:`LatentMap` parameters.

    Returns
    -------
    LatentMap
        ``cached`` itself when it was reused.
    """
    train = check_codes("train_codes", train_codes, min_rows=4)
    extra = None if codes is None else check_codes("codes", codes, n_latent=train.shape[1])
    new = LatentMap(**params)
    if cached is not None and not isinstance(cached, LatentMap):
        raise TypeError(f"cached must be a LatentMap or None; got {type(cached).__name__}.")
    if cached is not None:
        same_train = (cached.n_train_ == len(train) and
                      np.array_equal(cached.reference_codes_[:cached.n_train_], train))
        if same_train and cached.get_params() == new.get_params():
            same_codes = (extra is None or cached.codes_ is not None and
                          np.array_equal(cached.codes_, extra))
            if same_codes or not new.joint:
                if not same_codes:
                    if callback:
                        callback("transform", 0, len(extra))
                    cached.codes_, cached.codes_embedding_ = extra, cached.place(extra)
                return cached
    return new.fit(train, extra, callback=callback)
