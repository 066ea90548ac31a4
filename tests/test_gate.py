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

from conformance._toml import toml_reader
from conformance.catalog import CatalogError, load_catalog, parse_catalog
from conformance.checks import REGISTRY
from conformance.cli import main
from conformance.client import EndpointClient
from conformance.endpoint import preflight_problem, resolve
from conformance.exchange import Exchange
from conformance.profiles import Profile, load_profile
from conformance.report import write_reports
from conformance.runner import ConformanceRun, execute
from tests.hostile_server import HostileServer

SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json").read_text(encoding="utf-8")))


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def run(tmp_path: Path, *argv: str | None) -> tuple[int, dict]:
    """`conformance run` with `argv`; a flag whose value is None (a server without a key) is left out."""
    given = [word for index, word in enumerate(argv)
             if word is not None and not (index + 1 < len(argv) and argv[index + 1] is None)]
    code = main(["run", "--report-dir", str(tmp_path), *given])
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    SCHEMA.validate(report)
    return code, report


# ---- point 2: the preflight --------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "words", "requests"), [
    # the listing and both families' preflights (sent at once); the first names the model
    (("--model", "no-such-model"), "model 'no-such-model' is not served", 3),
    # the listing and one refused preflight per API family
    (("--base-url-path", "/v2"), "is the base URL's path right?", 3),
])
def test_an_endpoint_that_cannot_answer_stops_the_run_before_any_check(reference_server, tmp_path, capsys,
                                                                       argv, words, requests):
    server = reference_server("openai")
    base_url = server.base_url
    if argv[0] == "--base-url-path":
        base_url, argv = base_url.rsplit("/", 1)[0] + argv[1], ("--model", server.config.model_id)
    code, report = run(tmp_path, "--base-url", base_url, *argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert report["status"] == "not-started" and words in report["message"] and report["results"] == []
    assert report["requests"] == requests and report["tokens"]["total"] == 0


def test_a_wrong_path_is_named_even_without_a_model(reference_server, tmp_path, capsys):
    """With no --model, the listing's 404 already says the path is wrong (not "pass --model")."""
    code, report = run(tmp_path, "--base-url", reference_server("openai").base_url.rsplit("/", 1)[0] + "/v2")
    err = capsys.readouterr().err
    assert code == 2 and "is the base URL's path right?" in err and "pass --model" not in err
    assert report["status"] == "not-started" and report["requests"] == 1


def test_every_request_sent_is_counted_the_listing_and_preflight_included(reference_server, tmp_path):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "-k", "model-identifiers")
    assert code == 0
    # GET /models and the preflight POSTs (one per API family) before the checks, then the check's own GET /models.
    assert report["requests"] == 4
    assert report["tokens"]["total"] > 0


# ---- point 1: a refusal is the parameter's only when the control request succeeds ---------------


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


#: Checks whose verdict reads a refusal of the whole request as the endpoint's answer (an unknown
#: model's 404, a feature that is not served), with the requests a refusal takes: the refused one
#: and the control that tells it from a wrong path or a refused key. models-object-shape sends its
#: control first (the listing), and judges the lookup only once the listing was answered.
WHOLE_REFUSALS = {"error-envelope/unknown-model": 2, "error-envelope/unknown-model-lookup": 2,
                  "embeddings/embeddings": 2, "models-object-shape/models": 1, "json-schema-subset/chat": 2}


@pytest.mark.parametrize("wrong", ["path", "key"])
def test_a_refusal_of_everything_is_never_a_verdict(reference_server, wrong):
    """A wrong base path answers 404 with an error envelope to every request, a refused key 401:
    neither is an unknown model's 404 nor a missing feature, so no check may observe anything."""
    server = reference_server("openai", api_key="sk-gate-0123456789")
    base_url = server.base_url.rsplit("/", 1)[0] + "/v2" if wrong == "path" else server.base_url
    client = EndpointClient(base_url, server.config.api_key if wrong == "path" else "sk-wrong", timeout=10)
    try:
        results = [execute(REGISTRY[check_id], CATALOG[REGISTRY[check_id].entry], Profile("none", ""), client,
                           server.config.model_id, None) for check_id in WHOLE_REFUSALS]
    finally:
        client.close()
    judged = {r.check_id: f"{r.observed}: {r.reason}" for r in results if r.outcome not in ("error", "inconclusive")}
    assert judged == {}
    for result in results:  # every answer is named, and every request is evidence
        sent = WHOLE_REFUSALS[result.check_id]
        assert len(result.evidence) == sent, result.explain()
        assert result.reason.count("HTTP 404" if wrong == "path" else "HTTP 401") == sent, result.reason


