"""The HTML report of a session: one self-contained file with the regions, votes and results."""
import base64
import html
import io
import json
import re
import shutil
from collections import Counter

import pytest
from PIL import Image

from defuse_widgets.cli import main
from defuse_widgets.storage.manifest import read_manifest
from defuse_widgets.workflow import DefuseConfig, Session, run_defuse
from defuse_widgets.workflow.html_report import REPORT_FILE, check_report_path
from defuse_widgets.workflow.report import report

EVE = "<b>eve</b> & co"   # an annotator name that is also HTML: it must come out escaped
_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _cfg():
    return DefuseConfig(dataset="digits", Q=6, a=4, b=4, centered=True, max_per_instance=3,
                        n_components=4, max_samples=500, lams=(0.0, 1.0, 5.0), epochs=1,
                        n_finetune=64, n_region_test=32, batch_size=128, selection="balanced",
                        tolerance=1.0)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits, tiny_models, contrarian):
    """A session after all four stages (every region a bug), plus one vote by EVE."""
    clf, vae = tiny_models
    out = tmp_path_factory.mktemp("html") / "s"
    run_defuse(_cfg(), out=out, classifier=clf, vae=vae, oracle=contrarian, data=digits,
               progress=False, log=lambda *a: None)
    s = Session(out, classifier=clf, vae=vae, data=digits, oracle=contrarian)
    s.open_store().cast_vote(EVE, 0, 0, 3)
    s.decide()
    s.close()
    return out


@pytest.fixture
def session(finished, tmp_path, digits, tiny_models, contrarian):
    clf, vae = tiny_models
    path = tmp_path / "copy"
    shutil.copytree(finished, path)
    s = Session(path, classifier=clf, vae=vae, data=digits, oracle=contrarian)
    yield s
    s.close()


def _row(text: str, row_id: str) -> list:
    row = re.search(rf'<tr id="{row_id}">(.*?)</tr>', text).group(1)
    return re.findall(r"<td>(.*?)</td>", row)


def test_report_is_written_into_the_folder_and_listed(session):
    path = session.write_html_report()
    assert path == session.folder.file(REPORT_FILE) and path.is_file()
    entry = read_manifest(session.path)["files"][REPORT_FILE]
    assert entry["kind"] == "report" and entry["size"] == path.stat().st_size
    assert not list(session.path.glob(".report.html.*"))   # no temporary file left
    session.archive_from("distillation")   # a stage runs again: the report is stale
    assert not session.folder.listed(REPORT_FILE) and not path.exists()
    assert (session.archived / REPORT_FILE).is_file()


def test_every_region_shows_its_review_set_as_inline_pngs(session, digits):
    text = session.write_html_report().read_text()
    regions = session.load_regions()
    size = session.config.review_size
    images = _IMG.findall(text)
    assert len(regions) >= 2 and len(images) == len(regions) * size
    assert text.count("<img") == len(images)   # every image is inline
    for data in images:
        png = base64.b64decode(data, validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = Image.open(io.BytesIO(png))
        img.verify()
        assert img.size == tuple(digits.X_train.shape[-2:])
    for k, s in enumerate(regions.summary()):
        card = text.split(f'id="region-{k}"')[1].split('<article')[0]
        assert f"Weight π = {s['weight']:.3f}" in card and f"{s['members']:,} adversarial" in card
        src, pred, n = s["top_confusions"][0]
        assert f"{src} → {pred} ({n:,})" in card
        assert len(_IMG.findall(card)) == size
    # one self-contained file: no script, no stylesheet or image fetched from anywhere
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"(src|href)=\"(?!data:|#)", text) and "http" not in text


