"""Tool calls and structured outputs: each streamed tool-call rule, broken alone by the reference
server, fails `tool-call-stream/chat` naming that rule (and only that one); the healthy stream passes;
the reference server honours exactly the grammars and schemas it claims to."""

from __future__ import annotations

import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.checks.base import ProbeContext
from conformance.checks.tools import CALL_GET_CODE, GET_CODE, forcing
from conformance.client import EndpointClient
from conformance.profiles import Profile
from conformance.reference_server.errors import ApiError
from conformance.reference_server.structured import grammar_document, unsupported_keyword
from conformance.runner import execute

CATALOG = load_catalog()
CHECK = REGISTRY["tool-call-stream/chat"]
OPENAI = Profile("openai-only", "", {"tool-call-stream": ["openai"], "openai-sdk": ["openai"]})
RULES = ("integer-index", "first-delta-complete", "fixed-identity", "arguments-valid", "one-finish")
#: rule break -> the one rule it breaks
BREAKS = {
    "tool-stream-index-string": "integer-index",
    "tool-stream-late-name": "first-delta-complete",
    "tool-stream-id-changes": "fixed-identity",
    "tool-stream-broken-arguments": "arguments-valid",
    "sse-double-finish": "one-finish",
}


def run(server, check=CHECK):
    client = EndpointClient(server.base_url, None, timeout=10)
    try:
        return execute(check, CATALOG[check.entry], OPENAI, client, server.config.model_id, None)
    finally:
        client.close()


@pytest.mark.parametrize("vendor", ["openai", "fireworks"])
def test_a_healthy_tool_stream_keeps_every_rule(reference_server, vendor):
    result = run(reference_server(vendor))
    assert (result.outcome, result.observed) == ("pass", "openai"), result.explain()


@pytest.mark.parametrize(("fault", "rule"), BREAKS.items())
def test_each_broken_rule_fails_the_check_and_is_named_alone(reference_server, fault, rule):
    result = run(reference_server("openai", faults=frozenset({fault})))
    assert result.outcome == "fail", result.explain()
    assert result.details["broken_rules"] == [rule], result.reason
    assert result.evidence and result.curl


def test_every_rule_has_a_break():
    assert set(BREAKS.values()) == set(RULES)


def test_a_server_that_never_calls_makes_the_sdk_check_inconclusive(reference_server):
    """No call is tool-choice's finding; the SDK check must not pass on it, nor blame the SDK."""
    result = run(reference_server("openai", {"tool-choice": "ignored"}), REGISTRY["openai-sdk/tools"])
    assert result.outcome == "inconclusive" and "streamed no call" in result.reason, result.explain()


def test_grammar_mode_serves_literal_choices_only():
    assert grammar_document('root ::= "yes" | "no"') == "yes"
    assert grammar_document('root ::= "a \\"quoted\\" word"') == 'a "quoted" word'
    with pytest.raises(ApiError):
        grammar_document('root ::= [a-z]+')


def test_fireworks_subset_finds_keywords_not_property_names():
    assert unsupported_keyword({"properties": {"pattern": {"type": "string"}}}) is None
    assert unsupported_keyword({"properties": {"a": {"anyOf": [{"type": "string", "maxLength": 3}]}}}) == "maxLength"
    assert unsupported_keyword({"$defs": {"x": {"oneOf": [{"type": "null"}]}}}) == "oneOf"


@pytest.mark.parametrize(("max_tokens", "verdict"), [(3, "cut short"), (64, "ignored")])
def test_a_reply_without_the_call_is_ignored_only_when_it_finished(reference_server, max_tokens, verdict):
    """A server that serves the forcing as auto writes text; cut by max_tokens, that text might still
    have become the call, so only a finished reply says the forcing was ignored."""
    server = reference_server("openai", {"tool-choice": "ignored"})
    client = EndpointClient(server.base_url, None, timeout=10)
    try:
        ctx = ProbeContext(client, server.config.model_id)
        exchange = ctx.send("chat/completions", {"model": ctx.model, "messages": CALL_GET_CODE, "tools": [GET_CODE],
                                                 "tool_choice": "required", "max_tokens": max_tokens})
        assert forcing(ctx, exchange, "get_code") == verdict
    finally:
        client.close()
