"""The two API families (OpenAI's and Anthropic's Messages) in one run: which the preflight finds
served, which a run judges (`--api`, the profile's `apis`), a family not served observed as
`unsupported` with a control, and each family's requests carrying the key its own way."""

from __future__ import annotations

import threading

import httpx
import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.checks.base import ProbeContext
from conformance.checks.messages import message_body, send_message
from conformance.client import EndpointClient
from conformance.endpoint import EndpointUnusable, resolve
from conformance.families import API_FAMILIES, MESSAGES_PATH
from conformance.options import OPTIONS, ModelSelection
from conformance.profiles import Profile, ProfileError, load_profile, parse_profile
from conformance.redaction import REDACTED
from conformance.runner import execute

CATALOG = load_catalog()
KEY = "sk-families-test-0123456789"
MESSAGES_CHECKS = [check for check in REGISTRY if CATALOG[check.entry].api == "anthropic"]


def openai_only(reference_server):
    return reference_server("openai", api_key=KEY, apis=("openai",))


def test_the_api_option_takes_one_family_or_all():
    parse = OPTIONS["api"].parse
    assert parse("all") == API_FAMILIES
    assert parse("anthropic") == ("anthropic",)
    with pytest.raises(ValueError, match="openai, anthropic or all"):
        parse("messages")


def test_the_preflight_finds_which_families_are_served(reference_server):
    """Served: judged; not served: left out with the answer that shows it, unless the profile judges it."""
    anthropic_only = reference_server("anthropic", api_key=KEY)
    endpoint = resolve(anthropic_only.base_url, KEY, None, 10)
    assert endpoint.apis == ("anthropic",)
    assert "does not serve the openai API family" in endpoint.left_out["openai"]
    assert "chat/completions answered HTTP 404" in endpoint.left_out["openai"]

    assert resolve(openai_only(reference_server).base_url, KEY, None, 10).apis == ("openai",)
    assert resolve(anthropic_only.base_url, KEY, None, 10, judged=("openai",)).apis == API_FAMILIES
    assert resolve(reference_server("fireworks", api_key=KEY).base_url, KEY, None, 10).apis == API_FAMILIES


def test_a_matrix_run_finds_the_families_served_as_a_one_model_run_does(reference_server):
    """Every model is preflighted in the OpenAI family; the others with the first usable model, so a
    matrix of an OpenAI-only endpoint leaves the Messages family out instead of sending its checks."""
    every_model = ModelSelection(listed=True)
    endpoint = resolve(openai_only(reference_server).base_url, KEY, None, 10, matrix=every_model)
    assert endpoint.apis == ("openai",) and [target.id for target in endpoint.models] == [endpoint.model]
    assert "does not serve the anthropic API family" in endpoint.left_out["anthropic"]
    with pytest.raises(EndpointUnusable, match=r"--api anthropic: the endpoint does not serve that API family"):
        resolve(openai_only(reference_server).base_url, KEY, None, 10, matrix=every_model, apis=("anthropic",))
    assert resolve(reference_server("fireworks", api_key=KEY).base_url, KEY, None, 10,
                   matrix=every_model).apis == API_FAMILIES


def test_a_family_judged_but_not_served_is_unsupported_without_sending_anything(reference_server, tmp_path):
    """The Fireworks profile judges both families; an endpoint serving only Messages: the OpenAI
    family's checks are `unsupported` (failing where the profile expects a behaviour), not a 404
    error each, and none of them sends a request (the preflight showed it once)."""
    from conformance.cli import main
    from conformance.compare import load_report

    server = reference_server("anthropic", api_key=KEY)
    code = main(["run", "--base-url", server.base_url, "--api-key", KEY, "--profile", "fireworks",
                 "-k", "stream-usage-default or messages-schema", "--report-dir", str(tmp_path)])
    assert code == 1
    results = {result["check_id"]: result for result in load_report(tmp_path / "report.json")["results"]}
    for check_id in ("stream-usage-default/chat", "stream-usage-default/completions"):
        result = results[check_id]
        assert (result["outcome"], result["observed"]) == ("fail", "unsupported"), result
        assert "does not serve the openai API family" in result["reason"] and not result["evidence"]
    assert results["messages-schema/message"]["outcome"] == "pass"


def test_a_family_asked_for_but_not_served_stops_the_run(reference_server):
    with pytest.raises(EndpointUnusable, match=r"--api anthropic: the endpoint does not serve that API family"):
        resolve(openai_only(reference_server).base_url, KEY, None, 10, apis=("anthropic",))
    assert resolve(reference_server("anthropic", api_key=KEY).base_url, KEY, None, 10,
                   apis=("anthropic",)).apis == ("anthropic",)


def test_an_endpoint_serving_neither_family_is_unusable(reference_server):
    """Both families answer 404 (a base URL with the wrong path): one line, as before the family."""
    server = reference_server("openai", api_key=KEY)
    with pytest.raises(EndpointUnusable, match="is the base URL's path right"):
        resolve(server.base_url.removesuffix("/v1") + "/v2", KEY, "reference-model", 10)


