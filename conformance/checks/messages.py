"""Anthropic's Messages API (`POST /v1/messages`), the second API family: its message object, its
named event stream, `stop_reason`, usage, the headers it takes, tool forcing, its error envelope and
`count_tokens`, each judged against what Anthropic and Fireworks document.

Every request carries the key as the family expects (`x-api-key`, `anthropic-version`; no Bearer
header) and samples greedily with a small `max_tokens`. Outcomes are forced (a named tool, a
3-token cap, a stop sequence met while counting) and counts compared, never text. A 404 for the
Messages path on an endpoint whose `GET /models` works (the control) is `unsupported`: the endpoint
does not serve the family.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from conformance.checks.base import (
    WRONG_API_KEY,
    ProbeContext,
    ProbeFailed,
    as_dict,
    as_list,
    check,
    is_refused,
    refused_for,
    rejection_reason,
    require_control,
)
from conformance.checks.tools import CALL_TOKENS  # one room for a forced call, in both families
from conformance.endpoint import names_model
from conformance.exchange import Exchange
from conformance.families import COUNT_TOKENS_PATH, MESSAGES_PATH, anthropic_headers
from conformance.results import Observation, inconclusive, observe
from conformance.sse import DONE

REPLY_OK = "Reply with only the word OK."
COUNT_TO_40 = "Count from 1 to 40, separated by commas."
COUNT_TO_10 = "Count from 1 to 10, separated by commas."
#: The tool every forced call names: its only argument is an enum, so any call a grammar allows is valid.
CODE_SCHEMA = {"type": "object", "properties": {"code": {"type": "string", "enum": ["A1"]}}, "required": ["code"],
               "additionalProperties": False}
GET_CODE = {"name": "get_code", "description": "Returns the code.", "input_schema": CODE_SCHEMA}
GET_WEATHER = {"name": "get_weather", "description": "Returns the weather in a city.",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}},
                                "required": ["city"], "additionalProperties": False}}
FORCE_GET_CODE = {"type": "tool", "name": "get_code"}
#: The schemas of what the family answers (generated from the anthropic SDK's types).
MESSAGE_SCHEMA = "anthropic_message"
ERROR_SCHEMA = "anthropic_error"
#: Room for a natural end ("OK" and an end of turn): a reply still going after it says nothing.
END_TURN_TOKENS = 16


def message_body(ctx: ProbeContext, content: str, **params: Any) -> dict[str, Any]:
    """A one-turn Messages request sampled greedily (only `temperature`: Anthropic refuses
    `temperature` and `top_p` together on newer models)."""
    return {"model": ctx.model, "messages": [{"role": "user", "content": content}], "temperature": 0, **params}


def family_headers(ctx: ProbeContext, version: bool = True) -> dict[str, Any]:
    """`send` options for a Messages request: the family's headers, no Bearer header
    (`version=False`: without `anthropic-version`)."""
    headers = anthropic_headers(ctx.client.api_key) if version else anthropic_headers(ctx.client.api_key, None)
    return {"headers": headers, "authorization": None}


def send_message(ctx: ProbeContext, body: Any, path: str = MESSAGES_PATH, **options: Any) -> Exchange:
    """A Messages request with the family's headers, unless `options` give others."""
    return ctx.send(path, body, **{**family_headers(ctx), **options})


def unserved(ctx: ProbeContext, exchange: Exchange) -> Observation | None:
    """`unsupported` when the Messages path is missing (a 404/405 neither in Anthropic's envelope
    nor blaming the model) on an endpoint whose `GET /models` answers (the control); None when the
    path is served."""
    if exchange.status not in (404, 405) or as_dict(exchange.json).get("type") == "error" or \
            names_model(as_dict(exchange.error_envelope), ctx.model):
        return None
    require_control(ctx.control("models", None, "GET", **family_headers(ctx)),
                    f"POST {exchange.url} {rejection_reason(exchange)}", "GET /models")
    return observe("unsupported", f"the endpoint does not serve the Messages API: POST {ctx.path_of(exchange)} "
                   f"{rejection_reason(exchange)}, while GET /models answers")


