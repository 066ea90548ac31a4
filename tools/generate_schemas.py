#!/usr/bin/env python3
"""Generate the project's JSON Schemas (draft 2020-12) from OpenAI's OpenAPI spec.

Why this exists: the conformance suite judges provider responses against schemas, and hand-written
schemas drift silently.  Every file under ``schemas/strict``, ``schemas/compatible``, ``schemas/index.json``
and ``schemas/source/PROVENANCE.md`` is produced here from the pinned copy of OpenAI's spec in
``schemas/source/openai-openapi.json``, so a reviewer can see exactly where each rule came from and a
test (``tests/test_schema_generation.py``) fails when the committed files differ from what this
script writes.

Two sets are written:

* ``strict`` -- OpenAI's component as specified, made usable as JSON Schema (OpenAPI's ``nullable``
  rewritten, refs bundled under ``$defs``, documentation keywords dropped).
* ``compatible``   -- the strict schema with a list of named, documented relaxations (``COMPATIBLE_RELAXATIONS``)
  applied.  Each relaxation is one difference observed in Fireworks / vLLM / Groq responses that an
  OpenAI client tolerates in practice.

Usage::

    python tools/generate_schemas.py                 # write into schemas/
    python tools/generate_schemas.py --check         # exit 1 listing files that would change
    python tools/generate_schemas.py --out DIR       # write into DIR instead of schemas/
    python tools/generate_schemas.py --import-spec /path/to/openai-openapi
                                                     # copy openapi.json + LICENSE into
                                                     # schemas/source/ first (pinned by sha256)

The OpenAI targets need only the standard library.  The Anthropic Messages targets
(``ANTHROPIC_TARGETS``) come from the ``anthropic`` SDK's own pydantic types, pinned like the spec:
the generator refuses to run with another SDK version than ``ANTHROPIC_SDK_VERSION`` (the test extra
installs exactly that one), so regenerating is reproducible.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = Any
Schema = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
SOURCE_DIR = SCHEMAS_DIR / "source"
SPEC_FILE = "openai-openapi.json"
LICENSE_FILE = "LICENSE"

# Pinned provenance of schemas/source/openai-openapi.json.  Updating the spec means updating these
# three constants; the sha256 check makes the "copied unchanged from commit X" claim verifiable.
SPEC_REPOSITORY = "openai/openai-openapi"
SPEC_COMMIT = "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
SPEC_DATE = "2026-08-21"
SPEC_SHA256 = "bbfd19abcde0e7412da99378deb2a959ccdd3a812f97c9e35901921e8e973f9a"

DRAFT = "https://json-schema.org/draft/2020-12/schema"
COMPONENT_REF = re.compile(r"^#/components/schemas/([A-Za-z0-9_.\-]+)$")


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One generated schema: output name, OpenAPI component it starts from, optional derivation."""

    name: str
    component: str
    derivation: str = ""


TARGETS: tuple[Target, ...] = (
    Target("chat_completion", "CreateChatCompletionResponse"),
    Target("chat_completion_chunk", "CreateChatCompletionStreamResponse"),
    Target("completion", "CreateCompletionResponse"),
    Target(
        "completion_chunk",
        "CreateCompletionResponse",
        "copy of completion in which usage and choices[].finish_reason may be null: OpenAI's legacy "
        "completions stream sends objects of this shape (object 'text_completion') and the spec has "
        "no separate stream component",
    ),
    Target("error", "ErrorResponse"),
    Target("usage", "CompletionUsage"),
    Target("model_list", "ListModelsResponse"),
    Target("response", "Response"),
    Target("response_stream_event", "ResponseStreamEvent"),
)

CHAT_TARGETS = frozenset({"chat_completion", "chat_completion_chunk"})
COMPLETION_LIKE_TARGETS = frozenset(
    {"chat_completion", "chat_completion_chunk", "completion", "completion_chunk"}
)
CHUNK_TARGETS = frozenset({"chat_completion_chunk", "completion_chunk"})


# The second API family: Anthropic's Messages API, as the official `anthropic` SDK types it.
ANTHROPIC_SDK = "anthropic"
ANTHROPIC_SDK_VERSION = "2.12.0"


@dataclass(frozen=True)
class SdkTarget:
    """One schema generated from a type of the ``anthropic`` SDK (``anthropic.types.<type_name>``)."""

    name: str
    type_name: str
    derivation: str = ""


ANTHROPIC_TARGETS: tuple[SdkTarget, ...] = (
    SdkTarget("anthropic_message", "Message"),
    SdkTarget(
        "anthropic_message_stream_event",
        "RawMessageStreamEvent",
        "plus the `ping` and `error` events of Anthropic's streaming documentation, which the SDK "
        "handles without a type of its own (it skips `ping` and raises on `error`)",
    ),
    SdkTarget("anthropic_error", "ErrorResponse"),
    SdkTarget("anthropic_count_tokens", "MessageTokensCount"),
)
ANTHROPIC_NAMES = frozenset(target.name for target in ANTHROPIC_TARGETS)


