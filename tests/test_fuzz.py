"""Hypothesis: whatever bytes or JSON an endpoint sends, the stream parser and every check's
classifier end in a verdict (an outcome from the closed list), never an exception of their own."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.client import EndpointClient
from conformance.profiles import Profile
from conformance.results import OUTCOMES
from conformance.runner import execute
from conformance.sse import parse_stream

CATALOG = load_catalog()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["choices", "usage", "message", "content", "text", "delta", "finish_reason", "index",
                         "logprobs", "error", "data", "id", "object", "type", "output", "perf_metrics",
                         "raw_output", "prompt_tokens", "completion_tokens", "total_tokens", "tokens",
                         "token_logprobs", "top_logprobs", "function_call", "tool_calls", "response"]),
        inner, max_size=5),
    max_leaves=20)


def shaped(**fields) -> st.SearchStrategy:
    """An object with these keys, each optional, each value either its shape or anything at all."""
    return st.fixed_dictionaries({}, optional={key: shape | JSON for key, shape in fields.items()})


NUMBER = st.integers(-3, 50) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3)
USAGE = shaped(prompt_tokens=NUMBER, completion_tokens=NUMBER, total_tokens=NUMBER,
               input_tokens=NUMBER, output_tokens=NUMBER)
TOKEN_LOGPROB = shaped(token=st.text(max_size=3), logprob=NUMBER, top_logprobs=st.lists(JSON, max_size=12),
                       token_id=NUMBER, bytes=JSON)
LOGPROBS = shaped(content=st.lists(TOKEN_LOGPROB, max_size=3), tokens=st.lists(JSON, max_size=3),
                  token_logprobs=st.lists(JSON, max_size=3), refusal=JSON)
FUNCTION = shaped(name=st.sampled_from(["get_time", "other"]), arguments=JSON)
MESSAGE = shaped(role=JSON, content=st.text(max_size=40), function_call=FUNCTION,
                 tool_calls=st.lists(shaped(function=FUNCTION, id=JSON, type=JSON), max_size=2), refusal=JSON)
CHOICE = shaped(index=NUMBER, message=MESSAGE, delta=MESSAGE, text=st.text(max_size=40),
                finish_reason=st.sampled_from(["stop", "length", None, 3]), logprobs=LOGPROBS,
                raw_output=shaped(prompt_token_ids=st.lists(NUMBER, max_size=3)))
OUTPUT_ITEM = shaped(type=JSON, content=st.lists(shaped(type=st.just("output_text"), text=JSON), max_size=2))
SHAPED = shaped(choices=st.lists(CHOICE, max_size=3), usage=USAGE, perf_metrics=JSON, raw_output=JSON,
                data=st.lists(shaped(id=st.sampled_from(["m", "accounts/a/models/m"]) | JSON,
                                     context_length=NUMBER), max_size=2),
                object=JSON, status=st.sampled_from(["completed", "x"]), output=st.lists(OUTPUT_ITEM, max_size=2),
                type=st.sampled_from(["response.created", "response.completed", "response.output_text.delta"]),
                delta=JSON, response=shaped(output=st.lists(OUTPUT_ITEM, max_size=2), usage=USAGE),
                error=shaped(message=JSON, code=JSON))
ANY_JSON = SHAPED | JSON
STREAM_LINES = st.lists(st.one_of(
    ANY_JSON.map(lambda value: b"data: " + json.dumps(value).encode() + b"\n\n"),
    st.sampled_from([b"data: [DONE]\n\n", b": keep-alive\n\n", b"event: x\n", b"\r\n", b"data: {\n\n"]),
    st.binary(max_size=12)), max_size=8).map(b"".join)


@given(st.binary(max_size=300) | STREAM_LINES)
@settings(max_examples=120, deadline=None)
def test_the_stream_parser_never_raises(raw):
    parsed = parse_stream(raw)
    for expect_done in (True, False):
        assert all(isinstance(problem, str) for problem in parsed.problems(expect_done))


class Canned:
    """What the fake endpoint answers with next."""

    status = 200
    body = b"{}"
    content_type = "application/json"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(self.status, content=self.body, headers={"content-type": self.content_type})


ANSWERS = st.tuples(
    st.sampled_from([200, 200, 200, 400, 404, 500]),
    st.one_of(ANY_JSON.map(lambda value: json.dumps(value).encode()), STREAM_LINES, st.binary(max_size=40)),
    st.sampled_from(["application/json", "text/event-stream", "text/html"]),
)


@pytest.mark.parametrize("check", list(REGISTRY), ids=lambda check: check.id)
def test_every_classifier_survives_arbitrary_answers(check):
    canned = Canned()
    client = EndpointClient("http://fuzz.invalid/v1", None, 5, transport=httpx.MockTransport(canned))

    @given(ANSWERS)
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def judge(answer):
        canned.status, canned.body, canned.content_type = answer
        result = execute(check, CATALOG[check.entry], Profile("none", ""), client, "m", 100)
        assert result.outcome in OUTCOMES
        assert "internal error in the check" not in result.reason, result.reason

    try:
        judge()
    finally:
        client.close()
