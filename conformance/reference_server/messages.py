"""Anthropic's Messages API on the reference server: `POST /v1/messages` (a message, or its named
SSE events with a `ping`) and `POST /v1/messages/count_tokens`, answering errors in Anthropic's
envelope and authenticating by `x-api-key`.

It acts as Anthropic or as Fireworks documents, entry by entry (the `anthropic` family of the
catalog, read through `config.acts` like the OpenAI routes), and deviates on demand for the tests.
The same deterministic model (model.py) writes the text, so counts are predictable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conformance.reference_server import model as lm
from conformance.reference_server.errors import ApiError
from conformance.reference_server.structured import document_for

if TYPE_CHECKING:
    from conformance.reference_server.app import Endpoint

#: Anthropic's error type per status (its API overview, "HTTP errors").
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
#: The request fields of the SDK's `MessageCreateParams` (anthropic 2.12.0), and `stream`.
MESSAGE_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
                            "top_p", "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier",
                            "cache_control", "container", "inference_geo", "output_config"})
#: What `count_tokens` takes: the same body without the generation controls.
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})
#: A tool's fields in the SDK's `ToolParam`; Fireworks documents the optional ones as unsupported.
TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type", "strict"})
OPTIONAL_TOOL_FIELDS = frozenset({"cache_control", "eager_input_streaming", "defer_loading", "input_examples",
                                  "allowed_callers"})
#: Fireworks' default when `max_tokens` is left out (its chat default).
DEFAULT_MAX_TOKENS = 2048
#: Deviation `messages-stop-reason=other`: OpenAI's words where Anthropic's belong.
OPENAI_WORDS = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop", "tool_use": "tool_calls"}


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass
class Reply:
    """What the model answers: text, or a forced tool call, and why it stopped."""

    blocks: list[dict[str, Any]]
    output_tokens: int
    stop_reason: str
    stop_sequence: str | None


class MessagesApi:
    """The Messages routes of one reference server (shares its config, state and pacing)."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.config = endpoint.config

    # ---- plumbing -------------------------------------------------------------------------
    def authenticate(self, request: Request) -> None:
        """The key in `x-api-key` or `Authorization: Bearer` (unless told to read only one of them)."""
        key = self.config.api_key
        if not key:
            return
        sent = []
        if not self.config.is_("anthropic-auth-header", "bearer-only") and "x-api-key" in request.headers:
            sent.append(request.headers["x-api-key"])
        if not self.config.is_("anthropic-auth-header", "x-api-key-only") and "authorization" in request.headers:
            sent.append(request.headers["authorization"].removeprefix("Bearer "))
        if not sent:
            raise ApiError(401, "x-api-key header is required", "authentication_error")
        if any(given != key for given in sent):
            raise ApiError(401, "invalid x-api-key", "authentication_error")

    async def read(self, request: Request, known: frozenset[str]) -> dict[str, Any]:
        await self.endpoint.guard(request, authenticate=False)
        self.authenticate(request)
        if "anthropic-version" not in request.headers and self.config.is_("anthropic-version-header", "anthropic"):
            raise invalid("anthropic-version: header is required")
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise invalid("There was an issue with your request: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object")
        unknown = sorted(set(body) - known)
        if unknown:
            raise invalid(f"{unknown[0]}: Extra inputs are not permitted")
        model = body.get("model")
        if not isinstance(model, str):
            raise invalid("model: Field required" if model is None else "model: Input should be a valid string")
        if model != self.config.model_id:
            raise ApiError(404, f"model: {model}", "not_found_error")
        self.check_tools(body)
        return body

    def check_tools(self, body: dict[str, Any]) -> None:
        tools = body.get("tools", [])
        if not isinstance(tools, list):
            raise invalid("tools: Input should be a valid list")
        optional = OPTIONAL_TOOL_FIELDS if self.config.is_("messages-unsupported-tool-fields", "anthropic") else set()
        for position, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or \
                    not isinstance(tool.get("input_schema"), dict):
                raise invalid(f"tools.{position}: a tool needs a `name` and an `input_schema` object")
            extra = sorted(set(tool) - TOOL_FIELDS - optional)
            if extra:
                raise invalid(f"tools.{position}.{extra[0]}: Extra inputs are not permitted")

    def prompt(self, body: dict[str, Any]) -> str:
        """The chat template's reading of `system` and `messages` (text blocks and tool results as text)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("messages: Field required" if messages is None else "messages: at least one is required")
        chat = [{"role": "system", "content": text_of(body["system"], "system")}] if "system" in body else []
        for position, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise invalid(f"messages.{position}.role: Input should be 'user' or 'assistant'")
            chat.append({"role": message["role"], "content": text_of(message.get("content"), f"messages.{position}")})
        return lm.render_chat(chat)

    # ---- routes ---------------------------------------------------------------------------
    async def count_tokens(self, request: Request) -> Response:
        if self.config.is_("messages-count-tokens", "unsupported"):
            raise ApiError(404, f"Not Found: {request.url.path}", "not_found_error")
        body = await self.read(request, COUNT_FIELDS)
        counted = lm.count_tokens(self.prompt(body))
        return JSONResponse({"input_tokens": counted + self.config.is_("messages-count-tokens", "miscounted")})

    async def create(self, request: Request) -> Response:
        body = await self.read(request, MESSAGE_FIELDS)
        prompt = self.prompt(body)
        limit = self.max_tokens(body)
        reply = self.reply(body, prompt, limit)
        input_tokens = lm.count_tokens(prompt)
        message: dict[str, Any] = {
            "id": self.endpoint.state.next_id("msg"), "type": "message", "role": "assistant",
            "model": self.config.model_id, "content": reply.blocks,
            "stop_reason": self.stop_word(reply.stop_reason),
            "stop_sequence": None if self.config.is_("messages-stop-reason", "other") else reply.stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": reply.output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        if body.get("stream") is True:
            if self.config.is_("messages-stream-usage", "absent"):
                del message["usage"]
            return StreamingResponse(self.events(message), media_type="text/event-stream",
                                     headers={"request-id": message["id"]})
        if self.config.is_("messages-usage", "absent"):
            del message["usage"]
        if self.config.is_("messages-schema", "other"):
            del message["role"]  # deviation: a required field is missing
        return JSONResponse(message, headers={"request-id": message["id"]})

    # ---- generation -----------------------------------------------------------------------
    def max_tokens(self, body: dict[str, Any]) -> int:
        limit = body.get("max_tokens")
        if limit is None:
            if self.config.is_("messages-max-tokens-required", "anthropic"):
                raise invalid("max_tokens: Field required")
            return DEFAULT_MAX_TOKENS
        if type(limit) is not int or limit < 1:
            raise invalid("max_tokens: Input should be an integer greater than or equal to 1")
        return limit

    def reply(self, body: dict[str, Any], prompt: str, limit: int) -> Reply:
        forced = self.forced_tool(body)
        if forced is not None:
            name, schema = forced
            arguments = document_for(schema, f"tools[{name}].input_schema")
            block = {"type": "tool_use", "id": self.endpoint.state.next_id("toolu"), "name": name, "input": arguments}
            return Reply([block], lm.count_tokens(json.dumps(arguments)), "tool_use", None)
        tokens, natural_end = lm.take(lm.chat_reply(chat_messages(body)), limit)
        text = "".join(tokens)
        stops = body.get("stop_sequences") or []
        if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
            raise invalid("stop_sequences: Input should be a valid list of strings")
        hits = sorted((text.find(stop), stop) for stop in stops if stop and stop in text)
        if hits:
            position, stop = hits[0]
            text = text[:position]
            return Reply([{"type": "text", "text": text}], lm.count_tokens(text), "stop_sequence", stop)
        return Reply([{"type": "text", "text": text}], len(tokens), "end_turn" if natural_end else "max_tokens", None)

    def forced_tool(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The tool `tool_choice` forces (`tool` by name, `any`: the first), unless told to ignore it."""
        tools = {tool["name"]: tool["input_schema"] for tool in body.get("tools", [])}
        choice = body.get("tool_choice")
        if choice is None:
            return None
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise invalid("tool_choice: Input should be an object with type 'auto', 'any', 'tool' or 'none'")
        if choice["type"] in ("tool", "any") and not tools:
            raise invalid("tool_choice: tools are required when tool_choice forces a tool")
        if choice["type"] == "tool" and choice.get("name") not in tools:
            raise invalid(f"tool_choice.name: no tool named {choice.get('name')!r} is in tools")
        if self.config.is_("messages-tool-choice", "ignored") or choice["type"] in ("auto", "none"):
            return None
        name = choice["name"] if choice["type"] == "tool" else next(iter(tools))
        return name, tools[name]

    def stop_word(self, reason: str) -> str:
        return OPENAI_WORDS[reason] if self.config.is_("messages-stop-reason", "other") else reason

    # ---- streaming ------------------------------------------------------------------------
    async def events(self, message: dict[str, Any]) -> AsyncIterator[bytes]:
        """Anthropic's sequence: message_start, a ping, each block's start, deltas and stop, then
        message_delta (stop reason, cumulative output tokens) and message_stop."""
        usage = message.get("usage")
        started = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        if usage is not None:
            started["usage"] = {**usage, "output_tokens": 1}
        frames: list[dict[str, Any]] = []
        if not self.config.is_("anthropic-sdk", "other"):  # deviation: the stream opens without message_start
            frames.append({"type": "message_start", "message": started})
        frames.append({"type": "ping"})
        for index, block in enumerate(message["content"]):
            frames += block_events(index, block)
            if self.config.is_("messages-stream-events", "other"):
                frames.pop()  # deviation: the block is never closed
        delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                                   "stop_sequence": message["stop_sequence"]}}
        if usage is not None:
            delta["usage"] = {"output_tokens": usage["output_tokens"]}
        frames += [delta, {"type": "message_stop"}]
        for frame in frames:
            await asyncio.sleep(self.config.token_delay_ms / 1000)
            yield named_event(frame)


