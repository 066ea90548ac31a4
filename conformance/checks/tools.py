"""Tool calling and structured outputs.

Every probe forces its outcome with the endpoint's own machinery rather than the model's
obedience: the tool's only argument is an enum, the schema allows only `yes`/`no`, the grammar is
`root ::= "yes" | "no"`; and the prompt shows the expected call or document, which a small model
echoes and a large one follows. So a weak model and a strong one get the same verdict; where the
reply is still cut by `max_tokens` before the call or document is whole, the verdict is
`inconclusive`, never a guess.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    ProbeFailed,
    as_dict,
    as_list,
    check,
    choices_of,
    first_choice,
    is_refused,
    refused_for,
    rejection_reason,
    require_control,
)
from conformance.checks.surface import sdk_steps
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive, observe

CODE_SCHEMA = {"type": "object", "properties": {"code": {"type": "string", "enum": ["A1"]}},
               "required": ["code"], "additionalProperties": False}
GET_CODE = {"type": "function", "function": {"name": "get_code", "description": "Returns a code.",
                                             "parameters": CODE_SCHEMA}}
GET_NAME = {"type": "function", "function": {"name": "get_name", "description": "Returns a name.", "parameters": {
    "type": "object", "properties": {"name": {"type": "string", "enum": ["B2"]}}, "required": ["name"],
    "additionalProperties": False}}}


def written_call(name: str, arguments: str) -> str:
    """A call as text: a model that echoes its prompt (a small one does) writes the call the server's
    tool-call parser and grammar take, so even a weak model shows whether forcing holds."""
    return f'<tool_call>{{"name": "{name}", "arguments": {arguments}}}</tool_call>'


CALL_GET_CODE = [{"role": "user", "content": written_call("get_code", '{"code": "A1"}')}]
#: The user writes both calls: only parallel_tool_calls: false keeps the answer to one.
CALL_BOTH = [{"role": "user", "content": written_call("get_code", '{"code": "A1"}') +
              written_call("get_name", '{"name": "B2"}')}]
#: Room for a forced call such as {"code":"A1"} or {"name":"B2"} whatever the tokenizer, and for
#: the whole written call when a server ignores the forcing and the model echoes it.
CALL_TOKENS = 32
YES_NO_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
                 "required": ["answer"], "additionalProperties": False}
#: Names JSON, as OpenAI's JSON mode requires, and shows the document (a weak model echoes it).
ASK_JSON = 'JSON: {"answer": "yes"}'
#: Room for {"answer": "yes"} with some whitespace.
JSON_TOKENS = 16


def tool_calls(exchange: Exchange) -> list[dict[str, Any]]:
    """The tool calls of a successful non-streamed answer's first choice."""
    message = as_dict(first_choice(exchange.json if isinstance(exchange.json, dict) else {}).get("message"))
    return [as_dict(call) for call in as_list(message.get("tool_calls"))]


def forcing(ctx: ProbeContext, exchange: Exchange, name: str) -> str:
    """How one forced request went: `enforced` (a call to `name`), `refused` (a 4xx the control
    without `tool_choice` does not get), `ignored` (a finished 200 without that call) or `cut short`
    (no call, and max_tokens ended the reply: the call may have been on its way)."""
    if refused_for(ctx, exchange, "tool_choice"):
        return "refused"
    ctx.require_success(exchange, "a request forcing a tool call")
    called = [as_dict(call.get("function")).get("name") for call in tool_calls(exchange)]
    if name in called:
        return "enforced"
    return "cut short" if finish_reason(exchange) == "length" and not called else "ignored"


def finish_reason(exchange: Exchange) -> Any:
    return first_choice(exchange.json).get("finish_reason") if exchange.ok and isinstance(exchange.json, dict) else None


