"""Tool calls and structured outputs, honoured where the outcome is forced, refused where it cannot be.

The reference server never claims to honour what it ignores. A forced tool call (`tool_choice`
"required" or a named function) is answered with a call whose arguments are built from the tool's
JSON schema; `response_format` `json_object` is answered with `{}` and `json_schema` with a document
built from its schema. Values come from `const`, the first `enum` member, the first `anyOf`/`oneOf`
branch, or the plainest value of the type, and the document is validated against the schema before
it is sent: a schema this cannot satisfy (a `pattern`, say) is a 400 saying so, never prose with a 200.
With `tool_choice` "auto" or "none" the model may answer in text, and this one always does.

Acting as Fireworks documents, it also takes `tool_choice` "any" (an alias of "required") and the
flat named form `{"type": "function", "name": ...}`, serves grammar mode for grammars that choose
between literals (`root ::= "yes" | "no"`), and refuses the JSON-schema keywords Fireworks lists as
unsupported.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from conformance.reference_server.errors import ApiError
from conformance.reference_server.validation import expect, invalid_value, require

TOOL_CHOICE_MODES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
#: Fireworks' alias of "required".
FIREWORKS_REQUIRED = "any"
#: Keywords Fireworks' structured-output guide lists as unsupported in a JSON schema.
FIREWORKS_UNSUPPORTED_KEYWORDS = ("oneOf", "pattern", "minLength", "maxLength", "minItems", "maxItems")
#: The grammars this server honours: a root rule choosing between string literals.
LITERAL_CHOICE = re.compile(r'\s*root\s*::=\s*("(?:[^"\\]|\\.)*"(?:\s*\|\s*"(?:[^"\\]|\\.)*")*)\s*')
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


def forced_tool_call(body: dict[str, Any], fireworks_forms: bool = False) -> ToolCall | None:
    """The call `tool_choice` forces, after checking `tools` and `tool_choice`; None when the
    model may answer in text. `fireworks_forms` also takes "any" and the flat named form."""
    tools = {check_tool(tool, f"tools[{position}]"): tool for position, tool in enumerate(body.get("tools") or [])}
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not tools:
        raise invalid_value("tool_choice", "'tool_choice' is only allowed when 'tools' are specified.")
    if fireworks_forms and choice == FIREWORKS_REQUIRED:
        choice = "required"
    if fireworks_forms and isinstance(choice, dict) and "name" in choice and "function" not in choice:
        choice = {"type": choice.get("type"), "function": {"name": choice["name"]}}
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


def response_document(body: dict[str, Any], grammar: bool = False, fireworks_subset: bool = False) -> str | None:
    """The text `response_format` asks for, or None for plain text. `grammar` serves Fireworks'
    grammar mode; `fireworks_subset` refuses the schema keywords Fireworks does not support."""
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = require(response_format, "type", "response_format.type", "string")
    if grammar and kind == "grammar":
        return grammar_document(require(response_format, "grammar", "response_format.grammar", "string"))
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
    if fireworks_subset and (keyword := unsupported_keyword(schema)):
        raise invalid_value("response_format.json_schema.schema",
                            f"the JSON schema keyword {keyword!r} is not supported.")
    return json.dumps(document_for(schema, "response_format.json_schema.schema"), separators=(",", ":"))


def grammar_document(grammar: str) -> str:
    """The first literal a `root ::= "a" | "b"` grammar allows; a 400 for any other grammar."""
    match = LITERAL_CHOICE.fullmatch(grammar)
    if match is None:
        raise invalid_value("response_format.grammar", "the reference server serves grammars of the form "
                            '`root ::= "a" | "b"` only.')
    first = re.match(r'"(?:[^"\\]|\\.)*"', match.group(1))  # LITERAL_CHOICE starts with a literal
    return json.loads(first.group(0) if first else match.group(1))


def unsupported_keyword(schema: Any) -> str | None:
    """The first keyword Fireworks does not support anywhere in `schema`, or None (a property
    merely named like a keyword is not one)."""
    if isinstance(schema, list):
        return next(filter(None, map(unsupported_keyword, schema)), None)
    if not isinstance(schema, dict):
        return None
    found = next((keyword for keyword in FIREWORKS_UNSUPPORTED_KEYWORDS if keyword in schema), None)
    for key, value in schema.items():
        if found:
            break
        named = key in ("properties", "$defs", "definitions") and isinstance(value, dict)
        found = unsupported_keyword(list(value.values()) if named else value)
    return found


@functools.lru_cache(maxsize=256)
def checked_validator(spelled: str) -> Draft202012Validator:
    """A validator of the schema `spelled` (canonical JSON), checked against the metaschema once:
    a matrix run sends the same schemas to every model, and the check is a tenth of the server's
    work. SchemaError (not kept: a broken schema is checked each time) when it is no valid schema."""
    schema = json.loads(spelled)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def document_for(schema: dict[str, Any], path: str) -> Any:
    """A value valid against `schema`, or a 400 naming `path` when the schema is broken or asks
    for more than these rules can build."""
    try:
        validator = checked_validator(json.dumps(schema, sort_keys=True))
        document = build(schema, schema)
        problem = next(iter(validator.iter_errors(document)), None)
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
