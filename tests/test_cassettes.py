"""Record once, replay offline, re-judge under another profile, never leak a key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conformance.cassettes import CassetteStore, RecordingTransport, ReplayTransport, Scrubber, cassette_name
from conformance.checks import REGISTRY
from conformance.cli import main
from conformance.client import EndpointClient
from conformance.redaction import Redactor
from conformance.reference_server.config import ServerConfig
from tests.committed_recordings import ROOT, assert_replay_agrees_with_report, replay, results

SENTINEL = "sk-sentinel-0123456789abcdef"
TIMING = ("duration_s", "elapsed_ms", "first_byte_ms")


def without_timing(value):
    """Report rows with the wall-clock fields removed: everything else must replay identically."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def rows(report_dir: Path) -> list[dict]:
    return without_timing(json.loads((report_dir / "report.json").read_text())["results"])


@pytest.mark.parametrize("vendor", ["openai", "fireworks"])
def test_record_then_replay_gives_identical_rows(reference_server, tmp_path, vendor):
    server = reference_server(vendor)
    cassettes = tmp_path / "cassettes"
    assert main(["run", "--base-url", server.base_url, "--profile", "none", "--record", str(cassettes),
                 "--report-dir", str(tmp_path / "live")]) == 0
    assert len(list(cassettes.glob("*.yaml"))) == len(REGISTRY)
    assert main(["run", "--replay", str(cassettes), "--profile", "none", "--report-dir", str(tmp_path / "again")]) == 0
    assert rows(tmp_path / "live") == rows(tmp_path / "again")
    live = json.loads((tmp_path / "live" / "report.json").read_text())
    replayed = json.loads((tmp_path / "again" / "report.json").read_text())
    # The listing and the preflights (one per API family) that resolve the endpoint are live only;
    # everything else replays.
    assert replayed["requests"] == live["requests"] - 3 and replayed["mode"] == "replay"
    assert replayed["tokens"]["total"] < live["tokens"]["total"]


def test_a_sentinel_key_reaches_neither_cassettes_nor_reports(reference_server, tmp_path):
    server = reference_server("openai", api_key=SENTINEL)
    assert main(["run", "--base-url", server.base_url, "--api-key", SENTINEL, "--record", str(tmp_path / "c"),
                 "--report-dir", str(tmp_path / "r")]) == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > len(REGISTRY)
    leaks = [str(p) for p in files if SENTINEL.encode() in p.read_bytes()]
    assert leaks == []


def test_the_scrubber_removes_the_key_from_urls_headers_and_bodies():
    scrub = Scrubber(Redactor(SENTINEL))
    assert SENTINEL not in scrub.url(f"https://h/v1/models?api_key={SENTINEL}&x=1")
    assert "token=%3Credacted%3E" in scrub.url("https://h/v1/models?token=abc")
    assert SENTINEL not in scrub.url(f"https://h/{SENTINEL}/v1")
    headers = scrub.headers(httpx.Headers({"Authorization": f"Bearer {SENTINEL}", "api-key": SENTINEL,
                                           "x-api-key": SENTINEL, "cookie": "a=b", "x-echo": SENTINEL}))
    assert set(headers) == {"x-echo"} and SENTINEL not in headers["x-echo"][0]
    assert SENTINEL not in scrub.body(f'{{"key": "{SENTINEL}"}}'.encode())


RAW_STREAM = b': keep-alive\r\ndata: {"a": 1}\r\n\r\ndata: {"b": "caf\xc3\xa9"}\n\ndata: [DONE]\n\n'


def test_streams_replay_byte_exact(tmp_path):
    upstream = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=RAW_STREAM))
    store = CassetteStore(tmp_path)
    recorder = EndpointClient("http://127.0.0.1:1/v1", None, 5, transport=RecordingTransport(store, upstream))
    live = recorder.request("POST", "chat/completions", {"stream": True}, check="probe/x")
    store.save({"endpoint": "mock", "base_url": "http://127.0.0.1:1/v1", "model": "m"})
    replayer = EndpointClient("http://127.0.0.1:1/v1", None, 5, transport=ReplayTransport(CassetteStore(tmp_path)))
    again = replayer.request("POST", "chat/completions", {"stream": True}, check="probe/x")
    assert live.body == again.body == RAW_STREAM


def test_an_aborted_stream_is_recorded_as_far_as_it_was_read(tmp_path):
    upstream = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"},
        content=iter([b'data: {"n": %d}\n\n' % i for i in range(50)])))  # one event per read
    store = CassetteStore(tmp_path)
    client = EndpointClient("http://h/v1", None, 5, transport=RecordingTransport(store, upstream))
    aborted = client.request("POST", "chat/completions", {}, check="abort", abort_after_events=2)
    assert aborted.aborted_after == 2
    store.save({"endpoint": "mock", "base_url": "http://h/v1", "model": "m"})
    recorded = CassetteStore(tmp_path).load("abort")[0][1]["body"]["string"]
    assert recorded == aborted.body and recorded.count(b"data:") < 50


