"""The written reports: report.json against schemas/report.schema.json, report.md's table,
report.html self-contained, junit.xml's counts, and no API key anywhere in them.

Every report comes from a real run (`conformance.cli.main`, in-process) against the reference server.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.cli import main

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json"
REPORT_FILES = ("report.json", "report.md", "report.html", "junit.xml")
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port on loopback: nothing listens there
SENTINEL = "sk-sentinel-0123456789abcdef"


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def assert_valid(validator: jsonschema.Draft202012Validator, report: dict) -> None:
    problems = [f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(report)]
    assert not problems, "report.json does not match the schema:\n" + "\n".join(problems)


def run(directory: Path, *arguments: str) -> tuple[int, dict]:
    code = main(["run", "--report-dir", str(directory), *arguments])
    return code, json.loads((directory / "report.json").read_text(encoding="utf-8"))


# The runs the report tests read: (server vendor, server faults, extra flags, expected exit code).
RUNS = {
    "openai-passes": ("openai", (), ["--profile", "openai"], 0),
    "fireworks-fails": ("fireworks", (), ["--profile", "openai"], 1),
    "server-errors": ("openai", ("http-500",), ["--profile", "openai"], 1),
}


@pytest.fixture(scope="module")
def reports(reference_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind of run once per module; the tests only read the directories."""
    directories = {}
    for name, (vendor, faults, flags, expected_code) in RUNS.items():
        directory = tmp_path_factory.mktemp(name)
        server = reference_server(vendor, faults=frozenset(faults))
        code = main(["run", "--base-url", server.base_url, "--report-dir", str(directory), *flags])
        assert code == expected_code, f"{name}: exit {code}"
        directories[name] = directory
    return directories


@pytest.fixture(params=sorted(RUNS))
def report_dir(request: pytest.FixtureRequest, reports: dict[str, Path]) -> Path:
    return reports[request.param]


def load(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text(encoding="utf-8"))


def test_every_format_is_written(report_dir: Path) -> None:
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(REPORT_FILES)


def test_report_json_matches_the_schema(validator, report_dir: Path) -> None:
    assert_valid(validator, load(report_dir))


def test_report_json_is_consistent(report_dir: Path) -> None:
    report = load(report_dir)
    assert report["status"] == "completed" and report["complete"] is True
    assert report["endpoint"]["embedded"] is False
    results = report["results"]
    assert results, "a run against the reference server judged no check"
    assert {outcome: sum(r["outcome"] == outcome for r in results) for outcome in report["summary"]} \
        == report["summary"]
    registered = {check.id: check for check in REGISTRY}
    for result in results:
        assert result["check_id"] in registered
        assert result["entry_id"] == registered[result["check_id"]].entry
    assert len({r["check_id"] for r in results}) == len(results)
    catalog_ids = [entry.id for entry in load_catalog()]
    entry_ids = [row["id"] for row in report["entries"]]
    assert entry_ids == [i for i in catalog_ids if i in {r["entry_id"] for r in results}]  # catalog order
    assert report["tokens"]["total"] == report["tokens"]["prompt"] + report["tokens"]["completion"]
    assert report["requests"] >= sum(len(r["evidence"]) for r in results) > 0


def test_the_runs_show_each_outcome_they_should(reports: dict[str, Path]) -> None:
    assert set(r["outcome"] for r in load(reports["openai-passes"])["results"]) <= {"pass", "inconclusive", "skip"}
    assert load(reports["fireworks-fails"])["summary"]["fail"] > 0
    errors = [r for r in load(reports["server-errors"])["results"] if r["outcome"] == "error"]
    assert errors and all(r["observed"] is None and r["curl"] for r in errors)


def test_the_embedded_server_is_reported_as_such(validator, tmp_path: Path) -> None:
    code, report = run(tmp_path, "--embedded-behavior", "fireworks", "--profile", "none", "-k", "stream-usage")
    assert code == 0
    assert_valid(validator, report)
    assert report["endpoint"]["embedded"] is True
    assert report["endpoint"]["name"] == "reference-fireworks"