@check("tool-choice", variant="chat")
def tool_choice(ctx: ProbeContext) -> Observation:
    def body(tools: list[dict[str, Any]], choice: Any) -> dict[str, Any]:
        return CHAT.body(ctx.model, CALL_GET_CODE, {"max_tokens": CALL_TOKENS, "tools": tools, "tool_choice": choice})

    # The named forms ask for the tool the prompt does not: only enforcement makes that call.
    forms = {"required": (body([GET_CODE], "required"), "get_code"),
             "named": (body([GET_CODE, GET_NAME], {"type": "function", "function": {"name": "get_name"}}), "get_name"),
             "any": (body([GET_CODE], "any"), "get_code"),
             "flat named": (body([GET_CODE, GET_NAME], {"type": "function", "name": "get_name"}), "get_name")}
    exchanges = dict(zip(forms, ctx.send_all([(CHAT.path, request) for request, _ in forms.values()]), strict=True))
    seen = {form: forcing(ctx, exchanges[form], name) for form, (_, name) in forms.items()}
    finishes = {form: finish_reason(exchanges[form]) for form in ("required", "named")}
    summary = ", ".join(f"{form}: {outcome}" for form, outcome in seen.items())
    summary += f"; finish_reason required={finishes['required']}, named={finishes['named']}"
    if "cut short" in seen.values():
        return inconclusive(f"max_tokens ended a reply before any call: {summary}", forms=seen)
    if seen["required"] == "refused":
        return observe("unsupported", f"tool_choice required {rejection_reason(exchanges['required'])}")
    if "ignored" in (seen["required"], seen["named"]):
        return observe("ignored", summary, forms=seen, finish_reasons=finishes)
    if seen["required"] == seen["named"] == "enforced":
        extensions = (seen["any"], seen["flat named"])
        if extensions == ("refused", "refused"):
            return observe("openai", summary, forms=seen, finish_reasons=finishes)
        if extensions == ("enforced", "enforced"):
            return observe("fireworks", summary, forms=seen, finish_reasons=finishes)
    return observe("other", summary, forms=seen, finish_reasons=finishes)


def tool_stream_rules(chunks: list[dict[str, Any]], schema: dict[str, Any]) -> tuple[dict[str, str], int]:
    """The broken rules of a streamed tool call (rule -> what broke it), and how many calls streamed."""
    broken: dict[str, str] = {}
    calls: dict[Any, dict[str, Any]] = {}
    finishes = 0
    for position, chunk in enumerate(chunks):
        for choice in choices_of(chunk):
            finishes += bool(choice.get("finish_reason"))
            for delta in as_list(as_dict(choice.get("delta")).get("tool_calls")):
                delta = as_dict(delta)
                index = delta.get("index")
                if type(index) is not int:
                    broken.setdefault("integer-index", f"chunk #{position}: index is {index!r}")
                identity = {"id": delta.get("id"), "type": delta.get("type"),
                            "name": as_dict(delta.get("function")).get("name")}
                if index not in calls:
                    missing = [key for key, value in identity.items() if not value]
                    if missing or identity["type"] != "function":
                        broken.setdefault("first-delta-complete", f"chunk #{position}: the first delta of call "
                                          f"{index!r} has {identity} (needs id, type 'function' and the name)")
                    calls[index] = {**identity, "arguments": ""}
                else:
                    changed = [key for key, value in identity.items() if value and value != calls[index][key]]
                    if changed:
                        broken.setdefault("fixed-identity", f"chunk #{position}: call {index!r} changes {changed}")
                pieces = as_dict(delta.get("function")).get("arguments")
                calls[index]["arguments"] += pieces if isinstance(pieces, str) else ""
    for index, call in calls.items():
        try:
            jsonschema.validate(json.loads(call["arguments"]), schema)
        except (ValueError, jsonschema.ValidationError) as problem:
            broken.setdefault("arguments-valid", f"call {index!r}: arguments {call['arguments'][:80]!r}: "
                              f"{getattr(problem, 'message', problem)}")
    if calls and finishes != 1:
        broken["one-finish"] = f"{finishes} chunks carry a finish_reason"
    return broken, len(calls)


@check("tool-call-stream", variant="chat")
def tool_call_stream(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, CALL_GET_CODE, max_tokens=CALL_TOKENS, stream=True, tools=[GET_CODE],
                            tool_choice="required")
    if refused_for(ctx, exchange, "tools", "tool_choice"):
        return observe("unsupported", f"a stream with tools {rejection_reason(exchange)}")
    chunks = ctx.require_stream(exchange, "stream forcing a tool call")
    broken, calls = tool_stream_rules(chunks, CODE_SCHEMA)
    if broken:
        return observe("other", "broken: " + "; ".join(f"{rule} ({why})" for rule, why in broken.items()),
                       broken_rules=sorted(broken))
    if not calls:
        return inconclusive("tool_choice required streamed no tool call, so there are no deltas to judge "
                            "(see tool-choice)")
    return observe("openai", f"{calls} streamed call(s); every tool-call delta rule holds")