def stop_reason(message: dict[str, Any]) -> Any:
    return message.get("stop_reason")


def blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [block for block in as_list(message.get("content")) if isinstance(block, dict) and block.get("type") == kind]


def text(message: dict[str, Any]) -> str:
    return "".join(str(block.get("text", "")) for block in blocks(message, "text"))


def count_problem(usage: Any, *keys: str) -> str | None:
    """What is wrong with usage counts (present, non-negative integers), or None."""
    counts = as_dict(usage)
    bad = {key: counts.get(key) for key in keys if type(counts.get(key)) is not int or counts[key] < 0}
    return f"usage {', '.join(f'{k}={v!r}' for k, v in bad.items())} (not a non-negative integer)" if bad else None


# ---- the message object and its stream ---------------------------------------------------------

@check("messages-schema", variant="message")
def message_schema(ctx: ProbeContext) -> Observation:
    exchange = send_message(ctx, message_body(ctx, REPLY_OK, max_tokens=8))
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    message = ctx.require_success(exchange, "message")
    violations = ctx.schema_violations(MESSAGE_SCHEMA, message, "compatible")
    if violations:
        return observe("other", "; ".join(map(str, violations)))
    return observe("anthropic", f"a valid `{MESSAGE_SCHEMA}` object (stop_reason {stop_reason(message)!r})")


#: Every rule of Anthropic's event stream, by name.
EVENT_RULES = {
    "content-type": "Content-Type is text/event-stream",
    "json-events": "every event's data is JSON (no OpenAI `data: [DONE]`)",
    "event-names": "each event's name equals its data's `type`",
    "message-start-first": "`message_start` comes first (pings aside)",
    "block-sequence": "each content block: start, deltas, stop, indices 0, 1, ... in order",
    "one-message-delta": "one `message_delta`, after the last block, before `message_stop`",
    "message-stop-last": "`message_stop` ends the stream",
    "no-error-event": "no `error` event",
}


def event_violations(exchange: Exchange) -> dict[str, str]:
    """Every event rule the stream breaks, with what was seen (pings may come anywhere)."""
    broken: dict[str, str] = {}
    content_type = exchange.response_headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        broken["content-type"] = f"Content-Type is {content_type!r}"
    stream = exchange.stream
    if stream.undecodable or stream.done:
        broken["json-events"] = (f"{len(stream.undecodable)} event(s) are not JSON" if stream.undecodable
                                 else "an OpenAI `data: [DONE]` terminator")
    named = [(event.event, as_dict(json.loads(event.data))) for event in stream.events
             if event.data and event.data not in stream.undecodable and event.data.strip() != DONE]
    misnamed = [f"{name!r} carrying {data.get('type')!r}" for name, data in named
                if name not in ("message", data.get("type"))]
    if misnamed:
        broken["event-names"] = ", ".join(misnamed[:3])
    # An event's type as text whatever the server sent there (a list, a number): classifiers never crash.
    kinds = [str(data.get("type")) for _, data in named if data.get("type") != "ping"]
    if "error" in kinds:
        broken["no-error-event"] = str(next(data for _, data in named if data.get("type") == "error"))[:160]
    if not kinds or kinds[0] != "message_start":
        broken["message-start-first"] = f"the stream opens with {kinds[0] if kinds else 'nothing'!r}"
    if not kinds or kinds[-1] != "message_stop" or kinds.count("message_stop") != 1:
        broken["message-stop-last"] = f"the stream ends with {kinds[-1] if kinds else 'nothing'!r}, " \
                                      f"{kinds.count('message_stop')} message_stop event(s)"
    block_problem = block_sequence_problem([data for _, data in named])
    if block_problem:
        broken["block-sequence"] = block_problem
    deltas = [position for position, kind in enumerate(kinds) if kind == "message_delta"]
    last_block = max((position for position, kind in enumerate(kinds) if kind.startswith("content_block")),
                     default=-1)
    if len(deltas) != 1 or deltas[0] < last_block or (kinds[-1] == "message_stop" and deltas[0] != len(kinds) - 2):
        broken["one-message-delta"] = f"{len(deltas)} message_delta event(s) at {deltas} of {len(kinds)}"
    return broken


