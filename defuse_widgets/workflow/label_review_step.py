"""Label review in a session: which images to check, the answers, the relabelled data.

The label-review half of :class:`~defuse_widgets.workflow.Session` (not in the
paper; see :mod:`~defuse_widgets.stages.label_review`). With
``config.label_review = N`` > 0 the N training images nearest each accepted
or label-error region whose label differs from the region's are shown to a
reviewer, and so are the validation images picked the same way (N scaled by
the validation split's size: model selection on a validation split that
keeps the wrong labels would prefer the models that keep the bug). Answers
go to the session's ``annotations.sqlite`` (table ``label_review``), keyed by
the image's index in the training split followed by the validation split
(validation image j is ``n_train + j``), committed as they are given. The
correction then gets an arm ``"review"``: the reviewed D with the same D_f,
selected on the validation images whose label nobody contested. Relabelled
validation images are left out of selection on purpose: the model trained on
the reviewer's answers would be graded by those same answers, so a wrong
relabel could never show as a loss (on planted seed 0 the relabelled
validation split rated λ = 1 at +3.5 validation points while test accuracy
fell 1.6). Unanswered images keep their label, so people can review part of
the set. This module imports no UI code.
"""
from __future__ import annotations

import numpy as np
import torch

from defuse_widgets.callbacks import ProgressCallback
from defuse_widgets.stages.label_review import (
    LabelReviewSet,
    apply_label_review,
    label_error_regions,
    label_review_set,
)

__all__ = ["SessionLabelReview"]


class SessionLabelReview:
    """Label-review methods of :class:`~defuse_widgets.workflow.Session`."""

    def label_review_sets(self) -> dict[str, LabelReviewSet]:
        """The images to review, per split (``"train"``, ``"validation"``); empty without review.

        Their ``index`` is into the split itself; the store's key of a
        validation image adds ``len(data.y_train)``.
        """
        from defuse_widgets.models.inference import encode_mean

        n = self.config.label_review
        decisions = self.load_decisions()
        if not n or decisions is None:
            return {}
        regions, d, c = self._require_regions(), self.data, self.config
        errors = label_error_regions(regions, decisions, rho=c.rho)
        n_val = max(1, round(n * len(d.y_val) / len(d.y_train)))
        return {split: label_review_set(regions, decisions,
                                        encode_mean(self.vae, X, device=self.device).numpy(), y,
                                        n_per_region=k, label_errors=errors)
                for split, X, y, k in (("train", d.X_train, d.y_train, n),
                                       ("validation", d.X_val, d.y_val, n_val))}

    def review_keys(self, split: str, review: LabelReviewSet) -> np.ndarray:
        """The store keys of ``review``'s images of ``split`` (see the module docstring)."""
        return review.index + (len(self.data.y_train) if split == "validation" else 0)

    def review_labels_simulated(self, *, callback: ProgressCallback | None = None) -> dict:
        """The simulated reviewer answers every review image it has not answered; stored.

        Returns
        -------
        dict
            Per split: images reviewed and labels the reviewer contested.
        """
        annotator = self.simulated_annotator()
        if annotator is None:
            raise ValueError("oracle must be given to review labels with the simulated "
                             "annotator; this session has none (pass oracle=...).")
        store, sets, out = self.open_store(), self.label_review_sets(), {}
        done = store.answers(annotator.name)
        for j, (split, review) in enumerate(sets.items()):
            X = self.data.X_train if split == "train" else self.data.X_val
            keys = self.review_keys(split, review)
            todo = np.array([k not in done for k in keys.tolist()], bool)
            if todo.any():
                labels = annotator.label(X[review.index[todo]])
                store.answer_many(annotator.name, keys[todo], labels)
            if callback is not None and callback("label review", j + 1, len(sets)):
                break
        for split, (_, _, changed) in self.reviewed_labels(sets).items():
            out[split] = dict(n_reviewed=len(sets[split]), n_contested=len(changed))
        return out

    def reviewed_labels(self, sets: dict | None = None) -> dict:
        """Per split, :func:`~defuse_widgets.stages.label_review.apply_label_review` of the answers.

        ``sets`` (from :meth:`label_review_sets`, when the caller has them)
        saves encoding the training and validation images again.

        Returns
        -------
        dict of str -> (y_reviewed (n,), keep (n,) bool, changed (n_changed,))
        """
        store, out = self.open_store(), {}
        sets = self.label_review_sets() if sets is None else sets
        for split, review in sets.items():
            y = self.data.y_train if split == "train" else self.data.y_val
            labels = store.review_labels(review, keys=self.review_keys(split, review))
            out[split] = apply_label_review(y, review, labels)
        return out

    def label_review_arm(self, X_f: torch.Tensor, y_f: torch.Tensor) -> dict | None:
        """The ``"review"`` correction arm: reviewed D, the same D_f, uncontested validation.

        None without label review or when nobody changed a label.
        """
        reviewed = self.reviewed_labels()
        if not reviewed or not any(len(r[2]) for r in reviewed.values()):
            return None
        d = self.data
        (y_r, keep, _), (_, _, contested) = reviewed["train"], reviewed["validation"]
        uncontested = np.ones(len(d.y_val), bool)
        uncontested[contested] = False
        return dict(X_f=X_f, y_f=y_f, X=d.X_train[keep], y=y_r[keep],
                    eval_sets={"validation": (d.X_val[uncontested], d.y_val[uncontested])})
