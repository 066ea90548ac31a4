"""How the reference server reads the request shapes of today's SDKs: the `developer` role,
content parts, the two length caps, OpenAI's newer optional fields, usage details, how a
refused streaming request is answered, and where reasoning travels. One function per catalog entry, each showing the
behaviour the server's config names for it (config.py), so every check can be seen to fail.

The reference model reads text only: an image part is refused as OpenAI refuses it for a model
that takes no images, unless a deviation drops it or breaks on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain, repeat
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from conformance.reference_server import model as lm
from conformance.reference_server.config import ServerConfig
from conformance.reference_server.errors import ApiError, bad_param
from conformance.reference_server.validation import expect, invalid_value


def read_messages(config: ServerConfig, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the model reads them: `developer` as `system`, content parts as text."""
    read = []
    for position, message in enumerate(messages):
        path = f"messages[{position}]"
        if message.get("role") == "developer":
            if config.is_("developer-role", "rejected"):
                raise invalid_value(f"{path}.role", "expected one of system, user, assistant, but got 'developer'.")
            if config.is_("developer-role", "dropped"):
                continue
            message = {**message, "role": "system"}
        if "reasoning_content" in message and config.is_("reasoning-field", "input-rejected"):
            raise invalid_value(f"{path}.reasoning_content", "unexpected property.")
        if isinstance(message.get("content"), list):
            message = {**message, "content": read_parts(config, message["content"], f"{path}.content")}
        read.append(message)
    return read


def read_parts(config: ServerConfig, parts: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The text parts of a content array; what happens to any other part is the entry's behaviour."""
    if config.is_("content-parts", "rejected"):
        raise invalid_value(path, "expected a string, but got an array of content parts.")
    texts = []
    for position, part in enumerate(parts):
        kind = part.get("type")
        if kind == "text":
            texts.append(part)
        elif config.is_("content-parts", "other"):
            raise ApiError(500, f"The server failed to process a content part of type {kind!r}.", "server_error")
        elif not config.is_("content-parts", "image-dropped"):
            raise invalid_value(f"{path}[{position}].type", f"{kind!r} parts are not supported by this model, "
                                "which reads text only.")
    return texts


def length_cap(config: ServerConfig, body: dict[str, Any]) -> int | None:
    """The completion cap the request asks for: `max_tokens`, else its successor
    `max_completion_tokens` (Fireworks: an alias that cannot be combined with it)."""
    if "max_completion_tokens" in body and "max_tokens" in body and config.is_("max-completion-tokens", "fireworks"):
        raise bad_param("max_completion_tokens", "max_completion_tokens is an alias for max_tokens: "
                        "they cannot be specified together.")
    if config.is_("max-completion-tokens", "ignored"):
        return body.get("max_tokens")
    return body.get("max_tokens", body.get("max_completion_tokens"))


#: OpenAI's newest optional fields, which a server whose request schema predates them refuses.
NEWER_FIELDS = frozenset({"store", "safety_identifier", "prompt_cache_key"})


#: Fireworks' sampling parameters, known while the server acts as Fireworks (or accepts and ignores them).
SAMPLING_EXTENSIONS = frozenset({"top_k", "min_p", "typical_p", "repetition_penalty", "ignore_eos", "echo_last"})


def unknown_fields(config: ServerConfig, body: dict[str, Any], known: set[str]) -> list[str]:
    """The request's fields the server refuses as unrecognised: none when it is lenient."""
    if config.is_("documented-optional-fields", "lenient"):
        return []
    if not config.is_("fireworks-sampling-extensions", "openai"):
        known = known | SAMPLING_EXTENSIONS
    if config.is_("documented-optional-fields", "rejects-documented"):
        known = known - NEWER_FIELDS
    return [field for field in body if field not in known]


def usage_details(config: ServerConfig, prompt_tokens: int) -> dict[str, Any]:
    """The breakdowns a usage object carries besides its three counts (nothing is ever cached)."""
    behaviour = config.acts("usage-details")
    if behaviour == "absent":
        return {}
    cached = prompt_tokens + 1 if behaviour == "other" else 0  # deviation: more cached than sent
    details: dict[str, Any] = {"prompt_tokens_details": {"cached_tokens": cached}}
    if behaviour != "fireworks":
        details["completion_tokens_details"] = {"reasoning_tokens": 0, "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}
    return details


#: How a deviating server wraps a refusal of a streaming request in a 200 event stream.
ERROR_FRAMES = {"in-band": b"data: %s\n\n", "event-error": b"event: error\ndata: %s\n\n", "other": b""}


async def error_response(config: ServerConfig, request: Request, error: ApiError) -> Response:
    """A refusal: its status and the envelope; as a deviation, for a request that asked for a stream,
    a 200 stream carrying the envelope in band, in an `event: error` frame, or nothing at all."""
    frame = ERROR_FRAMES.get(config.acts("stream-error-frame"))
    if frame is None or error.status >= 500 or not await asks_for_stream(request):
        return error.response(config.faults)
    envelope = json.dumps(error.envelope()).encode()
    return Response(frame.replace(b"%s", envelope), media_type="text/event-stream")


async def asks_for_stream(request: Request) -> bool:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True


def ignoring_eos(config: ServerConfig, body: dict[str, Any], tokens: Iterator[str]) -> Iterator[str]:
    """Fireworks' `ignore_eos`: the model goes on past its natural end (here, with spaces)."""
    if body.get("ignore_eos") and config.is_("fireworks-sampling-extensions", "fireworks"):
        return chain(tokens, repeat(" "))
    return tokens


def check_reasoning_effort(config: ServerConfig, body: dict[str, Any]) -> None:
    """`reasoning_effort`: a string for OpenAI, an integer too for Fireworks; refused whole by a
    server whose model does not reason (the `unsupported` deviation)."""
    if "reasoning_effort" not in body:
        return
    if config.is_("reasoning-effort-values", "unsupported"):
        raise bad_param("reasoning_effort", "reasoning_effort is not supported with this model.")
    if not config.is_("reasoning-effort-values", "fireworks"):
        expect(body["reasoning_effort"], "reasoning_effort", "string", "null")


#: The reference model "reasons" only when asked to think step by step: every other answer, and
#: every stream, stays as a model that does not reason would give it.
REASONING_TRIGGER = "step by step"
REASONING = "2 plus 3 is 5."


def show_reasoning(config: ServerConfig, body: dict[str, Any], choices: list[dict[str, Any]],
                   usage: dict[str, Any]) -> None:
    """Add the reasoning to a non-streaming chat answer where the entry's behaviour puts it, and
    count it in `usage` (its tokens are completion tokens, as on every reasoning model)."""
    users = [lm.message_text(m) for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users or REASONING_TRIGGER not in users[-1].lower():
        return
    tokens = lm.count_tokens(REASONING) * len(choices)
    usage["completion_tokens"] += tokens
    usage["total_tokens"] += tokens
    usage.setdefault("completion_tokens_details", {})["reasoning_tokens"] = tokens
    field = {"fireworks": "reasoning_content", "input-rejected": "reasoning_content", "reasoning": "reasoning"}
    behaviour = config.acts("reasoning-field")
    for choice in choices:
        message = choice["message"]
        if behaviour in field:
            message[field[behaviour]] = REASONING
        elif behaviour == "think-tags":
            message["content"] = f"<think>{REASONING}</think>{message.get('content') or ''}"