@pytest.mark.parametrize(("mode", "outcome", "words"), [
    ("embeddings-encoding-400", "pass", "encoding_format 'float' rejected: HTTP 400"),
    ("embeddings-401", "error", "an answer about the caller, not about embeddings"),
])
def test_a_refused_embeddings_request_is_unsupported_only_when_the_feature_is_missing(reference_server, mode,
                                                                                      outcome, words):
    """A 400 the request without encoding_format is not given, or a 401 while chat is served, is
    not "the endpoint does not serve embeddings" (before: `unsupported` on any 4xx)."""
    server = reference_server("openai")
    with HostileServer(mode, server.base_url) as hostile:
        client = EndpointClient(hostile.base_url, None, timeout=10)
        try:
            result = execute(REGISTRY["embeddings/embeddings"], CATALOG["embeddings"], Profile("none", ""), client,
                             server.config.model_id, None)
        finally:
            client.close()
    assert result.outcome == outcome and result.observed != "unsupported", result.explain()
    assert words in result.reason


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


# ---- point 3: profiles and the catalog are validated against their own schemas -------------------



@pytest.mark.parametrize(("text", "key"), [
    ('name = "p"\n[expects]\nstream-usage-default = ["fireworks"]\n', "expects"),
    ('name = "p"\nstream-usage-default = ["fireworks"]\n', "stream-usage-default"),
    ('name = "p"\nnmae = "typo"\n[expect]\nn-choices = ["openai"]\n', "nmae"),
    ('name = "p"\nextends = "fireworkz"\n', "fireworkz"),
    ('name = "p"\n[expect]\nn-choices = ["openai"]\n[expect.nested]\nx = 1\n', "nested"),
])
def test_a_profile_with_anything_unknown_is_a_usage_error_naming_key_and_file(tmp_path, capsys, text, key):
    profile = tmp_path / "mine.toml"
    profile.write_text(text, encoding="utf-8")
    code = main(["run", "--profile", str(profile), "--report-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and key in err and str(profile) in err and len(err.strip().splitlines()) == 1, err


def test_the_catalog_refuses_unknown_keys():
    data = toml_reader.loads((Path(__file__).resolve().parents[1] / "conformance" / "catalog"
                              / "differences.toml").read_text(encoding="utf-8"))
    data["entry"][3]["behaviour"] = {"openai": "typo of behaviours"}
    with pytest.raises(CatalogError, match=r"differences.toml.*'behaviour' was unexpected"):
        parse_catalog(data)
    del data["entry"][3]["behaviour"]
    data["sources"]["O1"]["vendr"] = "openai"
    with pytest.raises(CatalogError, match="vendr"):
        parse_catalog(data)


# ---- point 4: extends, and the common surface whatever the profile ---------------------------------

def test_a_profile_that_does_not_list_the_surface_still_fails_on_it(reference_server, tmp_path):
    server = reference_server("openai", faults=frozenset({"sse-id-changes"}))
    profile = tmp_path / "mine.toml"
    profile.write_text('name = "mine"\nextends = "none"\n[expect]\nn-choices = ["openai"]\n', encoding="utf-8")
    code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", server.config.api_key,
                       "--profile", str(profile), "-k", "sse-framing or n-choices")
    entries = {row["id"]: row for row in report["entries"]}
    assert code == 1
    assert entries["sse-framing"]["outcome"] == "fail"
    assert entries["sse-framing"]["expected_from"] == "surface (always)"
    assert entries["n-choices"]["expected_from"] == "mine.toml"
    assert "surface (always)" in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "surface (always)" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_extends_brings_the_base_and_the_file_overrides_it(reference_server, tmp_path):
    server = reference_server("openai", {"stream-usage-default": "fireworks"}, faults=frozenset({"sse-id-changes"}))
    profile = tmp_path / "mine.toml"
    profile.write_text('name = "mine"\nextends = "openai"\n[expect]\nstream-usage-default = ["fireworks"]\n'
                       'sse-framing = ["openai", "other"]\n', encoding="utf-8")
    code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", server.config.api_key,
                       "--profile", str(profile), "-k", "stream-usage-default or sse-framing or n-choices")
    entries = {row["id"]: row for row in report["entries"]}
    assert {e: (row["outcome"], row["expected_from"]) for e, row in entries.items()} == {
        "stream-usage-default": ("pass", "mine.toml"), "sse-framing": ("pass", "mine.toml"),
        "n-choices": ("pass", "openai (extends)")}, entries
    assert code == 0


