"""The sections of the HTML report: session summary, Figure 4, regions, and the page's style.

Each function takes plain data from
:func:`~defuse_widgets.workflow.html_report.report_content` and returns an
HTML fragment; every string that comes from the session (annotator and class
names, settings, sentences) goes through :func:`esc`. This module imports no UI code.
"""
from __future__ import annotations

import base64
import html
import math

from defuse_widgets.stages.grounding import VERDICT_WORDS

__all__ = ["CSS", "esc", "figure4_section", "is_number", "lam_text", "pct", "regions_section",
           "summary_section", "table"]

_FIG4 = (("Before finetuning", "before"), ("Unrestricted adversarial examples", "baseline"),
         ("Defuse", "defuse"), ("Defuse + label review", "review"))
_VERDICTS = {v: (cls, VERDICT_WORDS[v][1]) for v, cls in (
    ("confirmed", "bad"), ("not_confirmed", "muted"), ("no_support", "muted"))}


def esc(value) -> str:
    """``value`` as text safe inside HTML elements and attributes."""
    return html.escape(str(value), quote=True)


def is_number(v) -> bool:
    """True for a finite int or float (not a bool, None or NaN)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pct(v, digits: int = 1) -> str:
    """A share in [0, 1] as percent without the sign (``"–"`` when missing or NaN)."""
    return f"{100 * v:.{digits}f}" if is_number(v) else "–"


def _percent(v) -> str:
    """``pct`` with its sign, or a bare ``"–"`` when missing (never ``"– %"``)."""
    return pct(v, 0) + " %" if is_number(v) else "–"


def lam_text(v) -> str:
    """λ as people write it (``0.1``, ``1e-05``; ``"–"`` when missing)."""
    return f"{v:g}" if is_number(v) else "–"


def table(head, rows, cls: str = "") -> str:
    """An HTML table; ``head`` holds header cells, ``rows`` (row attributes, cells) pairs.

    Cells are inserted as given: escape session strings before.
    """
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(f"<tr{a}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for a, r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _label(names: list, c: int) -> str:
    if c < 0:
        return "none of the above"
    return names[c] if c < len(names) else str(c)


def summary_section(content: dict) -> str:
    """Dataset, stages done, counts per stage, votes, selected λ and all settings."""
    res = content["results"]
    st, ident, lab = res["status"], res.get("identification"), res.get("labeling")
    votes = st.get("votes") or {}
    lams = " · ".join(f"{lam_text(v)} <small>{esc(a)}</small>"
                      for a, v in st.get("selected_lam", {}).items())
    model = res.get("corrected_model") or {}
    if model.get("chosen_by", "rule") != "rule":   # a hand choice is the session's λ
        lams = (f"{lam_text(model['lam'])} <small>{esc(model['arm'])}, chosen by "
                f"{esc(model['chosen_by'])} by hand; the rule's: {lams}</small>")
    n_regions = st.get("n_regions")
    fid = res.get("fidelity") or {}
    cards = [("Dataset", esc(st.get("data") or res["config"].get("dataset"))),
             ("Generator fidelity", f"{fid['fidelity']:.2f} <small>accuracy "
              f"{pct(fid['accuracy_reconstructions'])} % on reconstructions, "
              f"{pct(fid['accuracy_images'])} % on {esc(fid['split'])} images</small>"
              if is_number(fid.get("fidelity")) else "–"),
             ("Stages done", "all four" if all(st["stages"].values()) else
              esc(", ".join(s for s, d in st["stages"].items() if d) or "none")),
             ("Adversarial examples", f"{ident['n_kept']:,} <small>of {ident['n_decoded']:,} "
              f"decodes ({pct(ident['rate'])} %)</small>" if ident else "–"),
             ("Candidate regions", "–" if n_regions is None else esc(n_regions)),
             ("Misclassification regions", f"{lab['n_misclassification_regions']} <small>"
              f"accepted at ρ = {esc(content['rho'])}</small>" if lab else "not labelled yet"),
             ("Votes", f"{sum(votes.values()):,} <small>by {len(votes)} annotator"
              f"{'s' * (len(votes) != 1)}</small>" if votes else "none yet"),
             ("Selected λ", lams or "no correction yet")]
    out = ['<section id="summary"><h2>Session</h2><div class="cards">']
    out += [f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>'
            for k, v in cards]
    out.append("</div>")
    if st.get("fidelity_warning"):
        out.append(f'<p class="warning" role="alert"><b>Warning.</b> '
                   f'{esc(st["fidelity_warning"])}</p>')
    if any(a.startswith("simulated") for a in votes):
        out.append('<p class="note">The votes come from the <b>simulated annotator</b>: '
                   "workers backed by an oracle CNN, standing in for people.</p>")
    nov = res.get("novelty")
    if isinstance(nov, dict) and is_number(nov.get("median_distance")):
        out.append(f"<p>Novelty (paper §4.3): the median ℓ2 distance from a region sample to "
                   f"its nearest misclassified training image is {nov['median_distance']:.2f}"
                   f"; between training neighbours it is {nov['median_train_nn_distance']:.2f}."
                   "</p>")
    settings = table(("Setting", "Value"), [("", (esc(k), esc(v)))
                                            for k, v in res["config"].items()], "settings")
    out.append(f"<details><summary>All settings</summary>{settings}</details></section>")
    return "".join(out)


def figure4_section(res: dict) -> str:
    """The paper's Figure 4 rows (accuracies in %) and which model is the corrected one."""
    f4 = res.get("figure4")
    if not f4:
        return ('<section id="figure4"><h2>Figure 4</h2><p class="muted">No correction yet: '
                "the table needs the correction stage.</p></section>")
    rows = []
    for label, key in _FIG4:
        r = f4.get(key)
        if r is not None:
            n = r.get("n_regions")
            rows.append((f' id="fig4-{key}"', (esc(label), "-" if n is None else esc(n),
                         pct(r.get("validation")), pct(r.get("test")),
                         pct(r.get("region_test")), lam_text(r.get("lam")))))
    out = ['<section id="figure4"><h2>Figure 4: accuracy before and after fine-tuning (%)'
           "</h2>", table(("", "# Regions", "Validation", "Test", "Misclass. region", "λ"),
                          rows, "fig4")]
    model = res.get("corrected_model") or {}
    if model.get("lam") is not None:
        who = ("the selection rule" if model["chosen_by"] == "rule"
               else f"{model['chosen_by']}, by hand")
        out.append(f"<p>Corrected model: arm <b>{esc(model['arm'])}</b>, λ = "
                   f"{lam_text(model['lam'])}, chosen by {esc(who)}.</p>")
        by_hand = model["chosen_by"] != "rule"
        if model.get("verdict"):
            head = (f"The rule's verdict on its own λ = {lam_text(model.get('rule_lam'))}: "
                    if by_hand else "")
            out.append(f'<p class="verdict">{esc(head + model["verdict"])}</p>')
        if by_hand:
            tradeoff = ((res.get("correction") or {}).get(model["arm"]) or {}).get("tradeoff")
            out.append(_hand_cost(next((r for r in tradeoff or () if r.get("lam") ==
                                        model["lam"]), {})))
    return "".join(out) + "</section>"