def block_sequence_problem(frames: list[dict[str, Any]]) -> str | None:
    """What breaks the content blocks' order (start, deltas, stop; indices ascending from 0), or None."""
    open_index: Any = None
    expected = 0
    for frame in frames:
        kind, index = frame.get("type"), frame.get("index")
        if kind == "content_block_start":
            if open_index is not None or index != expected:
                return f"block {index!r} starts while {open_index!r} is open or {expected} is due"
            open_index = index
        elif kind == "content_block_delta" and index != open_index:
            return f"a delta for block {index!r} while {open_index!r} is open"
        elif kind == "content_block_stop":
            if index != open_index:
                return f"block {index!r} stops while {open_index!r} is open"
            open_index, expected = None, expected + 1
    if open_index is not None:
        return f"block {open_index!r} never stops"
    return None if expected else "no content block"


@check("messages-stream-events", variant="stream")
def stream_events(ctx: ProbeContext) -> Observation:
    exchange = send_message(ctx, message_body(ctx, REPLY_OK, max_tokens=8, stream=True))
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    if not exchange.ok:
        raise ProbeFailed(f"stream request: {exchange.describe_status()}")
    broken = event_violations(exchange)
    if broken:
        return observe("other", "broken: " + "; ".join(f"{rule} ({seen})" for rule, seen in broken.items()),
                       broken_rules=sorted(broken))
    pings = sum(1 for chunk in exchange.stream.chunks if as_dict(chunk).get("type") == "ping")
    return observe("anthropic", f"all {len(EVENT_RULES)} event rules hold over {len(exchange.stream.events)} events "
                   f"({pings} ping)")


# ---- stop_reason ------------------------------------------------------------------------------

def judged_stop(ctx: ProbeContext, body: dict[str, Any], expected: str) -> tuple[Observation | None, dict[str, Any]]:
    """Send `body`; an observation when the endpoint does not serve it, else the message."""
    exchange = send_message(ctx, body)
    absent = unserved(ctx, exchange)
    return absent, ({} if absent else ctx.require_success(exchange, f"request forcing {expected}"))


@check("messages-stop-reason", variant="end-turn")
def stop_end_turn(ctx: ProbeContext) -> Observation:
    absent, message = judged_stop(ctx, message_body(ctx, REPLY_OK, max_tokens=END_TURN_TOKENS), "end_turn")
    if absent:
        return absent
    reason = stop_reason(message)
    if reason == "end_turn":
        return observe("anthropic", f"a natural end is `end_turn` ({text(message)[:40]!r})")
    if reason == "max_tokens":
        return inconclusive(f"the model did not finish within {END_TURN_TOKENS} tokens, so no natural end was seen")
    return observe("other", f"a natural end is {reason!r}, not `end_turn`")


@check("messages-stop-reason", variant="max-tokens")
def stop_max_tokens(ctx: ProbeContext) -> Observation:
    absent, message = judged_stop(ctx, message_body(ctx, COUNT_TO_40, max_tokens=3), "max_tokens")
    if absent:
        return absent
    reason, output = stop_reason(message), as_dict(message.get("usage")).get("output_tokens")
    if reason == "max_tokens":
        return observe("anthropic", f"cut at the cap: `max_tokens` ({output} output tokens)")
    if reason == "end_turn" and type(output) is int and output < 3:
        return inconclusive(f"the model ended by itself after {output} tokens, before the cap of 3")
    return observe("other", f"a reply cut at max_tokens 3 says {reason!r} ({output} output tokens)")


#: The stop sequences: `5` meets a model that counts, `from` one that repeats the request (small
#: models do); whichever it writes first must be the one echoed.
STOPS = ["5", "from"]