def test_votes_decisions_and_grounding_match_the_session(session):
    text = session.write_html_report().read_text()
    res = json.loads(session.folder.file("results.json").read_text())
    votes = session.open_store().votes()
    for d, g in zip(res["labeling"]["decisions"], res["grounding"]):
        card = text.split(f'id="region-{d["region"]}"')[1].split('<article')[0]
        total = re.search(r'<tr class="total">(.*?)</tr>', card).group(1)
        counts = Counter(v.label for v in votes if v.region == d["region"])
        cells = [int(c) for c in re.findall(r"<td>(\d+)</td>", total)]
        assert cells == [counts[c] for c in sorted(counts, key=lambda c: (c < 0, c))]
        assert sum(cells) == d["n_votes"]
        assert ("misclassification region, label" in card) == d["is_misclassification_region"]
        assert f"{round(100 * d['disagreement'])} % of the" in card
        assert html.escape(g["sentence"]) in card
    # a session string that is HTML comes out as text, never as markup
    assert html.escape(EVE) in text and EVE not in text
    assert "decide again" not in text.lower()
    session.open_store().cast_vote("ada", 1, 0, 3)   # a vote after the decisions
    text = session.write_html_report().read_text()
    assert f"This decision counts {res['labeling']['decisions'][1]['n_votes']} votes" in text


def test_a_region_with_only_none_of_the_above_votes_shows_no_percentage(session):
    """Its disagreement is undefined (NaN): the overview says "–", not "– %"."""
    from defuse_widgets.workflow.html_report import report_content
    from defuse_widgets.workflow.html_sections import regions_section

    content = report_content(session)
    reg = content["regions"][0]
    assert reg["decision"]
    reg["decision"] = dict(reg["decision"], disagreement=float("nan"))
    row = regions_section(content).split('href="#region-0"')[1].split("</tr>")[0]
    assert "– %" not in row and "<td>–</td>" in row


def test_a_region_nobody_voted_on_reads_not_labelled_and_one_annotator_has_no_agreement(
        session):
    from defuse_widgets.workflow.html_report import report_content
    from defuse_widgets.workflow.html_sections import regions_section

    content = report_content(session)
    reg = content["regions"][0]
    reg["decision"] = dict(reg["decision"], n_votes=0, n_none=0,
                           is_misclassification_region=False)
    text = regions_section(content)
    row = text.split('href="#region-0"')[1].split("</tr>")[0]
    assert "not labelled" in row and "not a misclassification region" not in row
    card = text.split('id="region-0"')[1].split("</article>")[0]
    assert "Not labelled yet." in card
    one = content["regions"][1]
    one["votes"] = dict(list(one["votes"].items())[:1])   # a lone annotator
    card = regions_section(content).split('id="region-1"')[1].split("</article>")[0]
    assert "agreement between people needs two" in card and "Annotator agreement" not in card


def test_figure4_and_tradeoff_equal_the_session_report(session):
    session.choose_lam(1.0, by=EVE)
    text = session.write_html_report().read_text()
    res = report(session)
    assert res["figure4"]["defuse"]["chosen_by"] == EVE
    for key, row in res["figure4"].items():
        cells = _row(text, f"fig4-{key}")
        assert cells[2:5] == [f"{100 * row[k]:.1f}" for k in ("validation", "test",
                                                             "region_test")], key
        assert cells[1] == ("-" if row["n_regions"] is None else str(row["n_regions"]))
    assert f"λ = 1, chosen by {html.escape(EVE)}, by hand" in text
    # the rest of the page agrees: the session card, the verdict's λ, the table's ring
    card = text.split('<div class="k">Selected λ</div>')[1].split("</div>")[0]
    assert card.startswith('<div class="v">1 <small>defuse, chosen by') and "the rule's" in card
    rule_lam = res["corrected_model"]["rule_lam"]
    assert f"The rule&#x27;s verdict on its own λ = {rule_lam:g}" in text or \
        f"The rule's verdict on its own λ = {rule_lam:g}" in text
    assert "◯ 1<" in text
    hand = next(r for r in res["correction"]["defuse"]["tradeoff"] if r["lam"] == 1.0)
    assert ("loses validation accuracy significantly" in text) == \
        (hand.get("validation_change_high", 0) < 0)
    svg = re.search(r"<svg.*?</svg>", text, re.S).group(0)
    n_points = sum(len(arm["tradeoff"]) for arm in res["correction"].values())
    assert svg.count('r="5"') == n_points   # one dot per λ and arm
    assert svg.count('class="star"') == len(res["correction"]) + 1   # + its legend entry
    assert "Chosen by hand: λ = 1" in svg
    for arm in res["correction"].values():
        for r in arm["tradeoff"]:
            assert f"λ = {r['lam']:g}: test {100 * r['test']:.1f} %" in svg


