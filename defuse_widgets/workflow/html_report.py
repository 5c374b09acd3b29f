"""A session as one HTML file to share: regions, their review images and votes, the λ tradeoff.

:func:`report_html` turns a :class:`~defuse_widgets.workflow.Session` into one
self-contained page: a summary of the session, the paper's Figure 4 table,
the λ tradeoff (paper Fig. 5) as an inline SVG with a per-λ table, and one
card per region with its weight, members, confusions, the decoded review set
the annotators saw (inline base64 PNGs, the classifier's prediction in red as
in paper Fig. 1), the votes by label and annotator, the ρ decision and the
real-data grounding verdict. The page has no script and no external URL: it
opens offline, prints, and mails as one file. Every string that comes from the
session (paths, annotator and class names, sentences) is HTML-escaped.

The sections are drawn by :mod:`.html_sections` and the tradeoff plot, an
SVG rather than a plotly figure (no plotting library in the core, no
megabytes of plotly.js, no script), by :mod:`.tradeoff_svg`. This module
gathers the content and writes the file. It imports no UI code.
"""
from __future__ import annotations

import io
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from defuse_widgets.workflow.html_sections import (
    CSS,
    esc,
    figure4_section,
    regions_section,
    summary_section,
)
from defuse_widgets.workflow.tradeoff_svg import tradeoff_section

__all__ = ["REPORT_FILE", "SessionHTMLReport", "check_report_path", "png_bytes",
           "render_html", "report_content", "report_html"]

#: The report's name inside a session folder.
REPORT_FILE = "report.html"


class SessionHTMLReport:
    """The HTML report method of :class:`~defuse_widgets.workflow.Session`."""

    def write_html_report(self, path: str | os.PathLike | None = None) -> Path:
        """Write the session's HTML report (one self-contained file) and return its path.

        Also refreshes ``results.json`` (as ``defuse-widgets report`` does,
        keeping the run's extra keys such as timings and novelty).

        Parameters
        ----------
        path : str or os.PathLike, optional
            None writes ``report.html`` into the session folder, listed in its
            manifest (moved to ``archive/`` when any stage runs again).
            Otherwise a file outside the session folder, in an existing
            folder. Either is replaced atomically.

        Returns
        -------
        Path
            The file written.

        Examples
        --------
        >>> session.write_html_report()  # doctest: +SKIP
        PosixPath('runs/defuse/report.html')
        """
        target = None if path is None else check_report_path(path, self.path)
        text = report_html(self)
        if target is None:
            return self.folder.save_with(REPORT_FILE, lambda p: _write_text(p, text),
                                         kind="report")
        _write_text(target, text)
        return target