# ---------------------------------------------------------------------------------------------
# OpenAPI schema -> JSON Schema 2020-12
# ---------------------------------------------------------------------------------------------

# Keywords whose value is a map of name -> subschema, a list of subschemas, or one subschema.
SCHEMA_MAP_KEYWORDS = frozenset({"properties", "patternProperties", "dependentSchemas"})
SCHEMA_LIST_KEYWORDS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
SCHEMA_ONE_KEYWORDS = frozenset(
    {
        "additionalProperties",
        "items",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)
# Validation keywords copied as they are.  ``format`` is kept: it is an annotation by default in
# 2020-12 (not asserted), small, and tells a reader what a string or integer means.
PLAIN_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "required",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "dependentRequired",
    }
)
# Dropped: documentation (kept out to keep files small; the spec copy has it all), OpenAPI-only
# keywords without JSON Schema meaning (``discriminator`` -- its mapping would also hold dangling
# refs), and the 2019-09 ``$recursiveAnchor`` (its ``$recursiveRef`` partner is rewritten instead).
DROPPED_KEYWORDS = frozenset(
    {
        "description",
        "title",
        "default",
        "example",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",
        "externalDocs",
        "xml",
        "$recursiveAnchor",
    }
)
CONSTRAINING_KEYWORDS = (
    PLAIN_KEYWORDS | SCHEMA_MAP_KEYWORDS | SCHEMA_LIST_KEYWORDS | SCHEMA_ONE_KEYWORDS | {"$ref"}
)


def def_ref(component: str) -> str:
    """Return the bundled ``$ref`` for a component (every output keeps components under $defs)."""
    return f"#/$defs/{component}"


def component_of_ref(ref: str) -> str:
    """Return the component name an OpenAPI ref points to; other ref forms are not expected."""
    match = COMPONENT_REF.match(ref)
    if match is None:
        raise ValueError(f"unsupported $ref {ref!r}: only #/components/schemas/X is handled")
    return match.group(1)


def convert(schema: JSON, component: str) -> JSON:
    """Convert one OpenAPI 3.1 schema (inside ``component``) to a bundled 2020-12 schema.

    Unknown keywords raise instead of passing through, so a new OpenAPI-ism in a future spec is
    noticed rather than silently ignored by validators.
    """
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise TypeError(f"{component}: schema expected, got {schema!r}")
    out: Schema = {}
    for key, value in schema.items():
        if key.startswith("x-") or key in DROPPED_KEYWORDS or key == "nullable":
            continue
        if key == "$ref":
            out["$ref"] = def_ref(component_of_ref(value))
        elif key == "$recursiveRef":
            out["$ref"] = recursive_ref_target(value, component)
        elif key in SCHEMA_MAP_KEYWORDS:
            out[key] = {name: convert(sub, component) for name, sub in value.items()}
        elif key in SCHEMA_LIST_KEYWORDS:
            out[key] = [convert(sub, component) for sub in value]
        elif key in SCHEMA_ONE_KEYWORDS:
            out[key] = convert(value, component)
        elif key in PLAIN_KEYWORDS:
            out[key] = copy.deepcopy(value)
        else:
            raise ValueError(f"{component}: unknown keyword {key!r}; classify it in this script")
    if schema.get("nullable") is True:
        out = make_nullable(out)
    return out


def recursive_ref_target(value: str, component: str) -> str:
    """Rewrite ``$recursiveRef: "#"`` (draft 2019-09) as a plain ref to the enclosing component.

    The spec's ``CompoundFilter`` uses it to nest filters; 2020-12 validators do not know the
    keyword and would accept anything there.  With ``$recursiveAnchor`` on the component itself
    and no dynamic extension in play, the recursion target is simply that component.
    """
    if value != "#":
        raise ValueError(f"{component}: unsupported $recursiveRef {value!r}")
    return def_ref(component)