def test_the_run_s_extra_results_survive_the_report(session):
    before = json.loads(session.folder.file("results.json").read_text())
    session.write_html_report()
    after = json.loads(session.folder.file("results.json").read_text())
    assert "novelty" in before and after["novelty"] == before["novelty"]


def test_a_session_before_labeling_reports_what_it_has(session):
    session.archive_from("labeling")
    text = session.write_html_report().read_text()
    assert text.count("Not labelled yet.") == len(session.load_regions())
    assert "No correction yet" in text and 'id="fig4-' not in text and "<svg" not in text


def test_a_path_outside_the_session(session, tmp_path):
    out = session.write_html_report(tmp_path / "shared.html")
    assert out == tmp_path / "shared.html" and "<img" in out.read_text()
    assert out.stat().st_mode & 0o777 == 0o644   # a file to share, readable by others
    assert not session.folder.listed(REPORT_FILE) and not (session.path / REPORT_FILE).exists()


@pytest.mark.parametrize("bad, error, message", [
    ("copy/r.html", ValueError, "path must lie outside the session folder"),
    ("missing/r.html", ValueError, "path must be in an existing folder; got"),
    (".", ValueError, "path must name a file, not a folder; got"),
    (3, TypeError, "path must be a str or os.PathLike naming an HTML file; got 3"),
    ("", ValueError, "path must name an HTML file; got an empty path"),
])
def test_bad_paths_name_the_parameter(session, tmp_path, bad, error, message):
    bad = tmp_path / bad if isinstance(bad, str) and bad else bad
    with pytest.raises(error, match=re.escape(message)):
        session.write_html_report(bad)
    with pytest.raises(error, match="--html must"):
        check_report_path(bad, session.path, name="--html")


def test_cli_report_html(session, tiny_models, contrarian, monkeypatch, capsys, tmp_path):
    import defuse_widgets.models.pretrained as pretrained

    monkeypatch.setattr(pretrained, "load_pretrained", lambda *a, **k: (*tiny_models,
                                                                         contrarian))
    folder = str(session.path)
    session.close()
    before = {p.name: p.read_bytes() for p in session.path.iterdir() if p.is_file()}
    assert main(["report", "--session", folder]) == 0   # without --html: reads only
    out = capsys.readouterr().out
    assert "Defuse" in out and "written" not in out and "HTML" not in out
    assert {p.name: p.read_bytes() for p in session.path.iterdir() if p.is_file()} == before
    assert main(["report", "--session", folder, "--html"]) == 0
    out = capsys.readouterr().out
    assert "Defuse" in out and f"HTML report written to {session.path / REPORT_FILE}" in out
    assert session.folder.listed(REPORT_FILE)
    assert main(["report", "--session", folder, "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file()
    assert main(["report", "--session", folder, "--html", str(tmp_path / "r.html")]) == 0
    (tmp_path / "mine.html").write_text("<p>my notes</p>")   # a user's own file is kept
    assert main(["report", "--session", folder, "--html", str(tmp_path / "mine.html")]) == 2
    assert "not a Defuse report" in capsys.readouterr().err
    assert (tmp_path / "mine.html").read_text() == "<p>my notes</p>"
    assert main(["report", "--session", folder, "--html", str(tmp_path / "no" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "--html must be in an existing folder; got" in err and "Traceback" not in err
