"""The λ tradeoff of a session (paper Fig. 5) for the HTML report: an inline SVG and per-λ tables.

Test accuracy against misclassification-region (region-test) accuracy, one
line per correction arm with a point per λ, the model before fine-tuning as
×, the λ the rule selected as ★ and a λ chosen by hand as a red ring, as in
the dashboard's ``TradeoffPlot``. It is SVG written here rather than a plotly
figure: the core imports no plotting library, the report stays small (plotly.js
inline adds megabytes) and renders without JavaScript; each point's
``<title>`` is its hover text. This module imports no UI code.
"""
from __future__ import annotations

import math

from defuse_widgets.workflow.html_sections import esc, is_number, lam_text, pct, table

__all__ = ["tradeoff_section", "tradeoff_svg"]

_ARMS = {"defuse": ("Defuse", "#1f77b4", ""), "baseline": ("Baseline (adversarial examples)",
         "#ff7f0e", "5 4"), "review": ("Label review", "#2ca02c", "")}
_SETS = ("validation", "test", "region_validation", "region_test")


def tradeoff_svg(correction: dict, before: dict | None = None,
                 chosen: tuple | None = None) -> str:
    """Test against region-test accuracy per λ and arm (paper Fig. 5) as an SVG string.

    Parameters
    ----------
    correction : dict
        Arm -> ``{"tradeoff": [record, ...], "best": record or None}`` (as in
        the results); a record holds ``lam``, ``test`` and ``region_test``.
    before : dict, optional
        The model before fine-tuning (``test``, ``region_test``), drawn as ×.
    chosen : (arm, lam), optional
        A λ chosen by hand, drawn as a red ring.
    """
    pts = [(r["test"], r["region_test"]) for a in correction.values() for r in a["tradeoff"]]
    pts += [(before["test"], before["region_test"])] if before else []
    pts = [p for p in pts if is_number(p[0]) and is_number(p[1])]
    W, H, L, R, T, B = 860, 440, 64, 262, 16, 48
    xs, ys = _ticks([p[0] for p in pts]), _ticks([p[1] for p in pts])

    def X(v):
        return L + (v - xs[0]) / (xs[-1] - xs[0]) * (W - L - R)

    def Y(v):
        return H - B - (v - ys[0]) / (ys[-1] - ys[0]) * (H - T - B)

    g = [f'<svg class="plot" viewBox="0 0 {W} {H}" role="img" '
         'aria-label="Test accuracy against misclassification-region accuracy per λ">']
    for v in xs:
        g.append(f'<line class="grid" x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{T}" y2="{H - B}"/>'
                 f'<text x="{X(v):.1f}" y="{H - B + 16}" text-anchor="middle">{100 * v:g}</text>')
    for v in ys:
        g.append(f'<line class="grid" x1="{L}" x2="{W - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}"/>'
                 f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{100 * v:g}</text>')
    g.append(f'<text class="axis" x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">'
             f'test accuracy (%)</text><text class="axis" transform="translate(16 '
             f'{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">region-test accuracy (%)'
             "</text>")
    legend = []
    for arm, rec in correction.items():
        name, colour, dash = _ARMS.get(arm, (arm, "#9467bd", ""))
        recs = sorted((r for r in rec["tradeoff"] if is_number(r.get("test")) and
                       is_number(r.get("region_test"))), key=lambda r: r["lam"])
        line = " ".join(f"{X(r['test']):.1f},{Y(r['region_test']):.1f}" for r in recs)
        g.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2" '
                 f'stroke-dasharray="{dash}" opacity="0.8"/>')
        for r in recs:
            g.append(f'<circle cx="{X(r["test"]):.1f}" cy="{Y(r["region_test"]):.1f}" r="5" '
                     f'fill="{colour}"><title>{esc(name)}, λ = {lam_text(r["lam"])}: test '
                     f'{pct(r["test"])} %, region-test {pct(r["region_test"])} %</title>'
                     "</circle>")
            if len(recs) <= 8:   # few λs: name each point (many would overlap; hover names them)
                g.append(f'<text class="lam" x="{X(r["test"]) + 7:.1f}" y="'
                         f'{Y(r["region_test"]) - 7:.1f}" fill="{colour}">λ={lam_text(r["lam"])}'
                         "</text>")
        best = rec.get("best")
        if best and is_number(best.get("test")) and is_number(best.get("region_test")):
            g.append(_star(X(best["test"]), Y(best["region_test"]),
                           f"{name}: selected λ = {lam_text(best['lam'])}"))
        legend.append((name, colour, dash))
    if before and is_number(before.get("test")) and is_number(before.get("region_test")):
        x, y = X(before["test"]), Y(before["region_test"])
        g.append(f'<path d="M{x - 6:.1f},{y - 6:.1f}L{x + 6:.1f},{y + 6:.1f}M{x - 6:.1f},'
                 f'{y + 6:.1f}L{x + 6:.1f},{y - 6:.1f}" stroke="#444" stroke-width="3"><title>'
                 f"Before fine-tuning: test {pct(before['test'])} %, region-test "
                 f"{pct(before['region_test'])} %</title></path>")
    if chosen is not None:
        arm, lam = chosen
        r = next((r for r in correction.get(arm, {}).get("tradeoff", []) if r["lam"] == lam),
                 None)
        if r is not None and is_number(r.get("test")) and is_number(r.get("region_test")):
            g.append(f'<circle cx="{X(r["test"]):.1f}" cy="{Y(r["region_test"]):.1f}" r="12" '
                     f'fill="none" stroke="#d62728" stroke-width="2.5"><title>Chosen by hand: '
                     f"λ = {lam_text(lam)}</title></circle>")
    ly = T + 8
    for name, colour, dash in legend:
        g.append(f'<line x1="{W - R + 16}" x2="{W - R + 40}" y1="{ly}" y2="{ly}" stroke='
                 f'"{colour}" stroke-width="2" stroke-dasharray="{dash}"/><circle cx="'
                 f'{W - R + 28}" cy="{ly}" r="4" fill="{colour}"/><text x="{W - R + 46}" '
                 f'y="{ly + 4}">{esc(name)}</text>')
        ly += 22
    g.append(_star(W - R + 28, ly, "") + f'<text x="{W - R + 46}" y="{ly + 4}">Selected λ'
             f'</text><path d="M{W - R + 23},{ly + 17}L{W - R + 33},{ly + 27}M{W - R + 23},'
             f'{ly + 27}L{W - R + 33},{ly + 17}" stroke="#444" stroke-width="3"/><text x="'
             f'{W - R + 46}" y="{ly + 26}">Before fine-tuning</text>')
    if chosen is not None:
        g.append(f'<circle cx="{W - R + 28}" cy="{ly + 44}" r="8" fill="none" stroke="#d62728"'
                 f' stroke-width="2.5"/><text x="{W - R + 46}" y="{ly + 48}">Chosen by hand'
                 "</text>")
    return "".join(g) + "</svg>"