@pytest.mark.parametrize("check", MESSAGES_CHECKS, ids=[check.id for check in MESSAGES_CHECKS])
def test_a_family_not_served_is_unsupported_proven_by_a_control(reference_server, check):
    server = openai_only(reference_server)
    client = EndpointClient(server.base_url, KEY, timeout=10)
    result = execute(check, CATALOG[check.entry], load_profile("anthropic", CATALOG), client,
                     server.config.model_id, None)
    assert (result.outcome, result.observed) == ("fail", "unsupported"), result.explain()
    assert "does not serve the Messages API" in result.reason
    assert any(item["request"]["url"].endswith("/v1/models") and item["status"] == 200 for item in result.evidence)


def test_each_family_carries_the_key_its_own_way(reference_server):
    """Messages: `x-api-key` and `anthropic-version`, no Bearer header; OpenAI: `Authorization: Bearer`."""
    server = reference_server("openai", api_key=KEY)
    ctx = ProbeContext(EndpointClient(server.base_url, KEY, timeout=10), server.config.model_id)
    message = send_message(ctx, message_body(ctx, "Hi", max_tokens=1))
    chat = ctx.send("chat/completions", {"model": ctx.model, "messages": [{"role": "user", "content": "Hi"}],
                                         "max_tokens": 1})
    assert message.ok and chat.ok
    assert message.request_headers["x-api-key"] == REDACTED and "authorization" not in message.request_headers
    assert message.request_headers["anthropic-version"] == "2023-06-01"
    assert chat.request_headers["authorization"] == REDACTED and "x-api-key" not in chat.request_headers
    assert '-H "x-api-key: $OPENAI_API_KEY"' in message.curl() and KEY not in message.curl()
    assert ctx.path_of(message) == MESSAGES_PATH


def test_profiles_judge_the_families_they_name():
    anthropic = load_profile("anthropic", CATALOG)
    assert anthropic.apis == ("anthropic",)
    assert {CATALOG[entry].api for entry in anthropic.expect} == {"anthropic"}
    assert {CATALOG[entry].api for entry in load_profile("openai", CATALOG).expect} == {"openai"}
    assert {CATALOG[entry].api for entry in load_profile("fireworks", CATALOG).expect} == set(API_FAMILIES)
    # A profile extending a two-family one but judging one family keeps only that family's expectations.
    narrowed = parse_profile({"name": "mine", "extends": "fireworks", "apis": ["anthropic"]}, CATALOG, "mine.toml")
    assert {CATALOG[entry].api for entry in narrowed.expect} == {"anthropic"}
    with pytest.raises(ProfileError, match="belongs to the anthropic API family"):
        parse_profile({"name": "mine", "expect": {"messages-schema": "anthropic"}}, CATALOG, "mine.toml")
    assert Profile("none", "").apis == ("openai",) and load_profile("none", CATALOG).apis == ()


def test_messages_requests_are_counted_as_they_cost(reference_server):
    """count_tokens generates nothing (it once reserved, and was charged, the whole budget: it has no
    `max_tokens` and answers no `usage`); a Messages stream's input tokens ride on `message_start`."""
    from conformance.accounting import RunStats

    server = reference_server("openai", api_key=KEY)
    stats = RunStats(token_budget=10_000)
    client = EndpointClient(server.base_url, KEY, timeout=10, stats=stats)
    for check_id in ("messages-count-tokens/message", "messages-stream-usage/stream"):
        result = execute(REGISTRY[check_id], CATALOG[REGISTRY[check_id].entry], Profile("none", ""), client,
                         server.config.model_id, None)
        assert result.outcome == "pass", result.explain()
    assert stats.charged < 1_000 and stats.prompt_tokens >= 3 * 10  # three generations of a 10+ token prompt


def test_a_family_left_out_is_judged_by_no_profile_and_said_once(reference_server, tmp_path, capsys):
    """`--api openai` under the fireworks profile (which judges both families): the Messages checks are
    skipped like checks `-k` leaves out, not "not judged", and the console says why in one line."""
    from conformance.cli import main

    server = reference_server("fireworks", api_key=KEY)
    code = main(["run", "--base-url", server.base_url, "--api-key", KEY, "--api", "openai", "--profile", "fireworks",
                 "-k", "chat-completion-schema or messages-schema or messages-usage", "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("the anthropic API family was not asked for (--api)") == 1
    assert "[skip] the anthropic API family's checks" in out


def test_the_auth_header_check_sends_its_four_requests_at_once():
    """Independent requests of one check go out together: each answer here waits until all four
    requests have arrived, which never happens if they are sent one after another."""
    arrived = threading.Barrier(4, timeout=20)

    def answer(request: httpx.Request) -> httpx.Response:
        arrived.wait()
        return httpx.Response(401, json={"type": "error", "error": {"type": "authentication_error",
                                                                    "message": "invalid x-api-key"}})

    client = EndpointClient("http://four-at-once.invalid/v1", "sk-right", 30, transport=httpx.MockTransport(answer))
    try:
        check = REGISTRY["anthropic-auth-header/message"]
        result = execute(check, load_catalog()[check.entry], Profile("none", ""), client, "m", None)
    finally:
        client.close()
    assert not arrived.broken, result.explain()
    assert len(result.to_dict()["evidence"]) == 4