def regions_section(content: dict) -> str:
    """An overview table of every region, then one card per region (images, votes, decision)."""
    names, rho = content["class_names"], content["rho"]
    rows = []
    for k, reg in enumerate(content["regions"]):
        s, d, g = reg["summary"], reg["decision"], reg["grounding"]
        status, cls = _status(d, names)
        n_votes = sum(sum(c.values()) for c in reg["votes"].values())
        rows.append((f' class="{cls}"', (
            f'<a href="#region-{k}">Region {k}</a>', f"{s['weight']:.3f}", f"{s['members']:,}",
            _confusions(s["top_confusions"], names), status,
            _percent(d["disagreement"]) if d else "–", n_votes or "–",
            esc(_VERDICTS[g["verdict"]][1]) if g else "–")))
    head = ("Region", "Weight π", "Members", "Top confusions (true → predicted)", "Decision",
            "Disagreement", "Votes", "Real data")
    out = ['<section id="regions"><h2>Regions</h2><p>Candidate regions of the '
           "distillation mixture, numbered as in the dashboard and <code>results.json</code>. "
           f"A region is a misclassification region when more than ρ = {esc(rho)} of its votes "
           "other than “none of the above” disagree with the classifier.</p>",
           table(head, rows, "overview")]
    out += [_card(k, reg, names, rho) for k, reg in enumerate(content["regions"])]
    return "".join(out) + "</section>"


def _hand_cost(row: dict) -> str:
    """A warning when the λ chosen by hand loses validation accuracy significantly."""
    high = row.get("validation_change_high")
    if not is_number(high) or not high < 0:
        return ""
    return (f'<p class="warning" role="alert">The λ chosen by hand loses validation accuracy '
            f"significantly: {100 * row['validation_change']:+.1f} points (95 % interval "
            f"{100 * row['validation_change_low']:+.1f} to {100 * high:+.1f}).</p>")


