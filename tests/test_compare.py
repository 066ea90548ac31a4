"""`compare` and `diff` on the committed reports (the reference server in both behaviours, recorded
in cassettes/reference-*), and on copies of them changed to show each kind of change."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_report import Page

from conformance import cli
from conformance.catalog import load_catalog
from conformance.cli import main
from conformance.compare import (
    Changes,
    ReportError,
    diff,
    load_report,
    matrix,
    render_changes,
    render_html,
    render_markdown,
)
from conformance.report import build_report

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = {vendor: ROOT / "reports" / f"reference-{vendor}" / "report.json" for vendor in ("openai", "fireworks")}


@pytest.fixture(scope="module")
def openai() -> dict:
    return load_report(COMMITTED["openai"])


@pytest.fixture(scope="module")
def fireworks() -> dict:
    return load_report(COMMITTED["fireworks"])


def write(path: Path, report: dict) -> Path:
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def with_outcome(report: dict, check_id: str, outcome: str, observed: str | None = "keep") -> dict:
    """A copy of `report` in which one check (and the summary) says `outcome`."""
    changed = copy.deepcopy(report)
    row = next(r for r in changed["results"] if r["check_id"] == check_id)
    changed["summary"][row["outcome"]] -= 1
    changed["summary"][outcome] += 1
    row["outcome"] = outcome
    if observed != "keep":
        row["observed"] = observed
    return changed


def test_the_committed_reports_are_the_reference_server_in_both_behaviours(openai, fireworks) -> None:
    for vendor, report in (("openai", openai), ("fireworks", fireworks)):
        assert report["endpoint"]["name"] == f"reference-{vendor}" and report["profile"]["name"] == "none"
        assert report["complete"] and report["summary"]["pass"] == len(report["results"]) > 0


@pytest.mark.parametrize("vendor", sorted(COMMITTED))
def test_the_committed_reports_match_a_replay_of_the_committed_cassettes(vendor, tmp_path: Path) -> None:
    """The reports are what the cassettes give today: re-record both with `nox -s record_reference`."""
    code = cli.main(["run", "--replay", str(ROOT / "cassettes" / f"reference-{vendor}"), "--profile", "none",
                     "--report-dir", str(tmp_path)])
    assert code == 0
    changes = diff(load_report(COMMITTED[vendor]), load_report(tmp_path))
    assert changes.empty, render_changes(changes)


def test_matrix_has_entries_down_and_endpoints_across(openai, fireworks) -> None:
    rows = matrix([openai, fireworks])
    catalog_order = [entry.id for entry in load_catalog()]
    assert [row.entry_id for row in rows] == [i for i in catalog_order if i in {e["id"] for e in openai["entries"]}]
    for column, report in enumerate((openai, fireworks)):
        entries = {entry["id"]: entry for entry in report["entries"]}
        for row in rows:
            cell = row.cells[column]
            assert list(cell.observed) == entries[row.entry_id]["observed"]
            assert cell.outcome == entries[row.entry_id]["outcome"]
    differing = {row.entry_id for row in rows if row.differs}
    assert "stream-usage-default" in differing and "completion-schema" not in differing


def test_matrix_marks_entries_a_report_did_not_check(openai, fireworks) -> None:
    partial = copy.deepcopy(fireworks)
    partial["entries"] = [e for e in partial["entries"] if e["id"] != "best-of"]
    row = next(row for row in matrix([openai, partial]) if row.entry_id == "best-of")
    assert row.cells[1] is None and row.differs


def test_markdown_matrix(openai, fireworks) -> None:
    failing = with_outcome(fireworks, "best-of/completions", "fail")
    failing["profile"]["name"] = "openai"
    failing["entries"] = [{**e, "outcome": "fail"} if e["id"] == "best-of" else e for e in failing["entries"]]
    text = render_markdown([openai, fireworks, failing])
    # Two runs of one endpoint are told apart by what differs between them: here the profile.
    assert "| Entry | reference-openai | reference-fireworks, profile none | reference-fireworks, profile openai |" \
        in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(openai["entries"])
    assert all(len(row.replace("\\|", "").split("|")) == 6 for row in rows)
    assert "| `stream-usage-default` ≠ | openai | fireworks | fireworks |" in rows
    assert "| `completion-schema` | openai | openai | openai |" in rows
    assert "| `best-of` ≠ | openai | fireworks | ❌ fail: fireworks |" in rows


def test_html_matrix_is_self_contained_and_coloured(openai, fireworks) -> None:
    failing = copy.deepcopy(fireworks)
    failing["profile"]["name"] = "openai"
    failing["entries"] = [{**e, "outcome": "fail"} if e["observed"] == ["fireworks"] else e
                          for e in failing["entries"]]
    html = render_html([openai, failing])
    assert html.lstrip().lower().startswith("<!doctype html>") and "<script" not in html.lower()
    page = Page()
    page.feed(html)
    page.close()
    assert page.open == []
    for tag, attributes in page.tags:
        assert not set(attributes) & {"src", "href", "srcset", "action"}, tag
    cells = [attributes["class"] for tag,
             attributes in page.tags if tag == "td" and "cell" in (attributes.get("class") or "")]
    assert cells.count("cell pass") == len(openai["entries"]) + sum(e["outcome"] == "pass" for e in failing["entries"])
    assert cells.count("cell fail") == sum(e["outcome"] == "fail" for e in failing["entries"]) > 0
    assert "reference-fireworks" in "".join(page.text)


def test_behaviour_flips_fail_the_gate_unless_accepted(openai, fireworks) -> None:
    """Under profile none every check passes, so only flips tell a provider's users what changed."""
    changes = diff(openai, fireworks)
    before = {r["check_id"]: r["observed"] for r in openai["results"]}
    flipped = {r["check_id"] for r in fireworks["results"] if r["observed"] != before[r["check_id"]]}
    assert {change.check_id for change in changes.flips} == flipped and flipped
    assert not (changes.new_failures or changes.fixes or changes.new_inconclusives or changes.added or changes.removed)
    assert changes.regressed
    text = render_changes(changes)
    assert f"## Behaviour flips ({len(flipped)})" in text
    assert f"**Regression: {len(flipped)} behaviour flip(s) (accept them with --accept-behaviour-changes).**" in text
    assert "| `stream-usage-default/chat` | ✅ pass · openai | ✅ pass · fireworks |" in text
    accepted = diff(openai, fireworks, accept_behaviour_changes=True)
    assert not accepted.regressed and accepted.flips == changes.flips
    assert "No regression (behaviour flips accepted" in render_changes(accepted)


