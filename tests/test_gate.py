"""A gate that is never green by accident (issue 11): the endpoint is proven usable before any
check judges it, a refusal is only a parameter's when a control request succeeds, every request
sent is counted, a run that did not judge what its profile expects does not exit 0, junit.xml
agrees with report.json, and a replayed report says it is one."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import jsonschema
import pytest

from conformance.cli import main

SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json").read_text(encoding="utf-8")))


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def run(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    code = main(["run", "--report-dir", str(tmp_path), *argv])
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    SCHEMA.validate(report)
    return code, report


# ---- point 2: the preflight --------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "words"), [
    (("--model", "no-such-model"), "model 'no-such-model' is not served"),
    (("--base-url-path", "/v2"), "is the base URL's path right?"),
])
def test_an_endpoint_that_cannot_answer_stops_the_run_before_any_check(reference_server, tmp_path, capsys,
                                                                       argv, words):
    server = reference_server("openai")
    base_url = server.base_url
    if argv[0] == "--base-url-path":
        base_url, argv = base_url.rsplit("/", 1)[0] + argv[1], ("--model", server.config.model_id)
    code, report = run(tmp_path, "--base-url", base_url, *argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert report["status"] == "not-started" and words in report["message"] and report["results"] == []


def test_every_request_sent_is_counted_the_listing_and_preflight_included(reference_server, tmp_path):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "-k", "model-identifiers")
    assert code == 0
    # GET /models and the preflight POST before the checks, then the check's own GET /models.
    assert report["requests"] == 3
    assert report["tokens"]["total"] > 0


# ---- point 1: a refusal is the parameter's only when the control request succeeds ---------------

from conformance.catalog import load_catalog  # noqa: E402
from conformance.checks import REGISTRY  # noqa: E402
from conformance.client import EndpointClient  # noqa: E402
from conformance.profiles import load_profile  # noqa: E402
from conformance.runner import execute  # noqa: E402

CATALOG = load_catalog()
#: Checks whose verdict reads a refusal as the parameter's (or the route's) doing.
ATTRIBUTING = ("penalty-parameters", "best-of", "logit-bias", "legacy-functions", "echo-on-chat", "completion-echo",
               "raw-output", "perf-metrics-in-response", "chat-logprobs-boolean", "chat-logprobs-integer",
               "top-logprobs-range", "context-length-exceeded-behavior-param", "n-choices",
               "stream-options-include-usage", "responses-api", "parameter-validation")


@pytest.mark.parametrize("wrong", ["model", "path"])
@pytest.mark.parametrize("profile_name", ["openai", "fireworks"])
def test_no_refusal_is_credited_to_a_parameter_when_the_whole_request_is_refused(reference_server, wrong,
                                                                                  profile_name):
    server = reference_server("fireworks")
    base_url = server.base_url.rsplit("/", 1)[0] + "/v2" if wrong == "path" else server.base_url
    model = "no-such-model" if wrong == "model" else server.config.model_id
    client = EndpointClient(base_url, server.config.api_key, timeout=10)
    profile = load_profile(profile_name, CATALOG)
    try:
        results = [execute(check, CATALOG[check.entry], profile, client, model, None)
                   for check in REGISTRY if check.entry in ATTRIBUTING]
    finally:
        client.close()
    assert {r.entry_id for r in results} == set(ATTRIBUTING)
    passed = [r.check_id for r in results if r.outcome == "pass"]
    assert passed == [], passed
    attributed = [r for r in results if r.outcome == "error" and "says nothing about the parameter" in r.reason]
    assert attributed, [r.headline() for r in results]
    for result in attributed:  # both answers are named, and both requests are evidence
        assert result.reason.count("HTTP 404") + result.reason.count(", 404") >= 2, result.reason
        assert len(result.evidence) >= 2


def test_a_refused_parameter_is_still_credited_when_the_control_succeeds(reference_server):
    server = reference_server("fireworks")  # refuses best_of, answers the same request without it
    client = EndpointClient(server.base_url, server.config.api_key, timeout=10)
    try:
        result = execute(REGISTRY["best-of/completions"], CATALOG["best-of"], load_profile("fireworks", CATALOG),
                         client, server.config.model_id, None)
    finally:
        client.close()
    assert (result.outcome, result.observed) == ("pass", "fireworks"), result.explain()
    assert [e["request"]["body"].get("best_of") for e in result.evidence] == [2, None]
