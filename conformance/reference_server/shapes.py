"""How the reference server reads the request shapes of today's SDKs: the `developer` role,
content parts, the two length caps, OpenAI's newer optional fields, usage details, how a
refused streaming request is answered, and where reasoning travels. One function per catalog entry, each showing the
behaviour the server's config names for it (config.py), so every check can be seen to fail.

Prompts are cached per session (`x-session-affinity`), so `prompt_cache_max_len` has a cache to
turn off. The reference model reads text only: an image part is refused as OpenAI refuses it for a model
that takes no images, unless a deviation drops it or breaks on it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
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
    if not config.is_("prompt-cache-max-len", "openai"):
        known = known | {"prompt_cache_max_len"}
    if config.is_("documented-optional-fields", "rejects-documented"):
        known = known - NEWER_FIELDS
    return [field for field in body if field not in known]


#: The header Fireworks documents for pinning a session to one replica, where its prompts stay cached.
SESSION_HEADER = "x-session-affinity"


class PromptCache:
    """The prompts each session has sent (the last PROMPTS of them): a prompt sent again in the same
    session is cached whole. Requests without a session land anywhere and never hit the cache, so
    every other check's usage stays the same whatever ran before it."""

    PROMPTS = 256

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def cached_tokens(self, config: ServerConfig, session: str | None, prompt: str, prompt_tokens: int,
                      body: dict[str, Any]) -> int:
        """How many of the prompt's tokens came from the cache; `prompt_cache_max_len` caps them
        where the server honours it (the `fireworks` behaviour of its entry)."""
        if session is None:
            return 0
        if "prompt_cache_max_len" in body:
            expect(body["prompt_cache_max_len"], "prompt_cache_max_len", "integer")
        key = (session, prompt)
        hit = key in self._seen
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.PROMPTS:
            self._seen.popitem(last=False)
        if not hit:
            return 0
        if "prompt_cache_max_len" in body and config.is_("prompt-cache-max-len", "fireworks"):
            return max(0, min(prompt_tokens, body["prompt_cache_max_len"]))
        return prompt_tokens


def usage_details(config: ServerConfig, prompt_tokens: int, cached_tokens: int) -> dict[str, Any]:
    """The breakdowns a usage object carries besides its three counts."""
    behaviour = config.acts("usage-details")
    if behaviour == "absent":
        return {}
    cached = prompt_tokens + 1 if behaviour == "other" else cached_tokens  # deviation: more cached than sent
    details: dict[str, Any] = {"prompt_tokens_details": {"cached_tokens": cached}}
    if behaviour != "fireworks":
        details["completion_tokens_details"] = {"reasoning_tokens": 0, "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}
    return details


#: How a deviating server wraps a refusal of a streaming request in a 200 event stream: the frame,
#: and whether its data is the envelope (`{"error": {...}}`) or the bare error object, which the
#: openai SDK does not recognise as an error.
ERROR_FRAMES = {"in-band": (b"data: %s\n\n", True), "event-error": (b"event: error\ndata: %s\n\n", True),
                "unraised": (b"event: error\ndata: %s\n\n", False), "other": (b"", True)}


async def error_response(config: ServerConfig, request: Request, error: ApiError) -> Response:
    """A refusal: its status and the envelope; as a deviation, for a request that asked for a stream,
    a 200 stream carrying the envelope in band, in an `event: error` frame (with or without the
    envelope around the error), or nothing at all."""
    frame = ERROR_FRAMES.get(config.acts("stream-error-frame"))
    if frame is None or error.status >= 500 or not await asks_for_stream(request):
        return error.response(config.faults)
    template, enveloped = frame
    envelope = error.envelope()
    data = json.dumps(envelope if enveloped else envelope["error"]).encode()
    return Response(template.replace(b"%s", data), media_type="text/event-stream")


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


#: The reference model "reasons" only when asked to think step by step: every other answer stays
#: as a model that does not reason would give it.
REASONING_TRIGGER = "step by step"
REASONING = "2 plus 3 is 5."
#: The message field that carries reasoning, per behaviour of `reasoning-field` (`other`: this
#: field when not streamed, but `<think>` in the content when streamed).
REASONING_FIELDS = {"fireworks": "reasoning_content", "input-rejected": "reasoning_content", "reasoning": "reasoning",
                    "other": "reasoning_content"}


def reasoning_for(body: dict[str, Any]) -> str | None:
    """The reasoning a chat request gets: only a last user message asking to think step by step."""
    users = [lm.message_text(m) for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    return REASONING if users and REASONING_TRIGGER in users[-1].lower() else None


def count_reasoning(reasoning: str | None, choices: int, usage: dict[str, Any]) -> None:
    """Count the reasoning in `usage`: its tokens are completion tokens, as on every reasoning model."""
    if reasoning is None:
        return
    tokens = lm.count_tokens(reasoning) * choices
    usage["completion_tokens"] += tokens
    usage["total_tokens"] += tokens
    usage.setdefault("completion_tokens_details", {})["reasoning_tokens"] = tokens


def show_reasoning(config: ServerConfig, reasoning: str | None, choices: list[dict[str, Any]]) -> None:
    """Add the reasoning to a non-streaming chat answer where the entry's behaviour puts it."""
    if reasoning is None:
        return
    behaviour = config.acts("reasoning-field")
    for choice in choices:
        message = choice["message"]
        if behaviour in REASONING_FIELDS:
            message[REASONING_FIELDS[behaviour]] = reasoning
        elif behaviour == "think-tags":
            message["content"] = f"<think>{reasoning}</think>{message.get('content') or ''}"


def reasoning_deltas(config: ServerConfig, reasoning: str | None) -> list[dict[str, Any]]:
    """The deltas a chat stream carries its reasoning in, token by token, before the answer."""
    if reasoning is None:
        return []
    behaviour = config.acts("reasoning-field")
    tokens = lm.tokenize(reasoning)
    if behaviour in REASONING_FIELDS and behaviour != "other":
        return [{REASONING_FIELDS[behaviour]: token} for token in tokens]
    if behaviour in ("think-tags", "other"):
        return [{"content": piece} for piece in ("<think>", *tokens, "</think>")]
    return []