def make_nullable(schema: Schema) -> Schema:
    """Express OpenAPI 3.0 ``nullable: true`` in JSON Schema, which ignores that keyword.

    A plain string ``type`` (without combinators or ``const``) gets ``"null"`` added to it; an
    ``enum`` beside it also gets ``null``, otherwise the enum would still reject null.  Anything
    else (``$ref``, ``anyOf``/``oneOf``/``allOf``, ``const``...) is wrapped as
    ``anyOf: [schema, {"type": "null"}]``.  A schema with no constraint already accepts null.
    """
    if not any(key in CONSTRAINING_KEYWORDS for key in schema):
        return schema
    combinators = {"$ref", "anyOf", "oneOf", "allOf", "not", "const"}
    if isinstance(schema.get("type"), str) and not combinators & schema.keys():
        out = dict(schema)
        out["type"] = [schema["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    if "null" in _types_of(schema):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _types_of(schema: Schema) -> list[str]:
    """Return the schema's ``type`` as a list (empty when absent)."""
    value = schema.get("type")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def iter_refs(schema: JSON) -> Iterator[str]:
    """Yield every bundled ``$ref`` target component name in a converted schema."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                yield value[len("#/$defs/"):]
            elif key in ("enum", "const", "required"):
                continue
            else:
                yield from iter_refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from iter_refs(item)


def bundle(components: dict[str, JSON], root: str) -> Schema:
    """Build a self-contained schema: ``root`` at the top, its transitive refs under ``$defs``.

    The root component is also copied into ``$defs`` when something inside refers back to it, so
    every ref has the single form ``#/$defs/X``.
    """
    converted: dict[str, JSON] = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in converted:
            continue
        if name not in components:
            raise KeyError(f"component {name!r} not found in the spec")
        converted[name] = convert(components[name], name)
        pending.extend(iter_refs(converted[name]))
    referenced = {ref for schema in converted.values() for ref in iter_refs(schema)}
    out: Schema = {"$schema": DRAFT, **copy.deepcopy(converted[root])}
    defs = {name: schema for name, schema in converted.items() if name != root or root in referenced}
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    return out


# ---------------------------------------------------------------------------------------------
# Navigation helpers for derivations and relaxations
# ---------------------------------------------------------------------------------------------


def resolve(doc: Schema, schema: Schema) -> Schema:
    """Follow a bundled ``$ref`` (possibly several) inside ``doc``; return the referenced schema."""
    while "$ref" in schema and len(schema) == 1:
        schema = doc["$defs"][schema["$ref"][len("#/$defs/"):]]
    return schema


def prop(doc: Schema, schema: Schema, name: str) -> Schema | None:
    """Return property ``name`` of an object schema (refs resolved), or None when not declared."""
    holder = resolve(doc, schema)
    sub = holder.get("properties", {}).get(name)
    return None if sub is None else resolve(doc, sub)


def choice_schema(doc: Schema) -> Schema | None:
    """Return the ``choices[]`` item schema of a completion-like document."""
    choices = prop(doc, doc, "choices")
    return None if choices is None else resolve(doc, choices["items"])


def drop_required(schema: Schema, *names: str) -> None:
    """Remove ``names`` from ``schema['required']`` (dropping an emptied list)."""
    remaining = [name for name in schema.get("required", []) if name not in names]
    if remaining:
        schema["required"] = remaining
    else:
        schema.pop("required", None)


def non_null(schema: Schema) -> Schema:
    """Return ``schema`` without its null alternative (inverse of ``make_nullable``)."""
    if "anyOf" in schema and len(schema) == 1:
        rest = [branch for branch in schema["anyOf"] if branch != {"type": "null"}]
        return rest[0] if len(rest) == 1 else {"anyOf": rest}
    types = [t for t in _types_of(schema) if t != "null"]
    out = dict(schema)
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    if "enum" in out:
        out["enum"] = [value for value in out["enum"] if value is not None]
    return out


def nullable(schema: Schema) -> Schema:
    """Return ``schema`` accepting null as well (idempotent)."""
    return make_nullable(non_null(schema))


def walk(schema: JSON) -> Iterator[Schema]:
    """Yield every (sub)schema object in a bundled document, including ``$defs`` entries."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key, value in schema.items():
        if key in SCHEMA_MAP_KEYWORDS or key == "$defs":
            for sub in value.values():
                yield from walk(sub)
        elif key in SCHEMA_LIST_KEYWORDS:
            for sub in value:
                yield from walk(sub)
        elif key in SCHEMA_ONE_KEYWORDS:
            yield from walk(value)


# ---------------------------------------------------------------------------------------------
# Anthropic SDK types -> JSON Schema 2020-12
# ---------------------------------------------------------------------------------------------


def anthropic_types() -> Any:
    """The pinned ``anthropic.types`` module; any other installed version is refused, so the
    committed files always say which SDK release they describe."""
    try:
        import anthropic
        import anthropic.types
    except ImportError:
        raise SystemExit(f"the Anthropic schemas need `pip install {ANTHROPIC_SDK}=={ANTHROPIC_SDK_VERSION}`") from None
    if anthropic.__version__ != ANTHROPIC_SDK_VERSION:
        raise SystemExit(
            f"installed {ANTHROPIC_SDK} {anthropic.__version__} != pinned {ANTHROPIC_SDK_VERSION}; install the "
            "pinned one, or update ANTHROPIC_SDK_VERSION (and the test extra's pin) to move the schemas on"
        )
    return anthropic.types


def sdk_schema(types: Any, target: SdkTarget) -> Schema:
    """The JSON Schema pydantic derives from one SDK type (validation mode: what a response may
    be), with documentation keywords dropped as for the OpenAI targets."""
    from pydantic import TypeAdapter

    doc: Schema = TypeAdapter(getattr(types, target.type_name)).json_schema(mode="validation")
    for schema in walk(doc):
        for keyword in DROPPED_KEYWORDS & schema.keys():
            del schema[keyword]
    derive = SDK_DERIVATIONS.get(target.name)
    if derive is not None:
        doc = derive(types, doc)
    return {"$schema": DRAFT, **doc}


def derive_anthropic_stream_event(types: Any, doc: Schema) -> Schema:
    """Add the two events the SDK's ``RawMessageStreamEvent`` union leaves out.

    Anthropic's streaming documentation: "Event streams may also include any number of ``ping``
    events" and "we may occasionally send errors in the event stream" as ``event: error`` with the
    error envelope as data.  The SDK's stream reader skips the first and raises on the second, so
    both are part of a valid stream.
    """
    error = sdk_schema(types, SdkTarget("error", "ErrorResponse"))
    defs = {**doc.pop("$defs", {}), **error.pop("$defs", {})}
    error.pop("$schema")
    defs["PingEvent"] = {"type": "object", "properties": {"type": {"const": "ping", "type": "string"}},
                         "required": ["type"], "additionalProperties": True}
    defs["ErrorResponse"] = error
    return {"anyOf": [*doc["anyOf"], {"$ref": "#/$defs/PingEvent"}, {"$ref": "#/$defs/ErrorResponse"}],
            "$defs": dict(sorted(defs.items()))}


SDK_DERIVATIONS: dict[str, Callable[[Any, Schema], Schema]] = {
    "anthropic_message_stream_event": derive_anthropic_stream_event,
}


# ---------------------------------------------------------------------------------------------
# Derivations (strict set)
# ---------------------------------------------------------------------------------------------


def derive_completion_chunk(doc: Schema) -> Schema:
    """Make the legacy completions stream event from ``CreateCompletionResponse``.

    OpenAI streams /v1/completions as objects of the non-stream shape (object "text_completion");
    until the last event ``finish_reason`` is null, and ``usage`` is null or absent except on the
    final event when ``stream_options.include_usage`` is set.
    """
    out = copy.deepcopy(doc)
    out["properties"]["usage"] = nullable(out["properties"]["usage"])
    choice = choice_schema(out)
    assert choice is not None
    choice["properties"]["finish_reason"] = nullable(choice["properties"]["finish_reason"])
    return out


DERIVATIONS: dict[str, Callable[[Schema], Schema]] = {"completion_chunk": derive_completion_chunk}


# ---------------------------------------------------------------------------------------------
# Compatible relaxations: each one is a documented Fireworks / vLLM / Groq difference
# ---------------------------------------------------------------------------------------------
#
# A relaxation takes (target name, bundled document) and mutates the document.  Relaxations never
# tighten anything; the strict schema stays the reference for "OpenAI as specified".


def relax_choice_logprobs_required(name: str, doc: Schema) -> None:
    """``choices[].logprobs`` may be absent.

    Fireworks' chat/completion response schema has no required ``logprobs`` on a choice and omits
    the key unless logprobs were requested (Fireworks chat completion API reference and Python SDK
    ``Choice`` type); OpenAI's own o3-mini responses omit it too
    (tests/data/real_traffic/openai-chat-nonstream-o3-mini-stop.json).
    """
    choice = choice_schema(doc) if name in COMPLETION_LIKE_TARGETS else None
    if choice is not None:
        drop_required(choice, "logprobs")


def relax_message_refusal_required(name: str, doc: Schema) -> None:
    """Chat ``message.refusal`` may be absent.

    Fireworks' ``ChatMessage`` response type has no ``refusal`` field (Fireworks chat completion API
    reference; SDK ``shared/chat_message.py``); Groq omits it as well
    (real-traffic groq/pai-chat-stop-Paris-llama3-8b.yaml).
    """
    if name != "chat_completion":
        return
    choice = choice_schema(doc)
    assert choice is not None
    drop_required(resolve(doc, choice["properties"]["message"]), "refusal")


def _usage_schemas(doc: Schema) -> Iterator[Schema]:
    """Yield the ``CompletionUsage`` schema of a document (as $defs entry or as the root)."""
    if "CompletionUsage" in doc.get("$defs", {}):
        yield doc["$defs"]["CompletionUsage"]
    elif "prompt_tokens" in doc.get("properties", {}):
        yield doc


def relax_usage_completion_tokens(name: str, doc: Schema) -> None:
    """``usage.completion_tokens`` may be absent or null.

    Fireworks' ``UsageInfo`` declares ``completion_tokens: Optional[int]`` (SDK
    ``shared/usage_info.py``), and so does vLLM's ``UsageInfo`` (``completion_tokens: Optional[int]
    = 0``), e.g. for prompt-only (echo / max_tokens=0) requests.
    """
    for usage in _usage_schemas(doc):
        drop_required(usage, "completion_tokens")
        usage["properties"]["completion_tokens"] = nullable(usage["properties"]["completion_tokens"])


def relax_usage_token_details(name: str, doc: Schema) -> None:
    """``usage.*_tokens_details`` may be absent or null.

    OpenAI's spec already leaves them optional; Fireworks documents only
    ``prompt_tokens_details.cached_tokens`` (int or null), and vLLM's ``UsageInfo`` declares
    ``prompt_tokens_details: Optional[PromptTokenUsageInfo] = None``, serialised as ``null``.
    """
    for usage in _usage_schemas(doc):
        for key in ("prompt_tokens_details", "completion_tokens_details"):
            drop_required(usage, key)
            details = dict(usage["properties"][key])
            fields = details.get("properties", {})
            details["properties"] = {field: nullable(sub) for field, sub in fields.items()}
            usage["properties"][key] = nullable(details)


def relax_fingerprint_and_service_tier(name: str, doc: Schema) -> None:
    """``system_fingerprint`` and ``service_tier`` are never required; both may be null or any string.

    Fireworks' response schemas have neither field (Fireworks chat completion API reference).
    OpenAI itself streams ``"system_fingerprint": null`` although the spec types it as a string
    (real-traffic openai/dd-litellm-chat-stream-n2-include_usage.yaml and
    openai/oll-chat-stream-no-stream_options-gpt-4.yaml).  Groq reports its own tier names
    (``on_demand``, ``flex``), outside OpenAI's ``service_tier`` enum.
    """
    for schema in list(walk(doc)):
        props = schema.get("properties")
        if not isinstance(props, dict):
            continue
        for key in ("system_fingerprint", "service_tier"):
            if key in props:
                drop_required(schema, key)
                props[key] = {"type": ["string", "null"]}


LEGACY_LOGPROBS_DEF = "LegacyCompletionLogprobs"


def legacy_logprobs_schema() -> Schema:
    """Return the completions-style logprobs object as Fireworks sends it on chat choices.

    Fireworks' ``LogProbs`` type: ``tokens``, ``token_logprobs``, ``top_logprobs`` (list of
    token -> logprob maps), ``text_offset`` and ``token_ids``; entries may be null (e.g. the first
    prompt token when echoing).
    """
    def nullable_array(items: Schema) -> Schema:
        """Fireworks' SDK types these lists as Optional."""
        return {"type": ["array", "null"], "items": items}

    return {
        "type": "object",
        "properties": {
            "tokens": nullable_array({"type": "string"}),
            "token_logprobs": nullable_array({"type": ["number", "null"]}),
            "top_logprobs": nullable_array(
                {"type": ["object", "null"], "additionalProperties": {"type": "number"}}
            ),
            "text_offset": nullable_array({"type": "integer"}),
            "token_ids": nullable_array({"type": "integer"}),
        },
    }


def allow_legacy_logprobs_on_chat(name: str, doc: Schema) -> None:
    """Chat ``choices[].logprobs`` may be the legacy completions-style object.

    Fireworks accepts ``logprobs`` as an integer on chat requests and then answers with
    ``{tokens, token_logprobs, top_logprobs, text_offset, token_ids}`` instead of
    ``{content, refusal}`` (Fireworks chat completion API reference; SDK ``shared/log_probs.py``).
    """
    if name not in CHAT_TARGETS:
        return
    choice = choice_schema(doc)
    assert choice is not None
    current = non_null(choice["properties"]["logprobs"])
    branches = current["anyOf"] if list(current) == ["anyOf"] else [current]
    doc["$defs"][LEGACY_LOGPROBS_DEF] = legacy_logprobs_schema()
    choice["properties"]["logprobs"] = {
        "anyOf": [*branches, {"$ref": def_ref(LEGACY_LOGPROBS_DEF)}, {"type": "null"}]
    }


def relax_chat_logprobs_refusal(name: str, doc: Schema) -> None:
    """Chat ``logprobs.refusal`` may be absent and ``logprobs.content`` may be absent.

    Fireworks' ``NewLogProbs`` (answer to ``logprobs: true``) has only ``content`` (SDK
    ``shared/new_log_probs.py``); vLLM's ``ChatCompletionLogProbs`` likewise has only
    ``content: Optional[list] = None``.
    """
    if name not in CHAT_TARGETS:
        return
    choice = choice_schema(doc)
    assert choice is not None
    for branch in walk(choice["properties"]["logprobs"]):
        if "refusal" in branch.get("properties", {}) and "content" in branch["properties"]:
            drop_required(branch, "refusal", "content")


def allow_perf_metrics(name: str, doc: Schema) -> None:
    """Top-level ``perf_metrics`` (object or null) is allowed on completions and chunks.

    Fireworks adds it with ``perf_metrics_in_response: true``: on the non-stream body, and on the
    final chunk of a stream (Fireworks chat completion API reference; "performance metrics for
    streaming" FAQ).
    """
    if name in COMPLETION_LIKE_TARGETS:
        doc["properties"]["perf_metrics"] = {"type": ["object", "null"]}


def allow_raw_output(name: str, doc: Schema) -> None:
    """``choices[].raw_output`` (object or null) is allowed.

    Fireworks returns it on every choice with ``raw_output: true`` (``prompt_fragments``,
    ``prompt_token_ids``, ``completion``...; SDK ``shared/raw_output.py``).
    """
    choice = choice_schema(doc) if name in COMPLETION_LIKE_TARGETS else None
    if choice is not None:
        choice["properties"]["raw_output"] = {"type": ["object", "null"]}


def allow_usage_on_chunks(name: str, doc: Schema) -> None:
    """Chunks may carry top-level ``usage`` as an object or null, with or without stream_options.

    Fireworks sends ``"usage": null`` on every chunk and the usage object on the finish chunk even
    without ``stream_options`` (real-traffic fireworks/hfjs-direct-deepseek-r1-stream.tape.json).
    """
    if name in CHUNK_TARGETS:
        doc["properties"]["usage"] = nullable(doc["properties"]["usage"])


def relax_finish_reason(name: str, doc: Schema) -> None:
    """``choices[].finish_reason`` may be any string or null.

    Fireworks documents a free string for chat (default null) and adds ``error`` for completions;
    vLLM and others add values such as ``abort`` (Fireworks chat completion API reference).
    """
    choice = choice_schema(doc) if name in COMPLETION_LIKE_TARGETS else None
    if choice is not None:
        choice["properties"]["finish_reason"] = {"type": ["string", "null"]}


def relax_error_param_code(name: str, doc: Schema) -> None:
    """Error ``param`` and ``code`` may be absent; ``code`` may be a string, an integer or null.

    Groq omits ``param`` (real-traffic groq/pai-chat-404-model_not_found.yaml); vLLM's
    ``ErrorResponse`` carries an integer ``code`` (the HTTP status).
    """
    if name != "error":
        return
    error = resolve(doc, doc["properties"]["error"])
    drop_required(error, "param", "code")
    error["properties"]["code"] = {"type": ["string", "integer", "null"]}


def drop_additional_properties_false(name: str, doc: Schema) -> None:
    """No ``additionalProperties: false`` anywhere: providers add fields (extensions are allowed).

    Fireworks adds ``perf_metrics``, ``raw_output``, ``token_ids``; vLLM adds ``stop_reason``; Groq
    adds ``x_groq``, ``usage_breakdown`` and timing fields in ``usage``
    (real-traffic groq/pai-chat-stop-Paris-llama3-8b.yaml, vllm/oll-chat-stream-opt-125m.yaml).
    """
    for schema in list(walk(doc)):
        if schema.get("additionalProperties") is False:
            del schema["additionalProperties"]


def oneof_to_anyof(name: str, doc: Schema) -> None:
    """``oneOf`` becomes ``anyOf`` in the compatible set.

    The spec's ``oneOf`` lists are OpenAPI discriminated unions; their exclusivity in JSON Schema
    leans on ``additionalProperties: false`` and exact enums, both relaxed above, so an extended
    object could match two variants and be rejected for it.  "Matches a known variant" is what a
    client relies on.
    """
    for schema in list(walk(doc)):
        if "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")


def relax_anthropic_message_usage(name: str, doc: Schema) -> None:
    """A Messages response and its ``message_delta`` event may leave ``usage`` out.

    An older revision of Fireworks' Anthropic compatibility page says usage is "Not included in the
    response Message object" (the current one: "Included in both non-streaming and streaming
    responses"); whether usage is there is the catalog's question, not a schema violation.
    """
    if name not in ANTHROPIC_NAMES:
        return
    defs = doc.get("$defs", {})
    holders = [defs[def_name] for def_name in ("Message", "RawMessageDeltaEvent") if def_name in defs]
    for holder in holders + ([doc] if name == "anthropic_message" else []):
        drop_required(holder, "usage")


def relax_anthropic_error_type(name: str, doc: Schema) -> None:
    """An Anthropic error body may omit its top-level ``"type": "error"``.

    llama.cpp's ``/v1/messages`` answers ``{"error": {"code": 400, "message": ..., "type":
    "invalid_request_error"}}`` (tests/data/real_traffic/llama-cpp-messages-error-400.json); the SDK
    reads ``error.message`` and ``error.type`` only.
    """
    holder = doc if name == "anthropic_error" else doc.get("$defs", {}).get("ErrorResponse")
    if name in ANTHROPIC_NAMES and holder is not None:
        drop_required(holder, "type")


Relaxation = Callable[[str, Schema], None]

COMPATIBLE_RELAXATIONS: tuple[Relaxation, ...] = (
    relax_choice_logprobs_required,
    relax_message_refusal_required,
    relax_usage_completion_tokens,
    relax_usage_token_details,
    relax_fingerprint_and_service_tier,
    allow_legacy_logprobs_on_chat,
    relax_chat_logprobs_refusal,
    allow_usage_on_chunks,
    allow_perf_metrics,
    allow_raw_output,
    relax_finish_reason,
    relax_error_param_code,
    drop_additional_properties_false,
    oneof_to_anyof,
    relax_anthropic_message_usage,
    relax_anthropic_error_type,
)


def make_compatible(name: str, strict: Schema) -> Schema:
    """Apply every compatible relaxation to a copy of the strict document."""
    doc = copy.deepcopy(strict)
    for relaxation in COMPATIBLE_RELAXATIONS:
        relaxation(name, doc)
    prune_defs(doc)
    return doc


def prune_defs(doc: Schema) -> None:
    """Drop ``$defs`` entries no longer reachable from the root (relaxations replace some refs)."""
    defs = doc.get("$defs", {})
    root = {key: value for key, value in doc.items() if key != "$defs"}
    reachable: set[str] = set()
    pending = list(iter_refs(root))
    while pending:
        name = pending.pop()
        if name not in reachable:
            reachable.add(name)
            pending.extend(iter_refs(defs[name]))
    if reachable:
        doc["$defs"] = {name: defs[name] for name in sorted(reachable)}
    else:
        doc.pop("$defs", None)


# ---------------------------------------------------------------------------------------------
# Output assembly
# ---------------------------------------------------------------------------------------------


def dump(obj: JSON) -> bytes:
    """Serialise deterministically (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def source_of(target: Target | SdkTarget) -> str:
    """Where a target's schema comes from, pinned: a spec component or an SDK type."""
    if isinstance(target, SdkTarget):
        return f"{ANTHROPIC_SDK}=={ANTHROPIC_SDK_VERSION} type anthropic.types.{target.type_name}"
    return f"{SPEC_REPOSITORY}@{SPEC_COMMIT} component {target.component}"


def with_comment(doc: Schema, target: Target | SdkTarget, flavour: str) -> Schema:
    """Add a ``$comment`` saying where the schema came from and that it is generated."""
    note = f"; {target.derivation}" if target.derivation else ""
    return {
        "$comment": f"GENERATED by tools/generate_schemas.py ({flavour}) from {source_of(target)}{note}. "
                    "Do not edit by hand.",
        **doc,
    }


def first_line(text: str | None) -> str:
    """Return the first docstring paragraph joined into one line."""
    paragraph = (text or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def index_document(spec_sha256: str) -> JSON:
    """Describe the generated set: names, sources, the spec and SDK pins and the relaxation list."""
    return {
        "generator": "tools/generate_schemas.py",
        "draft": DRAFT,
        "spec": {
            "repository": SPEC_REPOSITORY,
            "commit": SPEC_COMMIT,
            "date": SPEC_DATE,
            "path": f"schemas/source/{SPEC_FILE}",
            "sha256": spec_sha256,
        },
        "anthropic_sdk": {"package": ANTHROPIC_SDK, "version": ANTHROPIC_SDK_VERSION},
        "schemas": [
            {
                "name": target.name,
                "source": source_of(target),
                "derivation": target.derivation or None,
                "strict": f"strict/{target.name}.schema.json",
                "compatible": f"compatible/{target.name}.schema.json",
            }
            for target in (*TARGETS, *ANTHROPIC_TARGETS)
        ],
        "compatible_relaxations": [
            {"name": relaxation.__name__, "why": first_line(relaxation.__doc__)}
            for relaxation in COMPATIBLE_RELAXATIONS
        ],
    }


def provenance_markdown(spec_sha256: str) -> str:
    """Return ``schemas/source/PROVENANCE.md`` (generated so it cannot drift from the pin)."""
    return f"""# Provenance of `openai-openapi.json`

<!-- GENERATED by tools/generate_schemas.py; do not edit by hand. -->

- Origin: https://github.com/{SPEC_REPOSITORY}, file `openapi.json`
- Commit: `{SPEC_COMMIT}` ({SPEC_DATE})
- Licence: MIT, copyright OpenAI; the licence text is in `LICENSE` beside this file.
- Copied unchanged (byte for byte) as `{SPEC_FILE}`; sha256 `{spec_sha256}`
  (the generator refuses to run if the file's hash differs).
- Used by `tools/generate_schemas.py` to produce `schemas/strict/`, `schemas/compatible/` and
  `schemas/index.json`.
"""


def load_spec(source_dir: Path) -> tuple[JSON, str]:
    """Load the pinned spec and check its hash, so provenance claims stay true."""
    raw = (source_dir / SPEC_FILE).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SPEC_SHA256:
        raise SystemExit(
            f"{source_dir / SPEC_FILE}: sha256 {digest} != pinned {SPEC_SHA256}; "
            "update SPEC_COMMIT / SPEC_DATE / SPEC_SHA256 when you update the spec"
        )
    return json.loads(raw), digest


def build_outputs(spec: JSON, spec_sha256: str) -> dict[str, bytes]:
    """Return every generated file as ``{path relative to schemas/: bytes}``."""
    components = spec["components"]["schemas"]
    outputs: dict[str, bytes] = {}
    for target in TARGETS:
        strict = bundle(components, target.component)
        derive = DERIVATIONS.get(target.name)
        if derive is not None:
            strict = derive(strict)
        compatible = make_compatible(target.name, strict)
        outputs[f"strict/{target.name}.schema.json"] = dump(with_comment(strict, target, "strict"))
        outputs[f"compatible/{target.name}.schema.json"] = dump(with_comment(compatible, target, "compatible"))
    types = anthropic_types()
    for sdk_target in ANTHROPIC_TARGETS:
        strict = sdk_schema(types, sdk_target)
        compatible = make_compatible(sdk_target.name, strict)
        outputs[f"strict/{sdk_target.name}.schema.json"] = dump(with_comment(strict, sdk_target, "strict"))
        outputs[f"compatible/{sdk_target.name}.schema.json"] = dump(
            with_comment(compatible, sdk_target, "compatible"))
    outputs["index.json"] = dump(index_document(spec_sha256))
    outputs["source/PROVENANCE.md"] = provenance_markdown(spec_sha256).encode("utf-8")
    return outputs


def stale_files(out_dir: Path, outputs: dict[str, bytes]) -> list[str]:
    """Return schema files present in ``strict/`` or ``compatible/`` that the generator no longer makes."""
    stale = []
    for sub in ("strict", "compatible"):
        for path in sorted((out_dir / sub).glob("*.json")):
            rel = path.relative_to(out_dir).as_posix()
            if rel not in outputs:
                stale.append(rel)
    return stale


def differing_files(out_dir: Path, outputs: dict[str, bytes]) -> list[str]:
    """Return the outputs whose on-disk content differs (or that are missing), plus stale files."""
    changed = [
        rel for rel, data in outputs.items()
        if not (out_dir / rel).is_file() or (out_dir / rel).read_bytes() != data
    ]
    return changed + stale_files(out_dir, outputs)


def write_outputs(out_dir: Path, outputs: dict[str, bytes]) -> None:
    """Write all outputs and delete stale generated schema files."""
    for rel in stale_files(out_dir, outputs):
        (out_dir / rel).unlink()
    for rel, data in outputs.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def import_spec(from_dir: Path) -> None:
    """Copy ``openapi.json`` and ``LICENSE`` unchanged into ``schemas/source/``."""
    SOURCE_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(from_dir / "openapi.json", SOURCE_DIR / SPEC_FILE)
    shutil.copyfile(from_dir / "LICENSE", SOURCE_DIR / LICENSE_FILE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing files that differ from what would be written")
    parser.add_argument("--out", type=Path, default=SCHEMAS_DIR,
                        help="directory playing the role of schemas/ (default: the repo's schemas/)")
    parser.add_argument("--import-spec", type=Path, metavar="DIR",
                        help="first copy DIR/openapi.json and DIR/LICENSE into schemas/source/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate (or check) the schema files; return the process exit code."""
    args = parse_args(argv)
    if args.import_spec is not None:
        import_spec(args.import_spec)
    spec, digest = load_spec(SOURCE_DIR)
    outputs = build_outputs(spec, digest)
    out_dir: Path = args.out.resolve()
    if args.check:
        differing = differing_files(out_dir, outputs)
        for rel in differing:
            print(f"differs: {out_dir / rel}")
        return 1 if differing else 0
    write_outputs(out_dir, outputs)
    print(f"wrote {len(outputs)} files under {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