def block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """One content block as its start, deltas (text in tokens, tool input in JSON pieces) and stop."""
    if block["type"] == "tool_use":
        start = {**block, "input": {}}
        pieces = lm.tokenize(json.dumps(block["input"]))
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in lm.tokenize(block["text"])]
    return [{"type": "content_block_start", "index": index, "content_block": start},
            *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
            {"type": "content_block_stop", "index": index}]


def named_event(frame: dict[str, Any]) -> bytes:
    return f"event: {frame['type']}\ndata: {json.dumps(frame, separators=(',', ':'))}\n\n".encode()


def text_of(content: Any, where: str) -> str:
    """A message's (or the system prompt's) text: a string, or its text and tool-result blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where}.content: Input should be a valid string or a list of content blocks")
    texts = []
    for position, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"{where}.content.{position}: Input should be a content block")
        if block["type"] == "text":
            texts.append(str(block.get("text", "")))
        elif block["type"] == "tool_result":
            texts.append(text_of(block.get("content", ""), f"{where}.content.{position}"))
        elif block["type"] == "tool_use":
            texts.append(json.dumps(block.get("input", {})))
    return "".join(texts)


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation as the model's chat rules read it (text only)."""
    return [{"role": message["role"], "content": text_of(message.get("content"), "messages")}
            for message in body["messages"]]


def anthropic_error(error: ApiError) -> Response:
    """Anthropic's envelope: `{"type": "error", "error": {"type": ..., "message": ...}}`."""
    kind = error.type if error.type in ERROR_TYPES.values() else ERROR_TYPES.get(error.status, "api_error")
    return JSONResponse({"type": "error", "error": {"type": kind, "message": error.message}},
                        status_code=error.status)


Handler = Callable[[Request], Awaitable[Response]]


def messages_routes(endpoint: Endpoint) -> list[Route]:
    """The Messages routes, answering every refusal in Anthropic's envelope (or, as the deviation
    `messages-error-envelope=other`, in OpenAI's); none when the server does not serve the family."""
    if "anthropic" not in endpoint.config.apis:
        return []
    api = MessagesApi(endpoint)

    def enveloped(handler: Handler) -> Handler:
        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                if endpoint.config.is_("messages-error-envelope", "other"):
                    return error.response()
                return anthropic_error(error)

        return route

    return [Route("/v1/messages", enveloped(api.create), methods=["POST"]),
            Route("/v1/messages/count_tokens", enveloped(api.count_tokens), methods=["POST"])]
