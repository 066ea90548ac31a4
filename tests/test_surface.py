"""The common surface: against a reference server told to break one rule, the matching check fails
and names the rule; legal variants (CRLF, comments) are tolerated; the healthy server passes."""

from __future__ import annotations

import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.client import EndpointClient
from conformance.profiles import Profile
from conformance.runner import execute

CATALOG = load_catalog()
KEY = "sk-surface-test-0123456789"
OPENAI_ONLY = Profile("openai-only", "", {entry: ["openai"] for entry in
                                         ("sse-framing", "chunk-schema", "error-envelope", "parameter-validation",
                                          "openai-sdk")})
#: rule break -> {check id: words its failure must contain}
BREAKS = {
    "sse-content-type": {"sse-framing/chat": "content-type", "sse-framing/completions": "content-type"},
    "sse-single-newline": {"sse-framing/chat": "blank-line-separation"},
    "sse-no-done": {"sse-framing/chat": "done-last (no data: [DONE])", "sse-framing/completions": "done-last"},
    "sse-after-done": {"sse-framing/completions": "done-last (1 event(s) follow data: [DONE])"},
    "sse-id-changes": {"sse-framing/chat": "one-id"},
    "sse-role-repeated": {"sse-framing/chat": "role-first-only"},
    "sse-double-finish": {"sse-framing/chat": "one-finish-per-choice", "sse-framing/completions": "one-finish"},
    "malformed-sse": {"sse-framing/chat": "json-events", "openai-sdk/chat": "create(stream=True) + close() failed",
                      "openai-sdk/completions": "completions.create(stream=True) failed"},
    "chunk-schema-break": {"chunk-schema/chat": "'created' is a required property",
                           "chunk-schema/completions": "'created' is a required property",
                           "openai-sdk/chat": "create(stream=True) + close() failed"},
    "error-plain-text": {"error-envelope/bad-key": "the body is not JSON",
                         "error-envelope/unknown-model": "the body is not JSON",
                         "error-envelope/unknown-model-lookup": "the body is not JSON",
                         "parameter-validation/invalid": "no error envelope"},
    "error-500-on-invalid": {"error-envelope/invalid-json": "HTTP 500 instead of 400",
                             "error-envelope/missing-messages": "HTTP 500 instead of 400",
                             "parameter-validation/invalid": "HTTP 500"},
    "accept-bad-key": {"error-envelope/bad-key": "answered HTTP 200 instead of refusing with 401, although "
                                                 "no Authorization header is refused (HTTP 401"},
    "accept-missing-key": {"error-envelope/missing-key": "answered HTTP 200 instead of refusing with 401, although "
                                                         "a wrong API key is refused (HTTP 401"},
    "accept-unknown-model": {"error-envelope/unknown-model": "answered HTTP 200 instead of refusing with 404"},
    "accept-invalid-params": {"parameter-validation/invalid": "-> accepted"},
    # The reference server's own defect before issue 20: a 500 for `messages: 1`, 200 for `content: 5`,
    # a 404 for the model `None`; the fixed required-field cases catch the class on any server.
    "skip-body-validation": {"parameter-validation/invalid": "model missing -> HTTP 404"},
    "reject-valid-params": {"parameter-validation/valid": "is not allowed here"},
    "tool-stream-broken-arguments": {"openai-sdk/tools": "create(tools, tool_choice=required, stream=True) failed"},
}
SURFACE = [check for check in REGISTRY if CATALOG[check.entry].area == "surface"]


def run_check(server, check):
    client = EndpointClient(server.base_url, KEY, timeout=10)
    try:
        return execute(check, CATALOG[check.entry], OPENAI_ONLY, client, server.config.model_id, None)
    finally:
        client.close()


@pytest.mark.parametrize("vendor", ["openai", "fireworks"])
@pytest.mark.parametrize("legal", [(), ("sse-crlf",), ("sse-comments",)], ids=["plain", "crlf", "comments"])
def test_a_healthy_server_passes_every_surface_check(reference_server, vendor, legal):
    server = reference_server(vendor, api_key=KEY, faults=frozenset(legal))
    for check in SURFACE:
        result = run_check(server, check)
        assert result.outcome == "pass", result.explain()


CASES = [(fault, check_id, words) for fault, checks in BREAKS.items() for check_id, words in checks.items()]


@pytest.mark.parametrize(("fault", "check_id", "words"), CASES, ids=[f"{f}:{c}" for f, c, _ in CASES])
def test_a_broken_rule_fails_the_matching_check_and_names_it(reference_server, fault, check_id, words):
    server = reference_server("openai", api_key=KEY, faults=frozenset({fault}))
    result = run_check(server, next(check for check in REGISTRY if check.id == check_id))
    assert result.outcome == "fail", result.explain()
    assert words in result.reason, result.reason
    assert result.evidence and result.curl


def test_every_surface_check_is_broken_by_some_rule():
    assert {check.id for check in SURFACE} <= {check_id for checks in BREAKS.values() for check_id in checks}


def test_every_body_and_chunk_is_validated_and_the_run_goes_on(reference_server):
    """A schema break shows up, with its path and rule, on every check that saw it; each still judges."""
    server = reference_server("fireworks", api_key=KEY, faults=frozenset({"chunk-schema-break"}))
    result = run_check(server, next(check for check in REGISTRY if check.id == "stream-usage-default/chat"))
    assert result.observed == "fireworks"  # the behaviour verdict is unaffected
    violations = result.details["schema_violations"]
    assert any(v == "chat_completion_chunk (compatible) chunk #0 $: 'created' is a required property (required)"
               for v in violations), violations


@pytest.mark.parametrize("check_id", ["error-envelope/bad-key", "error-envelope/missing-key"])
def test_an_endpoint_that_does_not_authenticate_is_inconclusive_on_keys(reference_server, check_id):
    """No key configured on the server (llama.cpp's default), a key given to the run: a wrong key and
    no key are both served, which says nothing about how a refusal would look."""
    server = reference_server("openai")
    result = run_check(server, REGISTRY[check_id])
    assert result.outcome == "inconclusive", result.explain()
    assert "does not authenticate" in result.reason
    assert len(result.evidence) == 2
