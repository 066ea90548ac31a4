"""Broken endpoints end in verdicts: every fault gives a complete, schema-valid report and a clear
one-line outcome; nothing hangs, nothing prints a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from conformance.cli import main
from conformance.schemas import schema_root

REPORT_SCHEMA = Draft202012Validator(json.loads((schema_root() / "report.schema.json").read_text()))
#: A few checks, chat and completions, streaming and not: enough to meet every fault quickly.
SAMPLE = "chat-completion-schema or completion-schema or stream-usage-default"


#: The timeout of runs whose verdict is a timeout: short, so the test is.
TIMEOUT_S = 1
#: The timeout of every other run: a verdict other than a timeout must not race one, which a loaded
#: machine (the server shares it) could lose with a 1 s timeout.
PATIENT_TIMEOUT_S = 30
TIMED_OUT = f"no complete response within the {TIMEOUT_S}s timeout"


def run_against(server, tmp_path: Path, *extra: str, timeout: float = PATIENT_TIMEOUT_S) -> tuple[int, dict]:
    code = main(["run", "--base-url", server.base_url, "--profile", "none", "--timeout", str(timeout), "-k", SAMPLE,
                 "--report-dir", str(tmp_path), *extra])
    report = json.loads((tmp_path / "report.json").read_text())
    REPORT_SCHEMA.validate(report)
    assert report["complete"] and report["status"] == "completed"
    return code, report


def by_check(report: dict) -> dict[str, dict]:
    return {row["check_id"]: row for row in report["results"]}


@pytest.mark.parametrize(("fault", "affected", "words"), [
    ("hang", "chat-completion-schema/chat", TIMED_OUT),
    ("stall-stream", "stream-usage-default/chat", TIMED_OUT),
    ("endless-stream", "stream-usage-default/completions", TIMED_OUT),
    ("http-500", "chat-completion-schema/chat", "HTTP 500"),
    ("html-error", "completion-schema/completions", "HTTP 502"),
    ("invalid-json", "chat-completion-schema/chat", "not a JSON object"),
    ("truncated-sse", "stream-usage-default/chat", "without `data: [DONE]`"),
    ("malformed-sse", "stream-usage-default/chat", "event data is not JSON"),
    ("huge-body", "chat-completion-schema/chat", "exceeded 16777216 bytes"),
])
def test_a_broken_endpoint_is_an_error_with_evidence(reference_server, tmp_path, fault, affected, words, capsys):
    server = reference_server("openai", faults=frozenset({fault}))
    code, report = run_against(server, tmp_path, timeout=TIMEOUT_S if words == TIMED_OUT else PATIENT_TIMEOUT_S)
    assert code == 1
    row = by_check(report)[affected]
    assert row["outcome"] == "error" and words in row["reason"], row["reason"]
    assert row["evidence"] and row["curl"]
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err


def test_html_error_pages_are_kept_as_evidence(reference_server, tmp_path):
    _, report = run_against(reference_server("openai", faults=frozenset({"html-error"})), tmp_path)
    evidence = by_check(report)["chat-completion-schema/chat"]["evidence"][0]
    assert evidence["status"] == 502 and "Bad Gateway" in evidence["response_body"]


@pytest.mark.parametrize("fault", ["rate-limited", "overloaded"])
def test_retry_after_is_respected_and_reported(reference_server, tmp_path, fault):
    started = time.monotonic()
    code, report = run_against(reference_server("openai", faults=frozenset({fault})), tmp_path)
    assert code == 0, [r["reason"] for r in report["results"] if r["outcome"] != "pass"]
    # Each check's one request, and the preflight chat completion, was throttled once; the listing and
    # the Messages preflight (the faults act on the OpenAI routes) were not.
    assert report["retries"] == len(report["results"]) + 1
    assert report["requests"] == 2 * report["retries"] + 2
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    retries = report["results"][0]["evidence"][0]["retries"]
    assert retries == [{"status": 429 if fault == "rate-limited" else 503, "retry_after_s": 1.0}]


@pytest.mark.parametrize(("url", "words"), [
    ("http://127.0.0.1:9/v1", "cannot reach http://127.0.0.1:9/v1"),
    ("http://no-such-host.invalid/v1", "cannot reach http://no-such-host.invalid/v1"),
])
def test_an_unreachable_endpoint_is_exit_2_with_a_report(tmp_path, url, words, capsys):
    assert main(["run", "--base-url", url, "--timeout", "3", "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    report = json.loads((tmp_path / "report.json").read_text())
    REPORT_SCHEMA.validate(report)
    assert report["status"] == "not-started" and words in report["message"]


def test_tls_to_a_plain_http_port_is_exit_2(reference_server, tmp_path, capsys):
    plain = reference_server("openai").base_url
    secure = plain.replace("http://", "https://")
    assert main(["run", "--base-url", secure, "--timeout", "3", "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach {secure}" in err and "Traceback" not in err


def test_the_token_budget_skips_what_it_cannot_pay_for(reference_server, tmp_path):
    server = reference_server("openai")
    code = main(["run", "--base-url", server.base_url, "--max-tokens-budget", "100", "--concurrency", "1",
                 "--report-dir", str(tmp_path)])
    report = json.loads((tmp_path / "report.json").read_text())
    REPORT_SCHEMA.validate(report)
    skipped = [r for r in report["results"] if r["outcome"] == "skip"]
    assert code == 1 and skipped and all("token budget of 100 cannot pay" in r["reason"] for r in skipped)
    assert report["tokens"]["total"] < 100  # it stopped, it did not just label


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_a_readable_partial_report(tmp_path, signum):
    """A slow server, a run stopped halfway: the report says `interrupted` and holds what finished."""
    server = subprocess.Popen([sys.executable, "-m", "conformance", "serve", "--port", "0", "--latency-ms", "700"],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        run = subprocess.Popen([sys.executable, "-m", "conformance", "run", "--base-url", base_url,
                                "--concurrency", "2", "--report-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
        # Stop it once the first check is judged (pytest prints its progress mark), not after a guess.
        progress = ""
        while not progress or progress[-1] not in ".FsE":
            mark = run.stdout.read(1)
            assert mark, "the run ended before judging a check"
            progress += mark
        run.send_signal(signum)
        out, err = run.communicate(timeout=30)
        out = progress + out
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert run.returncode == (130 if signum == signal.SIGINT else 143), err
    assert "Traceback" not in out + err
    report = json.loads((tmp_path / "report.json").read_text())
    REPORT_SCHEMA.validate(report)
    assert report["status"] == "interrupted" and not report["complete"]
    unjudged = [r for r in report["results"] if r["reason"].startswith("not judged: the run was interrupted")]
    assert 0 < len(report["results"]) - len(unjudged) < 37 and unjudged
    assert "not judged" in report["message"]


def test_a_dropped_keep_alive_connection_is_retried_once_and_reported():
    import httpx

    from conformance.client import EndpointClient, EndpointError

    attempts = []

    def flaky(request):
        attempts.append(request)
        if len(attempts) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"ok": True})

    client = EndpointClient("http://h.invalid/v1", None, 5, transport=httpx.MockTransport(flaky))
    exchange = client.post("chat/completions", {})
    assert exchange.ok and len(attempts) == 2
    assert exchange.retries[0]["status"] is None and client.stats.retries == 1

    always = EndpointClient("http://h.invalid/v1", None, 5, transport=httpx.MockTransport(
        lambda request: (_ for _ in ()).throw(httpx.RemoteProtocolError("Server disconnected"))))
    with pytest.raises(EndpointError, match="RemoteProtocolError"):
        always.post("chat/completions", {})