def _status(d, names) -> tuple:
    if d is None or not d["n_votes"]:   # a region nobody voted on is not decided
        return "not labelled", "open"
    if d["is_misclassification_region"]:
        return f"misclassification region, label {esc(_label(names, d['label']))}", "acc"
    return "not a misclassification region", "rej"


def _confusions(conf, names) -> str:
    return ", ".join(f"{esc(_label(names, s))} → {esc(_label(names, p))} ({n:,})"
                     for s, p, n in conf) or "–"


def _card(k: int, reg: dict, names: list, rho) -> str:
    s, d, g = reg["summary"], reg["decision"], reg["grounding"]
    status, cls = _status(d, names)
    tiles = []
    for i, smp in enumerate(reg["samples"]):
        votes = smp["votes"]
        top = votes.most_common(1)[0][0] if votes else None
        dis = " dis" if top is not None and top >= 0 and top != smp["predicted"] else ""
        text = " · ".join(f'<span title="{n} vote{"s" * (n != 1)} for {esc(_label(names, c))}">'
                          f'{"none" if c < 0 else esc(_label(names, c))} ×{n}</span>'
                          for c, n in votes.most_common()) or "no votes"
        pred = esc(_label(names, smp["predicted"]))
        data = base64.b64encode(smp["png"]).decode("ascii")
        tiles.append(f'<figure class="tile{dis}"><div class="img"><img src="data:image/png;'
                     f'base64,{data}" alt="Region {k}, sample {i}: the classifier says {pred}">'
                     f'<span class="pred" title="the classifier\'s prediction">{pred}</span>'
                     f"</div><figcaption>{text}</figcaption></figure>")
    return (f'<article class="region {cls}" id="region-{k}"><header><h3>Region {k}</h3>'
            f'<span class="badge {cls}">{status}</span></header><p class="facts">Weight π = '
            f"{s['weight']:.3f} · {s['members']:,} adversarial examples · confusions (true → "
            f"predicted): {_confusions(s['top_confusions'], names)}</p>"
            f'<h4>Review set <small>(decoded samples of N(μ, τΣ) the annotators saw; '
            f"red: the classifier's prediction; below: the votes; red frame: most votes name "
            "another class)</small></h4>"
            f'<div class="samples">{"".join(tiles)}</div><div class="cols">'
            f"<div><h4>Decision</h4>{_decision(d, names, rho, len(reg['votes']))}"
            f"{_stale(d, reg['votes'])}</div>"
            f"<div><h4>Votes</h4>{_votes(reg['votes'], names)}</div>"
            f"<div><h4>Real data</h4>{_grounding(g)}</div></div></article>")


def _decision(d, names, rho, n_annotators: int) -> str:
    if d is None or not d["n_votes"]:
        return '<p class="muted">Not labelled yet.</p>'
    n = d["n_votes"] - d["n_none"]
    if n == 0:
        return (f"<p>Not a misclassification region: none of its {d['n_votes']} votes names a "
                "class (all “none of the above”).</p>")
    word = "more" if d["is_misclassification_region"] else "not more"
    text = (f"<p>{pct(d['disagreement'], 0)} % of the {n} votes that name a class disagree "
            f"with the classifier, {word} than ρ = {esc(rho)}.")
    if d["is_misclassification_region"]:
        text += f" Label: <b>{esc(_label(names, d['label']))}</b> (majority vote)."
    agreement = (f"Annotator agreement {pct(d['agreement'], 0)} %" if n_annotators > 1 else
                 "One annotator (agreement between people needs two)")
    return text + f" {agreement}; {d['n_none']} “none of the above”.</p>"


def _stale(d, by_annotator: dict) -> str:
    n = sum(sum(c.values()) for c in by_annotator.values())
    if d is None or n == d["n_votes"]:
        return ""
    return (f'<p class="muted">This decision counts {d["n_votes"]} votes; the region has {n} '
            "now. Decide again (the dashboard or <code>Session.decide()</code>) to update it.</p>")


def _votes(by_annotator: dict, names: list) -> str:
    if not by_annotator:
        return '<p class="muted">No votes yet.</p>'
    labels = sorted({c for v in by_annotator.values() for c in v}, key=lambda c: (c < 0, c))
    rows = [("", (esc(a), *(v.get(c, "") for c in labels)))
            for a, v in by_annotator.items()]
    rows.append((' class="total"', ("all", *(sum(v.get(c, 0) for v in by_annotator.values())
                                             for c in labels))))
    head = ("Annotator", *(esc("none" if c < 0 else _label(names, c)) for c in labels))
    return table(head, rows, "votes")


