"""Request-body validation of the reference server, field by field as OpenAI's spec types them
(`schemas/source/openai-openapi.json`: `CreateChatCompletionRequest`, `CreateCompletionRequest`).

Every malformed body gets a 400 `invalid_request_error` naming the field (`messages[0].content`),
as OpenAI answers, never a 500 from code that trusted a type: a missing required field is
`missing_required_parameter`, a wrong type (null included, where the spec does not allow it) is
`invalid_type`, a value out of range is `invalid_value`.
"""

from __future__ import annotations

from typing import Any

from conformance.reference_server.errors import ApiError

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: The JSON types the spec allows for each optional request field ("null" where it is nullable).
#: `logprobs` is typed by the caller: its form differs between the APIs and between vendors.
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "temperature": ("number", "null"), "top_p": ("number", "null"), "n": ("integer", "null"),
    "presence_penalty": ("number", "null"), "frequency_penalty": ("number", "null"),
    "max_tokens": ("integer", "null"), "max_completion_tokens": ("integer", "null"),
    "stream": ("boolean", "null"), "stream_options": ("object", "null"), "stop": ("string", "array", "null"),
    "logit_bias": ("object", "null"), "user": ("string",), "seed": ("integer", "null"),
    "top_logprobs": ("integer", "null"), "tools": ("array",), "tool_choice": ("string", "object"),
    "parallel_tool_calls": ("boolean",), "response_format": ("object",), "functions": ("array",),
    "function_call": ("string", "object"), "service_tier": ("string", "null"), "store": ("boolean", "null"),
    "metadata": ("object", "null"), "modalities": ("array", "null"), "prediction": ("object", "null"),
    "reasoning_effort": ("string", "integer", "null"), "prompt_cache_key": ("string",), "safety_identifier": ("string",
                                                                                                              ),
    "verbosity": ("string", "null"), "suffix": ("string", "null"), "echo": ("boolean", "null"),
    "best_of": ("integer", "null"),
    # Fireworks' extensions (known only while the server acts as Fireworks on their entries).
    "context_length_exceeded_behavior": ("string",), "perf_metrics_in_response": ("boolean",),
    "raw_output": ("boolean",), "top_k": ("integer", "null"), "min_p": ("number", "null"),
    "typical_p": ("number", "null"), "repetition_penalty": ("number", "null"), "ignore_eos": ("boolean",),
    "echo_last": ("integer", "null"),
}
#: Inclusive bounds of numeric fields (None: unbounded on that side).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2),
    "n": (1, 128), "max_tokens": (0, None), "max_completion_tokens": (0, None), "best_of": (0, 20),
}
MAX_STOP_SEQUENCES = 4
_ARTICLES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean",
             "array": "an array", "object": "an object", "null": "null"}


def json_type(value: Any) -> str:
    """The JSON type name of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def expect(value: Any, path: str, *types: str) -> None:
    """A 400 `invalid_type` unless `value` has one of `types` (a "number" may be an integer)."""
    found = json_type(value)
    if found in types or (found == "integer" and "number" in types):
        return
    expected = " or ".join(_ARTICLES[t] for t in types)
    raise ApiError(400, f"Invalid type for '{path}': expected {expected}, but got {_ARTICLES[found]} instead.",
                   param=path, code="invalid_type")


def require(container: dict[str, Any], key: str, path: str, *types: str) -> Any:
    """`container[key]`, which must be present and of one of `types`."""
    if key not in container:
        raise ApiError(400, f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")
    expect(container[key], path, *types)
    return container[key]


def invalid_value(path: str, message: str) -> ApiError:
    return ApiError(400, f"Invalid value for '{path}': {message}", param=path, code="invalid_value")


def check_model(body: dict[str, Any]) -> str:
    """The requested model: required by every generation API, and a string."""
    return require(body, "model", "model", "string")


def check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`messages`: a non-empty array of messages, each typed as its role requires."""
    messages = require(body, "messages", "messages", "array")
    if not messages:
        raise invalid_value("messages", "expected a non-empty array of messages.")
    for position, message in enumerate(messages):
        check_message(message, f"messages[{position}]")
    return messages


def check_message(message: Any, path: str) -> None:
    expect(message, path, "object")
    role = require(message, "role", f"{path}.role", "string")
    if role not in CHAT_ROLES:
        raise invalid_value(f"{path}.role", f"expected one of {', '.join(CHAT_ROLES)}, but got {role!r}.")
    content = f"{path}.content"
    if role == "assistant":
        if "tool_calls" not in message and "function_call" not in message:
            require(message, "content", content, "string", "array", "null")
        elif "content" in message:
            expect(message["content"], content, "string", "array", "null")
    elif role == "function":
        require(message, "content", content, "string", "null")
        require(message, "name", f"{path}.name", "string")
    else:
        require(message, "content", content, "string", "array")
    if role == "tool":
        require(message, "tool_call_id", f"{path}.tool_call_id", "string")
    if "name" in message:
        expect(message["name"], f"{path}.name", "string")
    if isinstance(message.get("content"), list):
        check_parts(message["content"], content)


def check_parts(parts: list[Any], path: str) -> None:
    if not parts:
        raise invalid_value(path, "expected a non-empty array of content parts.")
    for position, part in enumerate(parts):
        where = f"{path}[{position}]"
        expect(part, where, "object")
        if require(part, "type", f"{where}.type", "string") == "text":
            require(part, "text", f"{where}.text", "string")


def check_prompt(body: dict[str, Any]) -> Any:
    """`prompt`: a string, or an array of strings, of token ids, or of token-id arrays."""
    prompt = require(body, "prompt", "prompt", "string", "array")
    if isinstance(prompt, list):
        for position, item in enumerate(prompt):
            expect(item, f"prompt[{position}]", "string", "integer", "array")
    return prompt


def check_optional_fields(body: dict[str, Any]) -> None:
    """Type and range of every optional field the body sets."""
    for name, types in OPTIONAL_FIELDS.items():
        if name in body:
            expect(body[name], name, *types)
    for name, (low, high) in RANGES.items():
        value = body.get(name)
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise invalid_value(name, f"expected a number {bounds}, but got {value}.")
    stop = body.get("stop")
    if isinstance(stop, list):
        if len(stop) > MAX_STOP_SEQUENCES:
            raise invalid_value("stop", f"expected at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stop)}.")
        for position, sequence in enumerate(stop):
            expect(sequence, f"stop[{position}]", "string")
    if isinstance(body.get("stream_options"), dict) and "include_usage" in body["stream_options"]:
        expect(body["stream_options"]["include_usage"], "stream_options.include_usage", "boolean")
    for token, bias in (body.get("logit_bias") or {}).items():
        if not token.isdigit():
            raise invalid_value("logit_bias", f"keys must be token ids, but got {token!r}.")
        expect(bias, f"logit_bias.{token}", "number")
        if not -100 <= bias <= 100:
            raise invalid_value(f"logit_bias.{token}", f"expected a number between -100 and 100, but got {bias}.")