# ---- point 8: the token budget is never exceeded, and unjudged checks are no pass ----------------

def test_a_token_budget_is_never_exceeded_and_a_run_that_skipped_expected_checks_fails(reference_server, tmp_path,
                                                                                       capsys):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", server.config.api_key,
                       "--max-tokens-budget", "100")
    out = capsys.readouterr().out
    skipped = [r for r in report["results"] if r["outcome"] == "skip"]
    assert report["tokens"]["total"] <= 100, report["tokens"]
    assert skipped and all(r["reason"].startswith("not judged: the token budget of 100") for r in skipped)
    assert code == 1
    expected = [r for r in skipped if r["expected"] is not None]  # the Messages family is observed only
    assert f"{len(expected)} check(s) the profile expects were not judged" in out


def test_the_budget_also_bounds_the_sdk_and_concurrent_requests(reference_server, tmp_path):
    server = reference_server("openai")
    for budget in ("150", "400"):
        code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", server.config.api_key,
                           "--max-tokens-budget", budget, "--concurrency", "16")
        assert report["tokens"]["total"] <= int(budget), (budget, report["tokens"])
        assert code == 1


def test_a_budget_that_pays_for_everything_still_exits_0(reference_server, tmp_path):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", server.config.api_key,
                       "--max-tokens-budget", "100000000")
    assert code == 0 and report["summary"]["skip"] == 0, [r["reason"] for r in report["results"]
                                                         if r["outcome"] != "pass"]


def test_a_budget_too_small_for_the_preflight_is_exit_2_saying_so(reference_server, tmp_path, capsys):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "--max-tokens-budget", "1")
    assert code == 2 and "--max-tokens-budget is too small" in capsys.readouterr().err
    assert report["status"] == "not-started"


# ---- point 9: junit.xml agrees with report.json ------------------------------------------------

def junit_counts(directory: Path) -> dict[str, int]:
    suite = ElementTree.parse(directory / "junit.xml").getroot()
    cases = suite.findall("testcase")
    counted = {name: int(suite.get(name)) for name in ("tests", "failures", "errors", "skipped")}
    assert counted == {"tests": len(cases), "failures": sum(c.find("failure") is not None for c in cases),
                       "errors": sum(c.find("error") is not None for c in cases),
                       "skipped": sum(c.find("skipped") is not None for c in cases)}
    return counted


def test_junit_of_a_run_that_never_started_is_one_errored_testcase(tmp_path):
    code, report = run(tmp_path, "--base-url", "http://127.0.0.1:9/v1", "--timeout", "3")
    assert code == 2 and report["status"] == "not-started"
    assert junit_counts(tmp_path) == {"tests": 1, "failures": 0, "errors": 1, "skipped": 0}


def test_junit_counts_agree_with_report_json_when_checks_were_not_judged(reference_server, tmp_path):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "--api-key", server.config.api_key,
                       "--max-tokens-budget", "120")
    summary = report["summary"]
    assert junit_counts(tmp_path) == {"tests": len(report["results"]), "failures": summary["fail"],
                                      "errors": summary["error"],
                                      "skipped": summary["skip"] + summary["inconclusive"]}
    assert summary["skip"] > 0