def _grounding(g) -> str:
    if g is None:
        return '<p class="muted">Not grounded.</p>'
    cls, word = _VERDICTS[g["verdict"]]
    counts = "; ".join(f"{split}: {g[split]['count']} images, {pct(g[split]['accuracy'], 0)} % "
                       "right" for split in ("validation", "test") if split in g)
    return (f'<p><span class="badge {cls}">{esc(word)}</span></p><p>{esc(g["sentence"])}</p>'
            f'<p class="muted">{esc(counts)}</p>')


CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--acc:#b42318;--ok:#067647}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:0 0 12px}
h3{font-size:17px;margin:0}h4{font-size:14px;margin:14px 0 6px}
h4 small,small{font-weight:400;color:var(--muted)}
.sub,.muted{color:var(--muted)}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:20px 24px;
margin:18px 0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);
padding:1px 4px;border-radius:4px;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .k{font-size:13px;color:var(--muted)}
.card .v{font-size:18px;font-weight:600}
.note{background:#fffaeb;border:1px solid #fedf89;border-radius:8px;padding:8px 12px}
.warning{background:#fef3f2;border:1px solid #fda29b;border-radius:8px;padding:8px 12px;
color:#912018}
.verdict{background:#f0f9ff;border-left:4px solid #0086c9;padding:8px 12px;margin:10px 0}
details summary{cursor:pointer;color:var(--muted);margin-top:8px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right}
th{font-size:13px;color:var(--muted);font-weight:600;background:#fafbfc}
th:first-child,td:first-child{text-align:left}
tbody tr:nth-child(even){background:#fcfcfd}
table.fig4 td,table.fig4 th{padding:6px 16px}
table.fig4 #fig4-defuse td,table.fig4 #fig4-review td{font-weight:600}
table.lams tr.best td{background:#fef7c3;font-weight:600}
table.overview{width:100%}table.overview :is(td,th):is(:nth-child(4),:nth-child(5),
:nth-child(8)){text-align:left}table.overview td:first-child{white-space:nowrap}
table.overview tr.acc td:nth-child(5){color:var(--acc);font-weight:600}
table.settings td:last-child{text-align:left;font-family:ui-monospace,monospace;font-size:13px}
table.votes tr.total td{font-weight:600}
#tradeoff h3{margin-top:22px}.plotbox{margin:0}
.plot{width:100%;max-width:860px;height:auto;display:block}
.plot text{font-size:12px;fill:#344054}.plot text.lam{font-size:11px}
.plot .axis{font-size:13px;fill:var(--fg)}
.plot .grid{stroke:#eaecf0}.plot circle,.plot polygon{cursor:default}
figcaption{color:var(--muted);font-size:13px}
.region{border:1px solid var(--line);border-left:5px solid #98a2b3;border-radius:8px;
padding:14px 18px;margin:16px 0;break-inside:avoid}
.region.acc{border-left-color:var(--acc)}.region.rej{border-left-color:var(--ok)}
.region header{display:flex;align-items:center;gap:12px;flex-wrap:wrap}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:999px;padding:2px 10px;
background:#f2f4f7;color:#344054}
.badge.acc,.badge.bad{background:#fee4e2;color:var(--acc)}.badge.rej{background:#dcfae6;color:var(--ok)}
.facts{margin:6px 0 0;color:#344054}
.samples{display:flex;flex-wrap:wrap;gap:10px}
.tile{margin:0;width:84px;text-align:center}
.tile .img{position:relative;width:84px;height:84px;border:2px solid var(--line);border-radius:6px;
overflow:hidden;background:#000}
.tile.dis .img{border-color:var(--acc)}
.tile img{width:100%;height:100%;image-rendering:pixelated;display:block}
.tile .pred{position:absolute;top:2px;right:2px;background:#fff;color:#d00;font-weight:700;
font-size:12px;line-height:1;padding:2px 4px;border-radius:3px}
.tile figcaption{font-size:11px;line-height:1.3;margin-top:3px;overflow-wrap:anywhere}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:4px 24px}
.cols p{margin:4px 0}
a{color:#175cd3;text-decoration:none}a:hover{text-decoration:underline}
@media print{body{background:#fff}section{border:none;padding:0}}
"""