@check("messages-stop-reason", variant="stop-sequence")
def stop_sequence(ctx: ProbeContext) -> Observation:
    """The same greedy request without `stop_sequences` (sent at once) shows which stop string the
    model writes first, since a server cuts it out of the stopped reply."""
    body = message_body(ctx, COUNT_TO_10, max_tokens=40)
    stopped, free = ctx.send_all([(MESSAGES_PATH, {**body, "stop_sequences": STOPS}), (MESSAGES_PATH, body)],
                                 **family_headers(ctx))
    if (absent := unserved(ctx, stopped)) is not None:
        return absent
    message = ctx.require_success(stopped, "request with stop_sequences")
    written = text(ctx.require_success(free, "the same request without stop_sequences"))
    hits = sorted((written.find(stop), stop) for stop in STOPS if stop in written)
    if not hits:
        return inconclusive(f"without stop_sequences the model writes none of {STOPS} in 40 tokens: {written[:60]!r}")
    first = hits[0][1]
    reason, echoed, said = stop_reason(message), message.get("stop_sequence"), text(message)
    if reason == "stop_sequence" and echoed == first:
        return observe("anthropic", f"`stop_sequence` with `stop_sequence: {json.dumps(echoed)}` echoed after {said!r}")
    return observe("other", f"where the model writes {first!r} the reply says stop_reason {reason!r}, stop_sequence "
                   f"{echoed!r} (text {said[:60]!r})")


@check("messages-stop-reason", variant="tool-use")
def stop_tool_use(ctx: ProbeContext) -> Observation:
    body = message_body(ctx, "Call get_code.", max_tokens=CALL_TOKENS, tools=[GET_CODE], tool_choice=FORCE_GET_CODE)
    absent, message = judged_stop(ctx, body, "tool_use")
    if absent:
        return absent
    if not blocks(message, "tool_use"):
        return inconclusive(f"no tool was called (stop_reason {stop_reason(message)!r}): that is "
                            "messages-tool-choice's finding, and there is no tool_use to name")
    if stop_reason(message) == "tool_use":
        return observe("anthropic", "a reply calling a tool is `tool_use`")
    return observe("other", f"a reply calling a tool says {stop_reason(message)!r}, not `tool_use`")


# ---- usage --------------------------------------------------------------------------------------

@check("messages-usage", variant="message")
def usage_in_message(ctx: ProbeContext) -> Observation:
    exchange = send_message(ctx, message_body(ctx, REPLY_OK, max_tokens=4))
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    usage = ctx.require_success(exchange, "message").get("usage")
    if usage is None:
        return observe("absent", "the message carries no `usage`")
    problem = count_problem(usage, "input_tokens", "output_tokens")
    if problem:
        return observe("other", problem)
    return observe("anthropic", f"usage {usage['input_tokens']} input + {usage['output_tokens']} output tokens")


@check("messages-stream-usage", variant="stream")
def usage_in_stream(ctx: ProbeContext) -> Observation:
    exchange = send_message(ctx, message_body(ctx, REPLY_OK, max_tokens=4, stream=True))
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    if not exchange.ok or not exchange.stream.chunks:
        raise ProbeFailed(f"stream request: {exchange.describe_status()}")
    frames = [as_dict(chunk) for chunk in exchange.stream.chunks]
    started = [as_dict(frame.get("message")).get("usage") for frame in frames if frame.get("type") == "message_start"]
    delta = [frame.get("usage") for frame in frames if frame.get("type") == "message_delta"]
    if not any(started) and not any(delta):
        return observe("absent", "neither `message_start` nor `message_delta` carries usage")
    problems = [problem for problem in (count_problem(started[0] if started else None, "input_tokens"),
                                        count_problem(delta[-1] if delta else None, "output_tokens")) if problem]
    if problems:
        return observe("other", "; ".join(problems) + " (message_start.message.usage, message_delta.usage)")
    return observe("anthropic", f"message_start: {as_dict(started[0])['input_tokens']} input tokens; "
                   f"message_delta: {as_dict(delta[-1])['output_tokens']} output tokens")


# ---- what a request must carry -----------------------------------------------------------------