def test_a_check_without_a_cassette_is_not_recorded_not_an_error(reference_server, tmp_path):
    cassettes = tmp_path / "c"
    server = reference_server("openai")
    assert main(["run", "--base-url", server.base_url, "--record", str(cassettes), "-k", "stream-usage-default",
                 "--report-dir", str(tmp_path / "live")]) == 0
    (cassettes / cassette_name("stream-usage-default/chat")).unlink()  # as if the check were added since
    assert main(["run", "--replay", str(cassettes), "--profile", "none", "-k", "stream-usage-default",
                 "--report-dir", str(tmp_path / "r")]) == 0
    rows = results(tmp_path / "r")
    result = rows["stream-usage-default/chat"]
    assert result["outcome"] == "skip" and result["evidence"] == []
    assert result["reason"].startswith(f"not recorded in {cassettes}: record it with `conformance run --record")
    assert rows["stream-usage-default/completions"]["outcome"] == "pass"
    # Under a profile that expects a verdict, a check not judged keeps the run from passing.
    assert main(["run", "--replay", str(cassettes), "-k", "stream-usage-default",
                 "--report-dir", str(tmp_path / "judged")]) == 1


def test_a_stale_cassette_is_reported_not_replayed(reference_server, tmp_path):
    cassettes = tmp_path / "c"
    assert main(["run", "--base-url", reference_server("openai").base_url, "--record", str(cassettes),
                 "-k", "logit-bias", "--report-dir", str(tmp_path / "live")]) == 0
    path = cassettes / cassette_name("logit-bias/chat")
    recorded = path.read_text()
    assert '"1000":1' in recorded
    path.write_text(recorded.replace('"1000":1', '"1000":2'))  # as if the probe had changed since
    assert main(["run", "--replay", str(cassettes), "-k", "logit-bias", "--report-dir", str(tmp_path / "r")]) == 1
    reason = json.loads((tmp_path / "r" / "report.json").read_text())["results"][0]["reason"]
    assert "no recorded answer for POST" in reason


def test_replaying_a_directory_without_a_recording_is_a_usage_error(tmp_path, capsys):
    assert main(["run", "--replay", str(tmp_path), "--report-dir", str(tmp_path / "r")]) == 2
    assert "cannot replay" in capsys.readouterr().err


@pytest.mark.block_network
@pytest.mark.parametrize("vendor", ["openai", "fireworks"])
def test_committed_reference_cassettes_replay_offline_with_their_verdicts(tmp_path, vendor):
    """The shipped cassettes, replayed with sockets blocked, hold to reports/reference-<vendor>/:
    any change of verdict fails here; a check added since shows as not recorded."""
    replayed = assert_replay_agrees_with_report(f"reference-{vendor}", tmp_path / "none")
    expected = ServerConfig.for_vendor(vendor)
    judged = [row for row in replayed.values() if row["observed"] is not None]
    assert judged and all(row["observed"] == expected.acts(row["entry_id"]) for row in judged)
    # Re-judging costs nothing: the same recording under both shipped profiles.
    other = "openai" if vendor == "fireworks" else "fireworks"
    own = replay(f"reference-{vendor}", vendor, tmp_path / "own")
    assert {row["outcome"] for row in own.values() if row["observed"] is not None} <= {"pass", "inconclusive"}
    assert any(row["outcome"] == "fail" for row in replay(f"reference-{vendor}", other, tmp_path / "other").values())


@pytest.fixture
def throwaway_check():
    """A check registered for one test only, as a newcomer adds one: it has no cassette anywhere."""
    from conformance.checks.base import check

    @check("logit-bias", variant="throwaway")
    def throwaway(ctx):
        pytest.fail("a check that is not recorded must not be probed")

    yield REGISTRY["logit-bias/throwaway"]
    REGISTRY.remove("logit-bias/throwaway")


@pytest.mark.block_network
@pytest.mark.parametrize("name", ["reference-openai", "reference-fireworks"])
def test_adding_a_check_turns_no_replay_test_red(throwaway_check, tmp_path, name):
    replayed = assert_replay_agrees_with_report(name, tmp_path)
    assert replayed[throwaway_check.id]["outcome"] == "skip"
    assert replayed[throwaway_check.id]["reason"].startswith(f"not recorded in {ROOT / 'cassettes' / name}")