def test_diff_gates_flips_with_the_same_flag_as_run(capsys) -> None:
    assert main(["diff", str(COMMITTED["openai"]), str(COMMITTED["fireworks"])]) == 1
    assert "Behaviour flips" in capsys.readouterr().out
    assert main(["diff", str(COMMITTED["openai"]), str(COMMITTED["fireworks"]), "--accept-behaviour-changes"]) == 0


def test_diff_of_a_report_with_itself_is_empty(capsys) -> None:
    assert main(["diff", str(COMMITTED["openai"]), str(COMMITTED["openai"].parent)]) == 0
    assert "No changes" in capsys.readouterr().out


def test_a_new_failure_is_a_regression(openai, tmp_path: Path, capsys) -> None:
    current = write(tmp_path / "current.json", with_outcome(openai, "best-of/completions", "fail"))
    assert main(["diff", str(COMMITTED["openai"]), str(current)]) == 1
    out = capsys.readouterr().out
    assert "**Regression: 1 new failure(s).**" in out and "## New failures (1)" in out
    assert "| `best-of/completions` | ✅ pass · openai | ❌ fail · openai |" in out


def test_each_kind_of_change(openai) -> None:
    baseline = with_outcome(openai, "best-of/completions", "error", observed=None)
    baseline = with_outcome(baseline, "logit-bias/chat", "skip")
    baseline = with_outcome(baseline, "n-choices/chat", "fail")
    baseline["results"] = [r for r in baseline["results"] if r["check_id"] != "echo-on-chat/chat"]
    current = with_outcome(openai, "logit-bias/chat", "inconclusive", observed="inconclusive")
    current = with_outcome(current, "raw-output/chat", "skip")
    current["results"] = [r for r in current["results"] if r["check_id"] != "completion-echo/completions"]
    changes = diff(baseline, current)
    ids = {name: [c.check_id for c in getattr(changes, name)] for name, _ in Changes.CATEGORIES}
    assert ids == {"new_failures": [], "fixes": ["n-choices/chat", "best-of/completions"], "flips": [],
                   "new_inconclusives": ["logit-bias/chat"], "other": ["raw-output/chat"],
                   "added": ["echo-on-chat/chat"], "removed": ["completion-echo/completions"]}
    assert not changes.regressed