def check_report_path(path, session_path, *, name: str = "path") -> Path:
    """Check a report path given by a user: a file outside the session, in an existing folder.

    Parameters
    ----------
    path : str or os.PathLike
    session_path : str or os.PathLike
        The session folder.
    name : str, default="path"
        How errors name the parameter (the CLI passes ``"--html"``).

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        When ``path`` is not a str or os.PathLike.
    ValueError
        When it is empty, a folder, inside the session folder, or its folder is missing.
    FileExistsError
        When it names an existing file that is not a Defuse report (never overwritten).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike naming an HTML file; "
                        f"got {path!r}.")
    if not os.fspath(path):
        raise ValueError(f"{name} must name an HTML file; got an empty path.")
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{name} must name a file, not a folder; got {str(target)!r}.")
    if not target.parent.resolve().is_dir():
        raise ValueError(f"{name} must be in an existing folder; got {str(target)!r} "
                         f"({str(target.parent)!r} does not exist).")
    root = Path(session_path).resolve()
    if root == target.resolve().parent or root in target.resolve().parents:
        raise ValueError(f"{name} must lie outside the session folder (leave it out to "
                         f"write {REPORT_FILE} there); got {str(target)!r}.")
    if target.exists() and not _is_report(target):
        raise FileExistsError(f"{name} must name a new file or an earlier Defuse report; "
                              f"{str(target)!r} exists and is not a Defuse report, so it is "
                              "left as it is. Choose another path.")
    return target


def _is_report(path: Path) -> bool:
    """True when ``path`` starts as :func:`render_html`'s pages do (safe to replace)."""
    with open(path, "rb") as f:
        head = f.read(400)
    return head.startswith(b"<!doctype html>") and b"<title>Defuse report: " in head


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, fsync it, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp",
                               dir=Path(path).parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if hasattr(os, "fchmod"):   # a file to share, not mkstemp's owner-only mode
                os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def png_bytes(image) -> bytes:
    """PNG bytes of one image at its own size (the page scales it up, pixels kept sharp).

    Parameters
    ----------
    image : Tensor or ndarray of shape (C, H, W), values in [0, 1], C = 1 or 3

    Returns
    -------
    bytes
        A grey-scale (C = 1) or RGB PNG of size (W, H).
    """
    from PIL import Image

    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    arr = (np.clip(np.nan_to_num(arr), 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def report_content(session) -> dict:
    """Everything the page shows, as plain data (the results plus images and votes per region).

    Saves ``results.json`` (and ``grounding.json`` for regions not grounded
    yet) through the session, as :func:`~defuse_widgets.workflow.report.report` does.

    Parameters
    ----------
    session : Session

    Returns
    -------
    dict
        ``results`` (as :func:`~defuse_widgets.workflow.report.report` returns
        them), ``rho``, ``class_names``, ``annotators`` and ``regions``: one
        dict per region with ``summary`` (weight, members, confusions),
        ``decision``, ``grounding``, ``samples`` (``png``, ``predicted``,
        ``votes`` label -> count per review sample) and ``votes``
        (annotator -> label -> count).
    """
    from defuse_widgets.workflow.report import report

    saved = session.folder.load("results.json") or {}
    built = {"config", "status", "identification", "grounding", "labeling", "correction",
             "figure4", "corrected_model", "fidelity", "class_names", "inputs"}
    results = report(session, extra={k: v for k, v in saved.items() if k not in built})
    out = dict(results=results, rho=(session.folder.load("decisions.json") or {}).get("rho"),
               regions=[], annotators=[], class_names=[])
    adv = session.load_adversarial()
    regions = session.load_regions(adv) if adv is not None else None
    if regions is None:
        return out
    names = list(getattr(session.data, "class_names", ()) or ())
    out["class_names"] = names or [str(c) for c in range(regions.n_classes)]
    store = session.open_store() if session.folder.listed("annotations.sqlite") else None
    votes = store.votes() if store is not None else []
    out["annotators"] = sorted({v.annotator for v in votes})
    decisions = {d["region"]: d for d in results.get("labeling", {}).get("decisions", [])}
    grounding = {g["region"]: g for g in results.get("grounding", [])}
    for k, summary in enumerate(regions.summary()):
        images, predicted = session.review_set(k, regions)
        mine = [v for v in votes if v.region == k]
        per_sample = [Counter(v.label for v in mine if v.sample == i) for i in range(len(images))]
        by_annotator = {a: Counter(v.label for v in mine if v.annotator == a)
                        for a in sorted({v.annotator for v in mine})}
        out["regions"].append(dict(
            summary=summary, decision=decisions.get(k), grounding=grounding.get(k),
            votes=by_annotator,
            samples=[dict(png=png_bytes(img), predicted=int(p), votes=c)
                     for img, p, c in zip(images, predicted, per_sample)]))
    return out


def report_html(session) -> str:
    """The session's report as one self-contained HTML page (see the module notes)."""
    return render_html(report_content(session), title=Path(session.path).resolve().name,
                       path=str(session.path))


def render_html(content: dict, *, title: str = "session", path: str = "") -> str:
    """The page for :func:`report_content`'s ``content``: summary, Figure 4, tradeoff, regions."""
    from defuse_widgets._version import __version__

    res = content["results"]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [f"<header><h1>Defuse report: {esc(title)}</h1><p class=\"sub\">Session folder "
             f"<code>{esc(path)}</code> · written {stamp} by defuse_widgets "
             f"{esc(__version__)}</p></header>", summary_section(content), figure4_section(res)]
    if res.get("correction"):
        parts.append(tradeoff_section(res))
    if content["regions"]:
        parts.append(regions_section(content))
    body = "\n".join(parts)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Defuse report: {esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")