def served_without(ctx: ProbeContext, exchange: Exchange, control_body: dict[str, Any], left_out: str) -> Observation:
    """`anthropic` when the request lacking `left_out` is refused and the control (with it) served;
    `fireworks` when it is served."""
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    if exchange.ok:
        return observe("fireworks", f"served without {left_out} (HTTP {exchange.status})")
    if not is_refused(exchange):
        raise ProbeFailed(f"without {left_out}: {exchange.describe_status()}")
    require_control(ctx.control(MESSAGES_PATH, control_body, **family_headers(ctx)), f"without {left_out} "
                    f"{rejection_reason(exchange)}", f"the same request with {left_out}")
    return observe("anthropic", f"without {left_out}: {rejection_reason(exchange)}; with it, served")


#: Events read of a stream before it is closed: enough to see it begin (message_start, a ping).
STREAM_BEGUN_EVENTS = 2


@check("messages-max-tokens-required", variant="message")
def max_tokens_required(ctx: ProbeContext) -> Observation:
    """Without a cap nothing bounds a reply, so the request streams and is closed as soon as the
    stream begins: a 200 stream means served, whatever the model would have gone on to write."""
    body = message_body(ctx, REPLY_OK, stream=True)
    exchange = send_message(ctx, body, abort_after_events=STREAM_BEGUN_EVENTS)
    return served_without(ctx, exchange, {**body, "max_tokens": 8}, "`max_tokens`")


@check("anthropic-version-header", variant="message")
def version_header(ctx: ProbeContext) -> Observation:
    body = message_body(ctx, REPLY_OK, max_tokens=1)
    exchange = send_message(ctx, body, **family_headers(ctx, version=False))
    return served_without(ctx, exchange, body, "the `anthropic-version` header")


#: The auth check's requests: (the key right or wrong, the header carrying it).
KEY_WAYS = [(True, "x-api-key"), (True, "bearer"), (False, "x-api-key"), (False, "bearer")]


@check("anthropic-auth-header", variant="message")
def auth_header(ctx: ProbeContext) -> Observation:
    """The right key and a wrong one, each in `x-api-key` alone and as `Authorization: Bearer` alone
    (four requests, sent at once, whose bodies differ by `max_tokens`, so a replay tells them apart)."""
    key = ctx.client.api_key or "no-key"
    requests = []
    for position, (right, header) in enumerate(KEY_WAYS):
        given = key if right else WRONG_API_KEY
        options = {"headers": anthropic_headers(given), "authorization": None} if header == "x-api-key" else \
            {"headers": anthropic_headers(None), "authorization": f"Bearer {given}"}
        requests.append((MESSAGES_PATH, message_body(ctx, REPLY_OK, max_tokens=position + 1), options))
    right_x, right_bearer, wrong_x, wrong_bearer = ctx.send_all(requests)
    if (absent := unserved(ctx, right_x)) is not None:
        return absent
    if wrong_x.ok and wrong_bearer.ok:
        return inconclusive("a wrong key was served in either header: the endpoint does not authenticate, so "
                            "there is no refusal to tell the headers apart")
    refusals = [exchange for exchange in (wrong_x, wrong_bearer, right_x, right_bearer) if not exchange.ok]
    malformed = [exchange.describe_status() for exchange in refusals if exchange.status not in (401, 403)
                 or exchange.json is None or ctx.schema_violations(ERROR_SCHEMA, exchange.json, "compatible")]
    if malformed:
        return observe("other", f"a refused key is not a 401 in Anthropic's envelope: {malformed[0]}")
    if right_x.ok and right_bearer.ok and not wrong_x.ok and not wrong_bearer.ok:
        return observe("anthropic", "the key is taken in x-api-key and as Authorization: Bearer; a wrong one is "
                       f"refused ({wrong_x.status}, {wrong_bearer.status})")
    if right_x.ok and not wrong_x.ok and not right_bearer.ok:
        return observe("x-api-key-only", f"x-api-key is checked, but the key as Authorization: Bearer is refused "
                       f"({right_bearer.status}): the official SDK 2.x sends it that way")
    if right_bearer.ok and not wrong_bearer.ok and (not right_x.ok or wrong_x.ok):
        return observe("bearer-only", "Authorization: Bearer is checked, x-api-key is not read "
                       f"(right key {right_x.status}, wrong key {wrong_x.status})")
    return observe("other", f"right key: x-api-key {right_x.status}, Bearer {right_bearer.status}; wrong key: "
                   f"x-api-key {wrong_x.status}, Bearer {wrong_bearer.status}")


