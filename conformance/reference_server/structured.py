"""Tool calls and structured outputs, honoured where the outcome is forced, refused where it cannot be.

The reference server never claims to honour what it ignores. A forced tool call (`tool_choice`
"required" or a named function) is answered with a call whose arguments are built from the tool's
JSON schema; `response_format` `json_object` is answered with `{}` and `json_schema` with a document
built from its schema. Values come from `const`, the first `enum` member, the first `anyOf`/`oneOf`
branch, or the plainest value of the type, and the document is validated against the schema before
it is sent: a schema this cannot satisfy (a `pattern`, say) is a 400 saying so, never prose with a 200.
With `tool_choice` "auto" or "none" the model may answer in text, and this one always does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from conformance.reference_server.errors import ApiError
from conformance.reference_server.validation import expect, invalid_value, require

TOOL_CHOICE_MODES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
PLAIN_VALUES = {"string": "", "integer": 0, "number": 0, "boolean": False, "null": None, "object": {}, "array": []}


class Unsatisfiable(Exception):
    """The schema asks for something these rules cannot build."""


@dataclass(frozen=True)
class ToolCall:
    """The call a forced `tool_choice` makes."""

    name: str
    arguments: str
    #: OpenAI ends a "required" call with `tool_calls` and a named one with `stop`.
    finish_reason: str


def forced_tool_call(body: dict[str, Any]) -> ToolCall | None:
    """The call `tool_choice` forces, after checking `tools` and `tool_choice`; None when the
    model may answer in text."""
    tools = {check_tool(tool, f"tools[{position}]"): tool for position, tool in enumerate(body.get("tools") or [])}
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not tools:
        raise invalid_value("tool_choice", "'tool_choice' is only allowed when 'tools' are specified.")
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise invalid_value("tool_choice", f"expected one of {', '.join(TOOL_CHOICE_MODES)}, but got {choice!r}.")
        if choice != "required":
            return None
        name, finish = next(iter(tools)), "tool_calls"
    else:
        if require(choice, "type", "tool_choice.type", "string") != "function":
            raise invalid_value("tool_choice.type", "expected 'function'.")
        function = require(choice, "function", "tool_choice.function", "object")
        name, finish = require(function, "name", "tool_choice.function.name", "string"), "stop"
        if name not in tools:
            raise invalid_value("tool_choice.function.name", f"no tool named {name!r} is in 'tools'.")
    parameters = tools[name]["function"].get("parameters", {"type": "object", "properties": {}})
    arguments = document_for(parameters, f"tools[{list(tools).index(name)}].function.parameters")
    return ToolCall(name, json.dumps(arguments, separators=(",", ":")), finish)


def check_tool(tool: Any, path: str) -> str:
    """A function tool's name, after checking its shape."""
    expect(tool, path, "object")
    if require(tool, "type", f"{path}.type", "string") != "function":
        raise invalid_value(f"{path}.type", "the reference server serves function tools only.")
    function = require(tool, "function", f"{path}.function", "object")
    if "parameters" in function:
        expect(function["parameters"], f"{path}.function.parameters", "object")
    return require(function, "name", f"{path}.function.name", "string")


def response_document(body: dict[str, Any]) -> str | None:
    """The JSON text `response_format` asks for, or None for plain text."""
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = require(response_format, "type", "response_format.type", "string")
    if kind not in RESPONSE_FORMATS:
        raise invalid_value("response_format.type", f"expected one of {', '.join(RESPONSE_FORMATS)}, but got {kind!r}.")
    extra = sorted(set(response_format) - {"type", kind})
    if extra:
        raise ApiError(400, f"Unrecognized request argument supplied: response_format.{extra[0]}",
                       param=f"response_format.{extra[0]}")
    if kind == "text":
        return None
    if kind == "json_object":
        return "{}"
    settings = require(response_format, "json_schema", "response_format.json_schema", "object")
    require(settings, "name", "response_format.json_schema.name", "string")
    schema = settings.get("schema", {})
    expect(schema, "response_format.json_schema.schema", "object")
    return json.dumps(document_for(schema, "response_format.json_schema.schema"), separators=(",", ":"))


def document_for(schema: dict[str, Any], path: str) -> Any:
    """A value valid against `schema`, or a 400 naming `path` when the schema is broken or asks
    for more than these rules can build."""
    try:
        Draft202012Validator.check_schema(schema)
        document = build(schema, schema)
        problem = next(iter(Draft202012Validator(schema).iter_errors(document)), None)
    except SchemaError as error:
        raise invalid_value(path, f"not a valid JSON schema: {error.message}") from None
    except (Unsatisfiable, RecursionError) as error:
        problem = error
    if problem is not None:
        raise invalid_value(path, "the reference server builds outputs from const, enum, anyOf/oneOf and plain "
                            f"types only, and cannot satisfy this schema ({getattr(problem, 'message', problem)}).")
    return document


def build(schema: Any, root: dict[str, Any]) -> Any:
    """The plainest value `schema` allows, as far as const, enum, the first branch and the type say."""
    if not isinstance(schema, dict):
        raise Unsatisfiable("a boolean schema")
    if "$ref" in schema:
        return build(resolve(schema["$ref"], root), root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for keyword in ("anyOf", "oneOf"):
        if schema.get(keyword):
            return build(schema[keyword][0], root)
    kind = schema.get("type", "object" if "properties" in schema else "null")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: build(sub, root) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [build(schema.get("items", {}), root) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number") and "minimum" in schema:
        return schema["minimum"]
    if kind not in PLAIN_VALUES:
        raise Unsatisfiable(f"type {kind!r}")
    return PLAIN_VALUES[kind]


def resolve(reference: str, root: dict[str, Any]) -> Any:
    """A local `#/...` reference inside the schema."""
    if not reference.startswith("#/"):
        raise Unsatisfiable(f"a non-local $ref {reference!r}")
    target: Any = root
    for key in reference[2:].split("/"):
        if not isinstance(target, dict) or key not in target:
            raise Unsatisfiable(f"an unresolvable $ref {reference!r}")
        target = target[key]
    return target
