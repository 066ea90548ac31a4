"""The reference server's own correctness: every malformed body is a 400 envelope naming the field,
every error it sends (its own routes and Starlette's) is in the envelope, and `GET /v1/models/{id}`
is served, as OpenAI documents."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from conformance.schemas import validate

KEY = "sk-reference-test-0123456789"
OK_MESSAGE = {"role": "user", "content": "Reply with only the word OK."}


@pytest.fixture(scope="module")
def server(reference_server):
    return reference_server("openai", api_key=KEY, token_delay_ms=0)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url + "/", headers={"authorization": f"Bearer {KEY}"},
                      timeout=10) as client:
        yield client


def chat_body(server, **changes):
    body = {"model": server.config.model_id, "messages": [dict(OK_MESSAGE)], "max_tokens": 2}
    for name, value in changes.items():
        if value is MISSING:
            body.pop(name)
        else:
            body[name] = value
    return body


MISSING = object()
#: (what the body changes, the param the 400 must name)
MALFORMED_CHAT = {
    "messages=1": ({"messages": 1}, "messages"),
    "messages=null": ({"messages": None}, "messages"),
    "messages missing": ({"messages": MISSING}, "messages"),
    "messages=[]": ({"messages": []}, "messages"),
    "message=5": ({"messages": [5]}, "messages[0]"),
    "content=5": ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    "content=null": ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    "content missing": ({"messages": [{"role": "user"}]}, "messages[0].content"),
    "content part=5": ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
    "role missing": ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    "role=null": ({"messages": [{"role": None, "content": "hi"}]}, "messages[0].role"),
    "role=5": ({"messages": [{"role": 5, "content": "hi"}]}, "messages[0].role"),
    "role=wizard": ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    "tool_call_id missing": ({"messages": [OK_MESSAGE, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
    "model missing": ({"model": MISSING}, "model"),
    "model=null": ({"model": None}, "model"),
    "model=5": ({"model": 5}, "model"),
    "max_tokens=many": ({"max_tokens": "many"}, "max_tokens"),
    "temperature=hot": ({"temperature": "hot"}, "temperature"),
    "user=5": ({"user": 5}, "user"),
    "stop=[1]": ({"stop": [1]}, "stop[0]"),
    "stream_options.include_usage=yes": ({"stream": True, "stream_options": {"include_usage": "yes"}},
                                         "stream_options.include_usage"),
    "logit_bias key": ({"logit_bias": {"abc": 1}}, "logit_bias"),
    "logit_bias value": ({"logit_bias": {"1234": "up"}}, "logit_bias.1234"),
    "tools=5": ({"tools": 5}, "tools"),
    "response_format=json": ({"response_format": "json"}, "response_format"),
}


@pytest.mark.parametrize(("changes", "param"), MALFORMED_CHAT.values(), ids=MALFORMED_CHAT)
def test_a_malformed_chat_body_is_a_400_envelope_naming_the_field(server, http, changes, param):
    response = http.post("chat/completions", json=chat_body(server, **changes))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param), error


@pytest.mark.parametrize(("prompt", "param"), [(5, "prompt"), (None, "prompt"), ([{"a": 1}], "prompt[0]"),
                                               (MISSING, "prompt")], ids=["5", "null", "[{}]", "missing"])
def test_a_malformed_completions_body_is_a_400_envelope_naming_the_field(server, http, prompt, param):
    body = {"model": server.config.model_id, "max_tokens": 2}
    if prompt is not MISSING:
        body["prompt"] = prompt
    response = http.post("completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_no_model_is_a_missing_parameter_not_an_unknown_model(server, http):
    response = http.post("chat/completions", json=chat_body(server, model=MISSING))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_required_parameter"


@pytest.mark.parametrize("changes", [{"n": None, "temperature": None, "stream": None}, {"messages": [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "done"}, OK_MESSAGE]}], ids=["nulls", "roles"])
def test_what_the_spec_allows_is_served(server, http, changes):
    response = http.post("chat/completions", json=chat_body(server, **changes))
    assert response.status_code == 200, response.text


def test_a_model_is_served_by_its_id(server, http):
    response = http.get(f"models/{server.config.model_id}")
    assert response.status_code == 200
    assert response.json() == http.get("models").json()["data"][0]


def test_the_fireworks_model_id_with_slashes_is_served(reference_server):
    server = reference_server("fireworks", token_delay_ms=0)
    response = httpx.get(f"{server.base_url}/models/{server.config.model_id}", timeout=10)
    assert (response.status_code, response.json()["id"]) == (200, server.config.model_id)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "models/no-such-model", 404), ("GET", "no/such/route", 404), ("POST", "nothing-here", 404),
    ("GET", "chat/completions", 405), ("DELETE", "models", 405)])
def test_every_error_is_in_the_envelope(http, method, path, status):
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_server_failure_is_in_the_envelope_too(reference_server):
    """With validation skipped (a deliberate fault), a wrong type reaches the generator and breaks it."""
    server = reference_server("openai", faults=frozenset({"accept-invalid-params"}), token_delay_ms=0)
    response = httpx.post(f"{server.base_url}/chat/completions", timeout=10,
                          json={**chat_body(server), "max_tokens": "many"})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


def stream_timings(url: str, body: dict) -> tuple[float, float, int]:
    """Seconds to the first event and to the end of a stream, and how many events came."""
    started = time.monotonic()
    first = None
    events = 0
    with httpx.stream("POST", url, json=body, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                first = first or time.monotonic() - started
                events += 1
    return first, time.monotonic() - started, events


def test_a_bound_socket_accepts_connections_before_the_server_runs():
    """`conformance serve` prints its URL once bound, before uvicorn starts: a client connecting at
    once is queued, not refused (CI once saw `Connection refused` there)."""
    import socket

    from conformance.reference_server.embedded import bind

    listening = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(listening.getsockname(), timeout=5):
            pass
    finally:
        listening.close()


def test_streams_are_paced_per_token_when_served_from_the_command_line():
    """`conformance serve --token-delay-ms 25`: no event before one delay, the whole stream no
    sooner than one delay per event (lower bounds: a loaded machine only makes them larger)."""
    delay = 25
    server = subprocess.Popen([sys.executable, "-m", "conformance", "serve", "--port", "0",
                               "--token-delay-ms", str(delay)], stdout=subprocess.PIPE, text=True)
    prompt = "Count from 1 to 5, separated by commas."
    try:
        base_url = server.stdout.readline().strip()
        timings = [stream_timings(f"{base_url}/chat/completions", {
                       "model": "reference-model", "stream": True, "max_tokens": 8,
                       "messages": [{"role": "user", "content": prompt}]}),
                   stream_timings(f"{base_url}/responses", {
                       "model": "reference-model", "stream": True, "max_output_tokens": 8, "input": prompt})]
    finally:
        server.terminate()
        server.wait(timeout=10)
    for first, total, events in timings:
        assert events >= 5
        assert first >= delay / 1000
        assert total >= events * delay / 1000


# ---- tools and response_format: honoured where forced, refused where not -------------------------

CODE_TOOL = {"type": "function", "function": {"name": "report_code", "parameters": {
    "type": "object", "properties": {"code": {"enum": ["A1"]}, "count": {"type": "integer", "minimum": 3},
                                     "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["code"], "additionalProperties": False}}}
OTHER_TOOL = {"type": "function", "function": {"name": "noop"}}
YES_NO = {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def sdk(server):
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10) as client:
        yield client


@pytest.mark.parametrize(("tool_choice", "finish_reason"), [
    ("required", "tool_calls"), ({"type": "function", "function": {"name": "report_code"}}, "stop")],
    ids=["required", "named"])
def test_a_forced_tool_call_is_made_with_arguments_valid_against_the_tool(server, sdk, tool_choice, finish_reason):
    completion = sdk.chat.completions.create(model=server.config.model_id, messages=[OK_MESSAGE], max_tokens=64,
                                             tools=[CODE_TOOL, OTHER_TOOL], tool_choice=tool_choice)
    choice = completion.choices[0]
    (call,) = choice.message.tool_calls
    assert (choice.finish_reason, choice.message.content, call.function.name) == (finish_reason, None, "report_code")
    assert json.loads(call.function.arguments) == {"code": "A1", "count": 3, "tags": []}
    assert completion.usage.completion_tokens > 0


def test_a_forced_tool_call_streams_as_openai_sends_it(server, sdk):
    stream = sdk.chat.completions.create(model=server.config.model_id, messages=[OK_MESSAGE], max_tokens=64,
                                         tools=[CODE_TOOL], tool_choice="required", stream=True)
    chunks = list(stream)
    deltas = [call for chunk in chunks for choice in chunk.choices for call in choice.delta.tool_calls or []]
    assert (deltas[0].id, deltas[0].type, deltas[0].function.name) == (chunks[0].choices[0].delta.tool_calls[0].id,
                                                                       "function", "report_code")
    assert all(delta.id is None and delta.function.name is None for delta in deltas[1:])
    assert json.loads("".join(delta.function.arguments for delta in deltas)) == {"code": "A1", "count": 3, "tags": []}
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
    for chunk in chunks:
        assert validate("chat_completion_chunk", chunk.model_dump(exclude_unset=True), "strict") == []


@pytest.mark.parametrize("tool_choice", ["auto", "none", None])
def test_an_unforced_tool_choice_answers_in_text(server, sdk, tool_choice):
    extra = {} if tool_choice is None else {"tool_choice": tool_choice}
    completion = sdk.chat.completions.create(model=server.config.model_id, messages=[OK_MESSAGE], max_tokens=8,
                                             tools=[CODE_TOOL], **extra)
    assert completion.choices[0].message.tool_calls is None and completion.choices[0].message.content


@pytest.mark.parametrize(("response_format", "document"), [
    ({"type": "json_object"}, {}), (YES_NO, {"answer": "yes"}), ({"type": "text"}, OK_MESSAGE["content"])],
    ids=["json_object", "json_schema", "text"])
def test_response_format_is_honoured(server, sdk, response_format, document):
    completion = sdk.chat.completions.create(model=server.config.model_id, messages=[OK_MESSAGE], max_tokens=16,
                                             response_format=response_format)
    content = completion.choices[0].message.content
    assert (content if response_format["type"] == "text" else json.loads(content)) == document
    assert completion.choices[0].finish_reason == "stop"


def test_a_json_document_cut_by_max_tokens_says_length(server, sdk):
    completion = sdk.chat.completions.create(model=server.config.model_id, messages=[OK_MESSAGE], max_tokens=2,
                                             response_format=YES_NO)
    assert completion.choices[0].finish_reason == "length"


PATTERN = {"type": "json_schema", "json_schema": {"name": "id", "schema": {
    "type": "object", "properties": {"id": {"type": "string", "pattern": "^[0-9]{4}$"}}, "required": ["id"]}}}
REFUSED = {
    "tool_choice without tools": ({"tool_choice": "required"}, "tool_choice"),
    "unknown named tool": ({"tools": [CODE_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
                           "tool_choice.function.name"),
    "tool_choice any": ({"tools": [CODE_TOOL], "tool_choice": "any"}, "tool_choice"),
    "tool without name": ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    "unsatisfiable tool": ({"tools": [{"type": "function", "function": {"name": "f", "parameters": PATTERN[
        "json_schema"]["schema"]}}], "tool_choice": "required"}, "tools[0].function.parameters"),
    "unsatisfiable schema": ({"response_format": PATTERN}, "response_format.json_schema.schema"),
    "invalid schema": ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "nonsense"}}}}, "response_format.json_schema.schema"),
    "grammar": ({"response_format": {"type": "grammar", "grammar": 'root ::= "yes"'}}, "response_format.type"),
    "json_object with a schema": ({"response_format": {"type": "json_object", "schema": {}}},
                                  "response_format.schema"),
}


@pytest.mark.parametrize(("changes", "param"), REFUSED.values(), ids=REFUSED)
def test_what_the_server_cannot_honour_is_refused(server, http, changes, param):
    response = http.post("chat/completions", json=chat_body(server, **changes))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