def _star(x: float, y: float, title: str) -> str:
    p = " ".join(f"{x + (10 if i % 2 == 0 else 4.2) * math.sin(i * math.pi / 5):.1f},"
                 f"{y - (10 if i % 2 == 0 else 4.2) * math.cos(i * math.pi / 5):.1f}"
                 for i in range(10))
    tip = f"<title>{esc(title)}</title>" if title else ""
    return f'<polygon class="star" points="{p}" fill="gold" stroke="#000">{tip}</polygon>'


def _ticks(values: list, n: int = 5) -> list:
    """Round ticks spanning accuracies ``values`` (at least 5 points wide) inside [0, 1]."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    mid, half = (lo + hi) / 2, max(hi - lo, 0.05) / 2 * 1.1
    lo, hi = mid - half, mid + half
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > 1:
        lo, hi = max(0.0, lo - (hi - 1)), 1.0
    raw = (hi - lo) / n
    step = min((s * 10 ** math.floor(math.log10(raw)) for s in (1, 2, 2.5, 5, 10)),
               key=lambda s: abs(s - raw) if s >= raw else math.inf)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(int(round((stop - start) / step)) + 1)]


def tradeoff_section(res: dict) -> str:
    """The report's tradeoff section: the plot, and per arm its verdict and per-λ table."""
    corr, model = res["correction"], res.get("corrected_model") or {}
    chosen = ((model["arm"], model["lam"]) if model.get("chosen_by", "rule") != "rule"
              else None)
    svg = tradeoff_svg(corr, (res.get("figure4") or {}).get("before"), chosen)
    tables = []
    for arm, rec in corr.items():
        best = (rec.get("best") or {}).get("lam")
        hand = chosen[1] if chosen and chosen[0] == arm else None
        rows = [(' class="best"' if r["lam"] in (best, hand) else "",
                 (("★ " if r["lam"] == best else "") + ("◯ " if r["lam"] == hand else "")
                  + lam_text(r["lam"]),
                  *(pct(r.get(s)) for s in _SETS),
                  _change(r, "validation"), _change(r, "region_validation")))
                for r in sorted(rec["tradeoff"], key=lambda r: r["lam"])]
        verdict = f'<p class="verdict">{esc(rec["verdict"])}</p>' if rec.get("verdict") else ""
        tables.append(f"<h3>{esc(_ARMS.get(arm, (arm,))[0])}</h3>{verdict}" + table(
            ("λ", "Validation", "Test", "Region-validation", "Region-test",
             "Δ validation [95 % interval]", "Δ region-validation [95 % interval]"), rows,
            "lams"))
    return ('<section id="tradeoff"><h2>λ tradeoff: test against misclassification-region '
            f'accuracy (paper Fig. 5)</h2><figure class="plotbox">{svg}<figcaption>One point '
            "per λ (hover for its values); accuracies in %. ★ marks the λ the rule selected, "
            "◯ one chosen by hand (the corrected model when there is one)."
            f"</figcaption></figure>{''.join(tables)}</section>")


def _change(r: dict, name: str) -> str:
    if not is_number(r.get(f"{name}_change")):
        return "–"
    c, lo, hi = (100 * r[f"{name}_change{s}"] for s in ("", "_low", "_high"))
    return f"{c:+.1f} [{lo:+.1f}, {hi:+.1f}]".replace("-", "−")
