"""A region's grounding in real images as HTML, shared by the gallery and the labeling panel."""
from __future__ import annotations

import html

from defuse_widgets.stages.grounding import VERDICT_WORDS, RegionGrounding
from defuse_widgets.stages.regions import Regions

__all__ = ["VERDICTS", "check_grounding", "grounding_html", "session_grounding"]

#: The colour and words of each verdict a region can show (no_support shows none).
VERDICTS = {v: (color, VERDICT_WORDS[v][1])
            for v, color in (("confirmed", "#dc0000"), ("not_confirmed", "#2a7d2a"))}


def grounding_html(grounding: RegionGrounding | None, k: int) -> str:
    """Real images in region ``k`` per split, with accuracy and verdict ("" without grounding).

    Example: "Real images here: 12 validation (accuracy 25%), 9 test (33%) — confirmed
    bug", then the verdict's sentence; a region without enough real images shows
    only its sentence.
    """
    if grounding is None:
        return ""
    verdict, sentence = grounding.verdict(k), html.escape(grounding.sentence(k))
    style = "class='defuse-grounding' style='font-size:90%; margin-top:4px'"
    if verdict == "no_support":
        return f"<div {style}><i>{sentence}</i></div>"
    parts = []
    for s in grounding.splits:
        acc = grounding.accuracy(k, s)
        shown = "" if acc is None else f" ({'' if parts else 'accuracy '}{acc:.0%})"
        parts.append(f"{grounding.count(k, s)} {html.escape(s)}{shown}")
    color, word = VERDICTS[verdict]
    return (f"<div {style}>Real images here: {', '.join(parts)} — <b style='color:{color}'>"
            f"{word}</b><br><span style='color:#555'>{sentence}</span></div>")


def check_grounding(grounding, regions: Regions) -> RegionGrounding | None:
    """Return ``grounding`` after checking it is None or a grounding of ``regions``."""
    if grounding is None:
        return None
    if not isinstance(grounding, RegionGrounding):
        raise TypeError(f"grounding must be a RegionGrounding or None; "
                        f"got {type(grounding).__name__}.")
    if grounding.n_regions != len(regions):
        raise ValueError(f"grounding must be of the {len(regions)} regions shown; "
                         f"got one of {grounding.n_regions}.")
    return grounding


def session_grounding(session, regions: Regions) -> RegionGrounding | None:
    """The session's grounding of ``regions``: the saved one, else computed (and saved).

    None when it cannot be computed (a VAE without ``encode``, for example): the
    grounding is extra information, and the widgets work without it.
    """
    try:
        saved = session.load_grounding(regions)
        return saved if saved is not None else session.ground_regions(regions)
    except (ValueError, TypeError, AttributeError, RuntimeError, OSError):
        return None