def test_report_md_has_the_tables(report_dir: Path) -> None:
    report, markdown = load(report_dir), (report_dir / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Conformance report\n")
    assert "| Entry | Expected | Observed | Outcome | Matches documents |" in markdown
    assert "| Check | Expected | Observed | Outcome | Why |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    for result in report["results"]:
        assert any(row.startswith(f"| `{result['check_id']}` |") for row in rows), result["check_id"]
    for entry in report["entries"]:
        assert any(row.startswith(f"| `{entry['id']}` ") for row in rows), entry["id"]
    for row in rows:  # a stray | in a cell would shift the columns
        assert len(row.replace("\\|", "").split("|")) == 7, row
    if report["summary"]["fail"] or report["summary"]["error"]:
        assert "## Failures and errors" in markdown and "```sh\ncurl " in markdown


class Page(HTMLParser):
    """Every start tag with its attributes, and whether the document's tags balance."""

    VOID = {"meta", "br", "hr", "img", "link", "input", "wbr", "source"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_is_self_contained(report_dir: Path) -> None:
    report, html = load(report_dir), (report_dir / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<script" not in html.lower()
    page = Page()
    page.feed(html)
    page.close()
    assert page.open == [], f"unclosed tags: {page.open}"
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "base"}, names
    for tag, attributes in page.tags:  # nothing is fetched: no URLs in attributes, no event handlers
        for name, value in attributes.items():
            assert name not in ("src", "href", "srcset", "action") and not name.startswith("on"), (tag, name)
            assert "http://" not in (value or "") and "https://" not in (value or ""), (tag, name, value)
    assert "url(" not in html.split("</style>")[0]  # no fonts or images from the stylesheet
    ids = {attributes.get("id") for _, attributes in page.tags}
    assert {r["check_id"] for r in report["results"]} <= ids
    text = "".join(page.text)
    assert all(r["reason"] in text for r in report["results"])  # escaped, so it reads back as written


def test_junit_counts_equal_the_summary(report_dir: Path) -> None:
    report = load(report_dir)
    suite = ElementTree.parse(report_dir / "junit.xml").getroot()
    assert suite.tag == "testsuite"
    summary = report["summary"]
    assert int(suite.get("tests")) == len(report["results"])
    assert int(suite.get("failures")) == summary["fail"]
    assert int(suite.get("errors")) == summary["error"]
    assert int(suite.get("skipped")) == summary["inconclusive"] + summary["skip"]
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [r["check_id"] for r in report["results"]]
    assert sum(case.find("failure") is not None for case in cases) == summary["fail"]
    assert sum(case.find("error") is not None for case in cases) == summary["error"]
    assert sum(case.find("skipped") is not None for case in cases) == summary["inconclusive"] + summary["skip"]
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["endpoint"] == report["endpoint"]["base_url"]
    assert properties["status"] == "completed"


def test_setup_failure_report(validator, tmp_path: Path) -> None:
    code, report = run(tmp_path, "--base-url", UNREACHABLE)
    assert code == 2
    assert_valid(validator, report)
    assert report["status"] == "not-started" and report["complete"] is False
    assert report["endpoint"]["base_url"] == UNREACHABLE
    assert UNREACHABLE in report["message"]
    assert report["results"] == [] and report["entries"] == [] and report["profile"] is None
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    assert UNREACHABLE in suite.find("testcase/error").get("message")
    assert UNREACHABLE in (tmp_path / "report.md").read_text(encoding="utf-8")
    page = Page()
    page.feed((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert page.open == [] and UNREACHABLE in "".join(page.text)


def test_the_schema_catches_drift(validator, reports: dict[str, Path]) -> None:
    """The schema is strict where it matters, so a report that changes shape fails validation."""
    report = load(reports["fireworks-fails"])
    row = report["results"][0]
    broken = [
        {**report, "surprise": 1},
        {**report, "summary": {**report["summary"], "pass": -1}},
        {**report, "status": "running"},
        {**report, "requests": 1.5},
        {**report, "results": [{**row, "outcome": "passed"}]},
        {**report, "results": [{**row, "new_field": True}]},
        {**report, "results": [{**row, "expected": "openai"}]},
        {**report, "results": [{k: v for k, v in row.items() if k != "curl"}]},
        {**report, "results": [{**row, "evidence": [{"request": {}}]}]},
        {**report, "entries": [{**report["entries"][0], "outcome": "ok"}]},
        {**report, "profile": None, "model": None},  # a started run names both
    ]
    for number, instance in enumerate(broken):
        assert not validator.is_valid(instance), f"broken report #{number} validated"


def test_no_api_key_in_any_report(reference_server, validator, tmp_path: Path, capsys) -> None:
    server = reference_server("openai", api_key=SENTINEL)
    code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", SENTINEL, "--profile", "none")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert_valid(validator, report)
    assert report["requests"] > 0
    for name in REPORT_FILES:
        assert SENTINEL not in (tmp_path / name).read_text(encoding="utf-8"), f"the API key is in {name}"
        assert SENTINEL[3:] not in (tmp_path / name).read_text(encoding="utf-8"), f"part of the API key is in {name}"
    assert SENTINEL not in out + err
    curls = [line for result in report["results"] for line in result["curl"]]
    # The run's key is only ever referenced; a probe's deliberately wrong or absent key stays as sent.
    keyed = [line for line in curls if "Authorization" in line and "sk-conformance-not-a-valid-key" not in line]
    assert keyed and all('"Authorization: Bearer $OPENAI_API_KEY"' in line for line in keyed)
    assert any("Authorization" not in line for line in curls)  # error-envelope/missing-key