# ---- tools ------------------------------------------------------------------------------------------

@check("messages-tool-choice", variant="message")
def tool_choice(ctx: ProbeContext) -> Observation:
    """Two tools; the prompt asks for one, `tool_choice` names the other, whose only argument is an enum."""
    body = message_body(ctx, "What is the weather in Paris? Call get_weather.", max_tokens=CALL_TOKENS,
                        tools=[GET_WEATHER, GET_CODE], tool_choice=FORCE_GET_CODE)
    exchange = send_message(ctx, body)
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    if refused_for(ctx, exchange, "tool_choice", **family_headers(ctx)):
        return observe("unsupported", f"tool_choice {{type: tool}} {rejection_reason(exchange)}")
    message = ctx.require_success(exchange, "forced tool call")
    calls = blocks(message, "tool_use")
    if not any(call.get("name") == "get_code" for call in calls):
        return observe("ignored", f"served without calling get_code: {[c.get('name') for c in calls] or 'text'} "
                       f"(stop_reason {stop_reason(message)!r})")
    call = next(call for call in calls if call.get("name") == "get_code")
    try:
        jsonschema.validate(call.get("input"), CODE_SCHEMA)
    except jsonschema.ValidationError as invalid:
        return observe("other", f"get_code called with input {call.get('input')!r}: {invalid.message}")
    return observe("anthropic", f"get_code called with {call.get('input')} (stop_reason {stop_reason(message)!r})")


#: Each optional field of the SDK's `ToolParam` that Fireworks documents as unsupported, with a value.
OPTIONAL_TOOL_FIELDS = {"cache_control": {"type": "ephemeral"}, "eager_input_streaming": True,
                        "defer_loading": False, "input_examples": [{"code": "A1"}], "allowed_callers": ["direct"]}


@check("messages-unsupported-tool-fields", variant="message")
def tool_fields(ctx: ProbeContext) -> Observation:
    def body(tool: dict[str, Any]) -> dict[str, Any]:
        return message_body(ctx, REPLY_OK, max_tokens=1, tools=[tool])

    exchanges = ctx.send_all([(MESSAGES_PATH, body({**GET_CODE, name: value}))
                              for name, value in OPTIONAL_TOOL_FIELDS.items()], **family_headers(ctx))
    if (absent := unserved(ctx, exchanges[0])) is not None:
        return absent
    accepted = [name for name, exchange in zip(OPTIONAL_TOOL_FIELDS, exchanges, strict=True) if exchange.ok]
    refused = [name for name, exchange in zip(OPTIONAL_TOOL_FIELDS, exchanges, strict=True) if is_refused(exchange)]
    if len(accepted) == len(exchanges):
        return observe("anthropic", f"all {len(accepted)} accepted: {', '.join(accepted)}")
    require_control(ctx.control(MESSAGES_PATH, body(GET_CODE), **family_headers(ctx)),
                    f"{', '.join(refused)} refused", "the same tool without them")
    if len(refused) == len(exchanges):
        return observe("fireworks", f"all {len(refused)} refused ({rejection_reason(exchanges[0])}); the plain "
                       "tool is accepted")
    return observe("other", f"accepted: {', '.join(accepted) or 'none'}; refused: {', '.join(refused) or 'none'}")


# ---- errors and count_tokens ----------------------------------------------------------------------