def test_a_run_that_could_not_start_is_a_regression(openai) -> None:
    lost = build_report(None, "nothing listens at http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    changes = diff(openai, lost)
    assert changes.regressed and "nothing listens" in render_changes(changes)
    assert len(changes.removed) == len(openai["results"])


@pytest.mark.parametrize(("field", "value", "says"), [
    (("profile", "name"), "openai", "different profiles (`none` → `openai`)"),
    (("model",), "another-model", "different models (`reference-model` → `another-model`)"),
    (("endpoint",), {"base_url": "https://api.example.com/v1", "name": "api.example.com", "embedded": False},
     "different endpoints (`reference-openai` → `https://api.example.com/v1`)"),
])
def test_a_baseline_of_another_endpoint_model_or_profile_is_warned_about(openai, field, value, says) -> None:
    judged = copy.deepcopy(openai)
    target = judged
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    text = render_changes(diff(openai, judged))
    assert f"> **Warning**: the runs are of different {says.split('different ')[1]}" in text
    assert text.count("**Warning**") == 1


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"),
    ("{not json", "is not JSON"),
    ("[1, 2]", "is not a conformance report: $: [1, 2] is not of type 'object'"),
    ('{"format": 1}', "is not a conformance report"),
])
def test_an_unusable_file_is_one_line_and_exit_2(content, says, tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    for argv in (["diff", str(COMMITTED["openai"]), str(path)], ["compare", str(path)]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("conformance: error: ") and says in err, err
        assert "Traceback" not in err
    with pytest.raises(ReportError):
        load_report(path)


def test_compare_prints_markdown_or_writes_both_files(tmp_path: Path, capsys) -> None:
    reports = [str(COMMITTED["openai"]), str(COMMITTED["fireworks"])]
    assert main(["compare", *reports]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# Conformance comparison\n")
    assert main(["compare", *reports, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "compare.md").read_text(encoding="utf-8") == printed
    assert "<table" in (tmp_path / "out" / "compare.html").read_text(encoding="utf-8")


def test_the_cli_runs_both_commands(tmp_path: Path, capsys) -> None:
    assert cli.main(["compare", str(COMMITTED["openai"]), "--out", str(tmp_path)]) == 0
    assert cli.main(["diff", str(COMMITTED["openai"]), str(tmp_path / "missing.json")]) == 2


LLAMA = ROOT / "reports" / "llama-cpp" / "report.json"


def test_the_three_way_matrix_places_llama_cpp_beside_openai_and_fireworks(openai, fireworks) -> None:
    llama = load_report(LLAMA)
    rows = {row.entry_id: row for row in matrix([openai, fireworks, llama])}
    assert rows["stream-usage-default"].cells[2].observed == ("fireworks", "openai")  # completions vs chat
    assert rows["stop-sequence-in-output"].cells[2].observed == ("openai",)
    assert rows["raw-output"].cells[2].observed == ("other",)
    assert "127.0.0.1" in render_markdown([openai, fireworks, llama])  # a live endpoint, named by its URL


def test_diff_from_the_openai_reference_to_llama_cpp(openai, capsys) -> None:
    changes = diff(openai, load_report(LLAMA))
    flipped = {change.check_id for change in changes.flips}
    assert {"echo-on-chat/chat", "completion-echo/completions", "stream-usage-default/completions"} <= flipped
    assert main(["diff", str(COMMITTED["openai"]), str(LLAMA)]) in (0, 1)
    assert "completion-echo/completions" in capsys.readouterr().out
