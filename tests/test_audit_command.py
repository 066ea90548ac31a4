"""`conformance audit` end to end: documented and observed targets, exit codes, reports, speed."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from conformance import cli
from conformance.schemas import file_problems

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "data" / "audit" / "app"


def audit(*arguments: str) -> int:
    return cli.main(["audit", *arguments])


def report_of(directory: Path) -> dict:
    report = json.loads((directory / "audit-report.json").read_text(encoding="utf-8"))
    assert file_problems("audit-report.schema.json", report) == []
    return report


def verdicts(report: dict, target: str) -> dict[tuple[str, str], str]:
    """(rule, entry) -> the target's verdict."""
    return {(finding["rule"], entry["id"]): row["verdict"] for finding in report["findings"]
            for entry in finding["entries"] for row in entry["verdicts"] if row["target"] == target}


def test_without_a_target_the_documented_behaviours_are_listed_and_nothing_fails(tmp_path, capsys):
    assert audit(str(APP), "--report-dir", str(tmp_path)) == 0
    report = report_of(tmp_path)
    assert [t["name"] for t in report["targets"]] == ["openai", "fireworks"]
    assert report["failing_targets"] == []
    assert set(report["relied_on"]) == {
        "stop-sequence-in-output", "context-overflow-default", "chat-logprobs-boolean", "top-logprobs-range",
        "sse-framing", "chunk-schema", "stream-error-frame", "stream-usage-default", "stream-options-include-usage",
        "model-identifiers",
        "chat-completion-schema"}
    fireworks = verdicts(report, "fireworks")
    assert fireworks[("stop", "stop-sequence-in-output")] == "may-break"  # its two pages disagree
    assert fireworks[("stream-usage-read", "stream-usage-default")] == "breaks"
    assert set(verdicts(report, "openai").values()) == {"holds"}
    [stop] = [f for f in report["findings"] if f["rule"] == "stop"]
    assert [use["where"] for use in stop["uses"]] == [f"{APP / 'assistant.py'}:12"]
    assert stop["fix"].startswith("strip the stop string client-side")
    for name in ("audit-report.md", "audit-report.html", "audit-junit.xml"):
        assert (tmp_path / name).is_file()
    assert "stop: stop-sequence-in-output" in capsys.readouterr().out


def test_the_embedded_fireworks_server_breaks_what_the_app_relies_on(tmp_path):
    assert audit(str(APP), "--embedded", "fireworks", "--report-dir", str(tmp_path)) == 1
    report = report_of(tmp_path)
    assert report["failing_targets"] == ["embedded-fireworks"]
    observed = verdicts(report, "embedded-fireworks")
    assert observed[("stop", "stop-sequence-in-output")] == "breaks"
    assert observed[("stream-usage-read", "stream-usage-default")] == "breaks"
    assert observed[("stream", "sse-framing")] == "holds"
    [stop] = [f for f in report["findings"] if f["rule"] == "stop"]
    [row] = [r for r in stop["entries"][0]["verdicts"] if r["target"] == "embedded-fireworks"]
    # Only the chat checks ran for a chat app, and the row says what the target did.
    assert row["checks"] == ["stop-sequence-in-output/chat"]
    assert "the text ends with the stop string" in row["does"]
    ran = json.loads((tmp_path / "target-1" / "report.json").read_text(encoding="utf-8"))
    assert all(r["check_id"].split("/")[1] in ("chat", "models") for r in ran["results"])
    assert "❌ breaks" in (tmp_path / "audit-report.md").read_text(encoding="utf-8")
    assert 'failures="0"' not in (tmp_path / "audit-junit.xml").read_text(encoding="utf-8").split("<testsuite ")[3]


def test_the_embedded_openai_server_keeps_every_assumption(tmp_path):
    assert audit(str(APP), "--embedded", "openai", "--report-dir", str(tmp_path)) == 0
    assert set(verdicts(report_of(tmp_path), "embedded-openai").values()) == {"holds"}