def expect_anthropic_error(ctx: ProbeContext, exchange: Exchange, status: int, kind: str,
                           situation: str) -> Observation:
    """`anthropic` when the answer is `status` in Anthropic's documented envelope (the strict schema:
    with its top-level `"type": "error"`, which the compatible one lets go) with error type `kind`."""
    if (absent := unserved(ctx, exchange)) is not None:
        return absent
    if exchange.ok:
        return observe("other", f"{situation}: answered HTTP {exchange.status} instead of refusing with {status}")
    body = exchange.json
    problems = (["the body is not JSON: " + repr(exchange.text[:80])] if body is None
                else [str(v) for v in ctx.schema_violations(ERROR_SCHEMA, body, "strict")])
    error = as_dict(as_dict(body).get("error"))
    if not problems and error.get("type") != kind:
        problems.append(f"error type {error.get('type')!r}, not {kind!r}")
    if exchange.status == status and not problems:
        return observe("anthropic", f"{situation}: HTTP {status}, Anthropic's envelope ({kind})")
    wrong = [] if exchange.status == status else [f"HTTP {exchange.status} instead of {status}"]
    return observe("other", f"{situation}: " + "; ".join(wrong + [f"error envelope: {p}" for p in problems]))


@check("messages-error-envelope", variant="unknown-model")
def error_unknown_model(ctx: ProbeContext) -> Observation:
    body = {**message_body(ctx, "Hi", max_tokens=1), "model": "conformance-no-such-model"}
    return expect_anthropic_error(ctx, send_message(ctx, body), 404, "not_found_error", "an unknown model")


@check("messages-error-envelope", variant="missing-messages")
def error_missing_messages(ctx: ProbeContext) -> Observation:
    exchange = send_message(ctx, {"model": ctx.model, "max_tokens": 1})
    return expect_anthropic_error(ctx, exchange, 400, "invalid_request_error", "no `messages`")


@check("messages-error-envelope", variant="invalid-json")
def error_invalid_json(ctx: ProbeContext) -> Observation:
    options = family_headers(ctx)
    options["headers"] = {**options["headers"], "content-type": "application/json"}
    exchange = ctx.send(MESSAGES_PATH, content=b'{"model": "' + ctx.model.encode() + b'", "messages": [', **options)
    return expect_anthropic_error(ctx, exchange, 400, "invalid_request_error", "a truncated JSON body")


#: Usage counts of input read from or written to the prompt cache, besides `input_tokens`.
CACHE_COUNTS = ("cache_read_input_tokens", "cache_creation_input_tokens")


@check("messages-count-tokens", variant="message")
def count_tokens(ctx: ProbeContext) -> Observation:
    """The count of a conversation against the `usage.input_tokens` of a message on it."""
    conversation = message_body(ctx, COUNT_TO_10)
    del conversation["temperature"]
    counted, message = ctx.send_all([(COUNT_TOKENS_PATH, conversation),
                                     (MESSAGES_PATH, {**conversation, "max_tokens": 1})], **family_headers(ctx))
    if (absent := unserved(ctx, message)) is not None:
        return absent
    usage = as_dict(ctx.require_success(message, "the message to compare with").get("usage"))
    # A message's input is split: `input_tokens` and, read from or written to the cache, the rest.
    cached = sum(usage[key] for key in CACHE_COUNTS if type(usage.get(key)) is int)
    if counted.status in (404, 405):
        return observe("unsupported", f"POST {COUNT_TOKENS_PATH} {rejection_reason(counted)}, while POST "
                       f"{MESSAGES_PATH} is served")
    number = as_dict(ctx.require_success(counted, "count_tokens")).get("input_tokens")
    if type(number) is not int:
        return observe("other", f"count_tokens answered input_tokens={number!r}, not an integer")
    if type(usage.get("input_tokens")) is not int:
        return inconclusive(f"count_tokens says {number}, but the message has no usage.input_tokens to compare")
    split = f"{usage['input_tokens']}" + (f" + {cached} cached" if cached else "")
    if number == usage["input_tokens"] + cached:
        return observe("anthropic", f"{number} input tokens, as the message's usage says ({split})")
    return observe("miscounted", f"count_tokens says {number}, the message's usage {split}")