ROUND_TRIP_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_code", "arguments": '{"code":"A1"}'}}


def round_trip(content: Any, answer: Any) -> list[dict[str, Any]]:
    return [*CALL_GET_CODE, {"role": "assistant", "content": content, "tool_calls": [ROUND_TRIP_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": answer}]


@check("tool-call-round-trip", variant="chat")
def tool_call_round_trip(ctx: ProbeContext) -> Observation:
    null_content, parts = ctx.send_all([
        (CHAT.path, CHAT.body(ctx.model, round_trip(None, "A1"), {"max_tokens": 1})),
        (CHAT.path, CHAT.body(ctx.model, round_trip(None, [{"type": "text", "text": "A1"}]), {"max_tokens": 1}))])
    if not is_refused(null_content):
        ctx.require_success(null_content, "the history with a tool call")
        if not is_refused(parts):
            ctx.require_success(parts, "the history with tool content parts")
            return observe("openai", "content: null with tool_calls, and both tool-content forms, accepted")
        return observe("rejects-tool-parts", f"tool content as text parts {rejection_reason(parts)}; "
                       "as a string it is accepted")
    empty = ctx.control(CHAT.path, CHAT.body(ctx.model, round_trip("", "A1"), {"max_tokens": 1}))
    if empty.ok:
        return observe("rejects-null-content", f"content: null {rejection_reason(null_content)}; "
                       "the same history with content \"\" is accepted")
    plain = ctx.control(CHAT.path, CHAT.body(ctx.model, CALL_GET_CODE, {"max_tokens": 1}))
    require_control(plain, f"tool-call history {rejection_reason(null_content)}", "the request without the history")
    return observe("unsupported", f"any tool-call history {rejection_reason(null_content)}")


@check("parallel-tool-calls", variant="chat")
def parallel_tool_calls(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, CALL_BOTH, max_tokens=2 * CALL_TOKENS, tools=[GET_CODE, GET_NAME],
                            tool_choice="required",
                            parallel_tool_calls=False)
    if refused_for(ctx, exchange, "parallel_tool_calls"):
        return observe("unsupported", f"parallel_tool_calls {rejection_reason(exchange)}")
    ctx.require_success(exchange, "a request with parallel_tool_calls: false")
    calls = tool_calls(exchange)
    if len(calls) > 1:
        return observe("ignored", f"{len(calls)} calls despite parallel_tool_calls: false")
    if not calls:
        return inconclusive("accepted, but tool_choice required made no call, so a limit on calls is unseen "
                            "(see tool-choice)")
    return observe("openai", "accepted; one call")


def structured_content(ctx: ProbeContext, exchange: Exchange, what: str) -> tuple[str, Any] | Observation:
    """The content and finish_reason of a structured answer, or the observation that ends the probe
    (refused: unsupported)."""
    if refused_for(ctx, exchange, "response_format"):
        return observe("unsupported", f"response_format {rejection_reason(exchange)}")
    choice = first_choice(ctx.require_success(exchange, what))
    content = as_dict(choice.get("message")).get("content")
    if not isinstance(content, str):
        raise ProbeFailed(f"{what}: message.content is {content!r}, not text")
    return content, choice.get("finish_reason")


def judge_json(content: str, finish: Any, schema: dict[str, Any] | None) -> Observation:
    """openai for a whole JSON object (valid against `schema` if given), even if max_tokens then cut
    trailing whitespace; ignored for prose or a rejected document; inconclusive when max_tokens cut
    a reply that is still a JSON prefix."""
    text = content.strip()
    try:
        document = json.loads(text)
    except ValueError:
        if finish == "length" and (not text or text.startswith("{")):
            return inconclusive(f"cut by max_tokens after {content[:60]!r}: a model that closes the object "
                                "sooner would decide this")
        return observe("ignored", f"not a JSON document ({finish}): {content[:80]!r}")
    if not isinstance(document, dict):
        return observe("ignored", f"JSON but not an object: {content[:80]!r}")
    problem = next(iter(jsonschema.Draft202012Validator(schema).iter_errors(document)), None) if schema else None
    if problem is not None:
        return observe("ignored", f"the document breaks the schema: {problem.message}")
    return observe("openai", f"a JSON object{' valid against the schema' if schema else ''}: {text[:80]}")


@check("response-format-json-object", variant="chat")
def json_object(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, ASK_JSON, max_tokens=JSON_TOKENS, response_format={"type": "json_object"})
    answer = structured_content(ctx, exchange, "a json_object request")
    return answer if isinstance(answer, Observation) else judge_json(*answer, None)


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}


@check("response-format-json-schema", variant="chat")
def json_schema(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, ASK_JSON, max_tokens=JSON_TOKENS, response_format=json_schema_format(YES_NO_SCHEMA))
    answer = structured_content(ctx, exchange, "a json_schema request")
    return answer if isinstance(answer, Observation) else judge_json(*answer, YES_NO_SCHEMA)


YES_NO_GRAMMAR = 'root ::= "yes" | "no"'


@check("response-format-grammar", variant="chat")
def grammar(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, "Is the sky blue? Answer yes or no.", max_tokens=4,
                            response_format={"type": "grammar", "grammar": YES_NO_GRAMMAR})
    if refused_for(ctx, exchange, "response_format"):
        return observe("openai", f"grammar mode {rejection_reason(exchange)}")
    choice = first_choice(ctx.require_success(exchange, "a grammar request"))
    content = as_dict(choice.get("message")).get("content")
    if isinstance(content, str) and content.strip() in ("yes", "no"):
        return observe("fireworks", f"the grammar held: {content!r}")
    if choice.get("finish_reason") == "length" and isinstance(content, str) and content.strip() in ("", "y", "n"):
        return inconclusive(f"cut by max_tokens after {content!r}")
    return observe("other", f"grammar mode accepted, but the answer is {str(content)[:80]!r}")


#: The yes/no schema with a `pattern` that says the same as its enum, so the answer stays forced.
PATTERN_SCHEMA = {**YES_NO_SCHEMA, "properties": {"answer": {**YES_NO_SCHEMA["properties"]["answer"],
                                                              "pattern": "^(yes|no)$"}}}


@check("json-schema-subset", variant="chat")
def schema_subset(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, ASK_JSON, max_tokens=JSON_TOKENS, response_format=json_schema_format(PATTERN_SCHEMA))
    if not is_refused(exchange):
        ctx.require_success(exchange, "a json_schema request using pattern")
        return observe("openai", "a schema using pattern is accepted (whether it is enforced: "
                                 "response-format-json-schema)")
    control = ctx.control(CHAT.path, CHAT.body(ctx.model, ASK_JSON, {
        "max_tokens": JSON_TOKENS, "response_format": json_schema_format(YES_NO_SCHEMA)}))
    require_control(control, f"a json_schema using pattern {rejection_reason(exchange)}",
                    "the same schema without pattern")
    if not isinstance(as_dict(exchange.json).get("error"), dict):
        return observe("other", f"pattern {rejection_reason(exchange)}, without an error envelope")
    return observe("fireworks", f"pattern {rejection_reason(exchange)}; the same schema without it is accepted")


@check("openai-sdk", variant="tools")
def sdk_tools(ctx: ProbeContext) -> Observation:
    """What the SDK cannot be shown (tools refused, no call made, a reply cut short) is judged by the
    tool and response-format checks; here it makes the verdict inconclusive, not a failure of the SDK."""
    result, unseen = sdk_steps(ctx, [
        ("create(tools, tool_choice=required, stream=True)", "chat_tool_call_stream",
         {"request": {"model": ctx.model, "messages": CALL_GET_CODE, "tools": [GET_CODE], "tool_choice": "required",
                      "max_tokens": CALL_TOKENS, "temperature": 0}, "schema": CODE_SCHEMA}),
        ("chat.completions.parse(response_format=<pydantic model>)", "chat_parse",
         {"request": {"model": ctx.model, "messages": [{"role": "user", "content": ASK_JSON}],
                      "max_tokens": JSON_TOKENS, "temperature": 0}})])
    if result.behaviour == "openai" and unseen:
        return inconclusive("the SDK parsed every answer, but " + "; ".join(unseen))
    return result