def test_a_target_deviating_on_one_entry_breaks_only_the_uses_relying_on_it(reference_server, tmp_path):
    server = reference_server("openai", {"stop-sequence-in-output": "fireworks"})
    assert audit(str(APP), "--base-url", server.base_url, "--profile", "fireworks", "--report-dir", str(tmp_path)) == 1
    observed = verdicts(report_of(tmp_path), server.base_url)
    breaking = {key for key, word in observed.items() if word != "holds"}
    assert breaking == {("stop", "stop-sequence-in-output"), ("finish-reason-read", "stop-sequence-in-output")}


def test_checks_that_cannot_be_judged_are_never_read_as_holding(reference_server, tmp_path):
    server = reference_server("openai", faults=frozenset({"http-500"}))
    assert audit(str(APP), "--base-url", server.base_url, "--report-dir", str(tmp_path)) == 1
    observed = verdicts(report_of(tmp_path), server.base_url)
    assert observed[("stop", "stop-sequence-in-output")] == "not-judged"
    assert "holds" not in {observed[key] for key in observed if key[1] != "model-identifiers"}


def test_a_target_that_cannot_be_used_is_exit_2_with_a_report(tmp_path, capsys):
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert audit(str(APP), "--base-url", f"http://127.0.0.1:{port}/v1", "--report-dir", str(tmp_path)) == 2
    assert report_of(tmp_path)["failing_targets"] == [f"http://127.0.0.1:{port}/v1"]
    assert "could not run" in capsys.readouterr().err


def test_usage_errors(tmp_path, monkeypatch, capsys):
    assert audit(str(tmp_path / "missing")) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert audit(str(APP), "--profile", "no-such-profile") == 2
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert audit(str(APP), "--embedded", "openai") == 2
    assert "OPENAI_BASE_URL" in capsys.readouterr().err


def test_text_from_the_code_stays_inert_in_every_report(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    hostile = "`|<script>alert(1)</script>\n# heading ](http://x)"
    (source / "app.py").write_text("import openai\n"
                                   f"openai.chat.completions.create(model='m', messages=[], stop=[{hostile!r}])\n")
    reports = tmp_path / "reports"
    assert audit(str(source), "--report-dir", str(reports)) == 0
    markdown = (reports / "audit-report.md").read_text(encoding="utf-8")
    [line] = [line for line in markdown.splitlines() if "app.py:2" in line and "alert" in line]
    assert "# heading" in line and "\n# heading" not in markdown
    assert "<script>" not in (reports / "audit-report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;" in (reports / "audit-report.html").read_text(encoding="utf-8")


def test_a_10000_file_repository_is_audited_within_a_minute(tmp_path):
    spec = importlib.util.spec_from_file_location("audit_benchmark", ROOT / "benchmarks" / "audit_benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    benchmark.generate_repository(tmp_path / "repository", 10_000)
    started = time.perf_counter()
    assert audit(str(tmp_path / "repository"), "--report-dir", str(tmp_path / "reports")) == 0
    elapsed = time.perf_counter() - started
    report = report_of(tmp_path / "reports")
    assert report["files_seen"] == 9_000  # the 1,000 Markdown files are not sources; node_modules is skipped
    assert report["files_parsed"] == 3_000
    assert elapsed < 60, f"{elapsed:.1f} s"


@pytest.mark.parametrize("argv", [["audit", "--help"]])
def test_help_names_the_options(argv, capsys):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--base-url", "--embedded", "--profile", "--report-dir"))


def test_the_console_lists_at_most_20_problems_and_counts_the_rest(tmp_path, capsys):
    for number in range(25):
        (tmp_path / f"broken{number:02}.py").write_text("import openai\ndef f(:\n")
    assert audit(str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.count("  problem: ") == 20 and "... and 5 more problems" in out


def test_credentials_never_reach_the_reports(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text(
        "import openai\n"
        "openai.chat.completions.create(model='m', messages=[], stop=['sk-given-key-1234'],\n"
        "                               extra_headers={'Authorization': 'Bearer sk-written-in-code-5678'})\n")
    reports = tmp_path / "reports"
    assert audit(str(source), "--api-key", "sk-given-key-1234", "--report-dir", str(reports)) == 0
    for path in reports.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "sk-given-key-1234" not in text and "sk-written-in-code-5678" not in text, path.name
    assert "<redacted>" in (reports / "audit-report.json").read_text(encoding="utf-8")