def test_an_interrupted_run_lists_every_unjudged_check(reference_server, tmp_path):
    """The run stops (as on Ctrl-C) with checks still in flight: each is a row in report.json and a
    skipped testcase in junit.xml saying it was not judged."""
    server = reference_server("openai", latency_ms=300)
    endpoint = resolve(server.base_url, server.config.api_key, None, timeout=10)
    interrupted = ConformanceRun(endpoint, CATALOG, load_profile("openai", CATALOG), timeout=10, concurrency=2)
    selected = [check.id for check in REGISTRY][:6]
    interrupted.start(selected)
    interrupted.result(selected[0])
    interrupted.finish("interrupted", "the run was interrupted")
    write_reports(interrupted, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    SCHEMA.validate(report)
    assert [r["check_id"] for r in report["results"]] == selected and not report["complete"]
    unjudged = [r for r in report["results"] if r["reason"].startswith("not judged: the run was interrupted")]
    assert unjudged and "not judged" in report["message"]
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    skipped = {case.get("name") for case in suite.findall("testcase") if case.find("skipped") is not None}
    assert {r["check_id"] for r in unjudged} <= skipped
    assert junit_counts(tmp_path)["tests"] == len(selected)


# ---- point 10: replays say so, and a cassette directory never mixes two recordings --------------

def test_a_replayed_report_says_it_is_one_everywhere(reference_server, tmp_path, capsys):
    server = reference_server("openai")
    cassettes = tmp_path / "cassettes"
    code, live = run(tmp_path / "live", "--base-url", server.base_url, "--record", str(cassettes),
                     "-k", "stream-usage-default")
    assert code == 0 and live["mode"] == "record"
    capsys.readouterr()
    code, replayed = run(tmp_path / "again", "--replay", str(cassettes), "-k", "stream-usage-default")
    out = capsys.readouterr().out
    assert code == 0 and replayed["mode"] == "replay" and replayed["cassettes"] == str(cassettes)
    claim = f"replayed from cassettes in {cassettes}, no live requests: {replayed['requests']} recorded requests"
    assert claim in out
    assert claim in (tmp_path / "again" / "report.md").read_text(encoding="utf-8")
    html = (tmp_path / "again" / "report.html").read_text(encoding="utf-8")
    assert f"Replayed from cassettes in {cassettes}, no live requests." in html and claim in html


def recorded(cassettes: Path) -> tuple[dict, set[str]]:
    return (json.loads((cassettes / "run.json").read_text(encoding="utf-8")),
            {path.name for path in cassettes.glob("*.yaml")})


def test_recording_a_subset_from_another_endpoint_replaces_the_directory_whole(reference_server, tmp_path):
    cassettes = tmp_path / "cassettes"
    first, second = reference_server("openai"), reference_server("fireworks")
    assert run(tmp_path / "a", "--base-url", first.base_url, "--record", str(cassettes),
               "-k", "stream-usage-default or n-choices")[0] == 0
    assert run(tmp_path / "b", "--base-url", second.base_url, "--profile", "none", "--record", str(cassettes),
               "-k", "stream-usage-default")[0] == 0
    metadata, files = recorded(cassettes)
    assert metadata["base_url"] == second.base_url
    assert metadata["checks"] == ["stream-usage-default/chat", "stream-usage-default/completions"]
    assert files == {"stream-usage-default__chat.yaml", "stream-usage-default__completions.yaml"}


def test_recording_a_subset_from_the_same_endpoint_keeps_the_rest(reference_server, tmp_path):
    cassettes = tmp_path / "cassettes"
    server = reference_server("openai")
    assert run(tmp_path / "a", "--base-url", server.base_url, "--record", str(cassettes),
               "-k", "stream-usage-default or n-choices")[0] == 0
    assert run(tmp_path / "b", "--base-url", server.base_url, "--record", str(cassettes), "-k", "n-choices")[0] == 0
    metadata, files = recorded(cassettes)
    assert metadata["checks"] == ["n-choices/chat", "n-choices/completions", "stream-usage-default/chat",
                                  "stream-usage-default/completions"]
    assert files == {name.replace("/", "__") + ".yaml" for name in metadata["checks"]}
    code, replayed = run(tmp_path / "c", "--replay", str(cassettes), "-k", "stream-usage-default or n-choices")
    assert code == 0 and replayed["summary"]["pass"] == 4


@pytest.mark.parametrize(("status", "body", "words"), [
    (401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}, "API key was refused"),
    (403, b"Forbidden", "API key was refused"),
    (404, {"error": {"message": "Model not found, inaccessible, and/or not deployed"}}, "model 'm' is not served"),
    (400, {"error": {"message": "bad", "param": "model"}}, "model 'm' is not served"),
    (404, {"error": {"message": "Invalid URL (POST /v2/chat/completions)"}}, "is the base URL's path right?"),
    (404, b"Not Found", "is the base URL's path right?"),
    (422, {"error": {"message": "temperature: unexpected"}}, "refused a minimal chat completion"),
])
def test_the_preflight_says_what_is_wrong(status, body, words):
    answer = Exchange("POST", "http://h/v1/chat/completions", {}, {}, status=status,
                      body=body if isinstance(body, bytes) else json.dumps(body).encode())
    assert words in preflight_problem(answer, "m")


@pytest.mark.parametrize("status", [200, 429, 500, 502, None])
def test_the_preflight_leaves_endpoint_faults_to_the_checks(status):
    assert preflight_problem(Exchange("POST", "http://h/v1/chat/completions", {}, {}, status=status), "m") is None
