"""The reference server: an OpenAI-compatible Starlette app that acts as OpenAI or as Fireworks
documents, entry by entry (see config.py), with a deterministic model (see model.py).

It is the embedded default endpoint of `conformance run` and the fixture of the project's own
tests, so every branch here is one documented behaviour or one deliberate deviation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conformance.reference_server import faults, validation
from conformance.reference_server import model as lm
from conformance.reference_server.config import ServerConfig
from conformance.reference_server.embeddings import create_embeddings
from conformance.reference_server.errors import ApiError, bad_param
from conformance.reference_server.messages import messages_routes
from conformance.reference_server.responses_api import create_response
from conformance.reference_server.shapes import (
    SESSION_HEADER,
    PromptCache,
    check_reasoning_effort,
    count_reasoning,
    error_response,
    ignoring_eos,
    length_cap,
    read_messages,
    reasoning_deltas,
    reasoning_for,
    show_reasoning,
    unknown_fields,
    usage_details,
)
from conformance.reference_server.structured import ToolCall, forced_tool_call, response_document

CREATED = 1_700_000_000
LOG = logging.getLogger(__name__)
OPENAI_COMMON = {"model", "temperature", "top_p", "n", "stream", "stream_options", "stop", "max_tokens",
                 "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "user", "seed"}
OPENAI_CHAT = OPENAI_COMMON | {"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
                               "parallel_tool_calls", "response_format", "functions", "function_call",
                               "service_tier", "store", "metadata", "modalities", "prediction",
                               "reasoning_effort", "prompt_cache_key", "safety_identifier", "verbosity"}
OPENAI_COMPLETIONS = OPENAI_COMMON | {"prompt", "suffix", "echo", "best_of"}
#: Fireworks request fields a catalog entry is about: known only while the server acts as Fireworks.
EXTENSIONS = {
    "context_length_exceeded_behavior": "context-length-exceeded-behavior-param",
    "perf_metrics_in_response": "perf-metrics-in-response",
    "raw_output": "raw-output",
}
#: OpenAI fields the older Fireworks page lists as "not supported".
OLD_UNSUPPORTED = {
    "presence_penalty": "penalty-parameters",
    "frequency_penalty": "penalty-parameters",
    "best_of": "best-of",
    "logit_bias": "logit-bias",
    "functions": "legacy-functions",
}
SAMPLING_DEFAULTS = {"max_tokens": 2048, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                     "typical_p": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
                     "repetition_penalty": 1.0}


@dataclass
class ServerState:
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    #: Request fingerprints already answered with a rate-limit fault.
    throttled: set[str] = field(default_factory=set)
    #: Deviation `stream-abort=other`: after a client abandons a stream, the next request fails,
    #: as on a server that keeps generating for a client that has gone.
    wedged: bool = False
    prompt_cache: PromptCache = field(default_factory=PromptCache)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids):06d}"


@dataclass
class Generation:
    """One choice's output after stop sequences and the token limit were applied."""

    text: str
    tokens: list[str]
    finish_reason: str
    #: The forced tool call whose arguments this generation's text is, with the call's id.
    tool: ToolCall | None = None
    call_id: str = ""


class Endpoint:
    """Handles /v1 requests for one ServerConfig."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.state = ServerState()

    # ---- plumbing -------------------------------------------------------------------------
    async def guard(self, request: Request, authenticate: bool = True) -> None:
        """Pacing and faults for every route; the key as OpenAI takes it unless the route's API
        family checks it its own way (`authenticate=False`: messages.py)."""
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        if self.state.wedged:
            self.state.wedged = False  # the stale generation ends now; the next request is served
            raise ApiError(503, "the server is busy generating for a client that has gone", "server_error")
        if self.config.api_key and authenticate:
            authorization = request.headers.get("authorization")
            if authorization is None and "x-api-key" in request.headers:  # how an Anthropic client lists models
                authorization = f"Bearer {request.headers['x-api-key']}"
            self.authenticate(authorization)

    def authenticate(self, authorization: str | None) -> None:
        """401 unless the configured key is sent (the accept-* faults let one kind of wrong request in)."""
        if authorization is None:
            if "accept-missing-key" not in self.config.faults:
                raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                               "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        elif authorization != f"Bearer {self.config.api_key}" and "accept-bad-key" not in self.config.faults:
            raise ApiError(401, "Incorrect API key provided. You can find your API key in your account settings.",
                           code="invalid_api_key")

    async def faulty(self, request: Request) -> Response | None:
        """The configured transport fault for a generation request, if any."""
        if not self.config.faults:
            return None
        return await faults.intercept(self.config.faults, self.state.throttled, request)

    async def read_body(self, request: Request) -> dict[str, Any]:
        """The JSON object a generation request sends, naming a model this server serves."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        model = body.get("model") if self.trusting else validation.check_model(body)
        if model != self.config.model_id and "accept-unknown-model" not in self.config.faults:
            raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        return body

    @property
    def trusting(self) -> bool:
        """Fault `skip-body-validation`: malformed bodies reach the generator (and break it)."""
        return "skip-body-validation" in self.config.faults

    def headers(self, prompt_tokens: int, streaming: bool, cached_tokens: int = 0) -> dict[str, str]:
        headers = {"x-request-id": self.state.next_id("req")}
        if self.config.is_("perf-metrics-headers", "fireworks") and not streaming:
            headers.update({"fireworks-prompt-tokens": str(prompt_tokens),
                            "fireworks-cached-prompt-tokens": str(cached_tokens),
                            "fireworks-server-time-to-first-token": "0.001",
                            "fireworks-server-processing-time": "0.002"})
        else:
            headers["openai-processing-ms"] = "2"
        if self.config.is_("sampling-options-header", "fireworks"):
            headers["fireworks-sampling-options"] = json.dumps(SAMPLING_DEFAULTS)
        return headers

    # ---- routes ---------------------------------------------------------------------------
    def model_object(self) -> dict[str, Any]:
        model = {"id": self.config.model_id, "object": "model", "created": CREATED, "owned_by": "conformance"}
        if self.config.is_("models-object-shape", "other"):
            del model["owned_by"]  # deviation: a required field is missing
        return model

    async def models(self, request: Request) -> Response:
        await self.guard(request)
        return JSONResponse({"object": "list", "data": [self.model_object()]})

    async def model(self, request: Request) -> Response:
        """`GET /v1/models/{model}`: the model object, or a 404 envelope for any other id."""
        await self.guard(request)
        requested = request.path_params["model"]
        if self.config.is_("models-object-shape", "unsupported"):
            raise ApiError(404, f"Invalid URL (GET {request.url.path})", code="not_found")
        if requested != self.config.model_id:
            raise ApiError(404, f"The model `{requested}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        return JSONResponse(self.model_object())

    async def chat(self, request: Request) -> Response:
        await self.guard(request)
        if (fault := await self.faulty(request)) is not None:
            return fault
        body = await self.read_body(request)
        messages = (cast(list[dict[str, Any]], body.get("messages")) if self.trusting
                    else validation.check_messages(body))
        self.check_params(body, OPENAI_CHAT, chat=True)
        messages = read_messages(self.config, messages)
        if self.config.is_("multi-turn-history", "other"):
            messages = messages[-1:]  # deviation: the history is dropped
        prompt = lm.render_chat(messages)
        self.check_tool_history(messages)
        tool = self.tool_call(body)
        document = tool.arguments if tool else self.structured_document(body)
        reply = lm.chat_reply(messages) if document is None else iter(lm.tokenize(document))
        return self.complete(body, prompt, reply, chat=True, tool=tool, session=request.headers.get(SESSION_HEADER))

    async def completions(self, request: Request) -> Response:
        await self.guard(request)
        if (fault := await self.faulty(request)) is not None:
            return fault
        body = await self.read_body(request)
        prompt = body.get("prompt") if self.trusting else validation.check_prompt(body)
        self.check_params(body, OPENAI_COMPLETIONS, chat=False)
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise bad_param("prompt", "The reference server serves one prompt per request, given as a string.")
        return self.complete(body, prompt, lm.completion_continuation(prompt), chat=False,
                             session=request.headers.get(SESSION_HEADER))

    async def embeddings(self, request: Request) -> Response:
        await self.guard(request)
        if (fault := await self.faulty(request)) is not None:
            return fault
        return JSONResponse(create_embeddings(self.config, await self.read_body(request)))

    async def responses(self, request: Request) -> Response:
        await self.guard(request)
        if (fault := await self.faulty(request)) is not None:
            return fault
        if self.config.is_("responses-api", "unsupported"):
            raise ApiError(404, "Not found", code="not_found")
        body = await self.read_body(request)
        return create_response(body, self.state.next_id("resp"), self.config.model_id, self.config.token_delay_ms)

    # ---- tools and structured outputs ----------------------------------------------------------
    def tool_call(self, body: dict[str, Any]) -> ToolCall | None:
        """The forced call, as the `tool-choice` behaviour takes `tool_choice` (`ignored`: any
        forcing is dropped and the model answers in text, as a server serving a named choice as auto).
        `tool-call-stream=unsupported` refuses tools in a stream here, as older llama.cpp did."""
        tool = forced_tool_call(body, fireworks_forms=self.config.is_("tool-choice", "fireworks"))
        if body.get("stream") and body.get("tools") and self.config.is_("tool-call-stream", "unsupported"):
            raise bad_param("tools", "Cannot use tools with stream")
        return None if self.config.is_("tool-choice", "ignored") else tool

    def structured_document(self, body: dict[str, Any]) -> str | None:
        """What `response_format` asks for, unless the server is told to ignore that kind."""
        document = response_document(body, grammar=self.config.is_("response-format-grammar", "fireworks"),
                                     fireworks_subset=self.config.is_("json-schema-subset", "fireworks"))
        kind = (body.get("response_format") or {}).get("type")
        if kind in ("json_object", "json_schema") and self.config.is_(f"response-format-{kind.replace('_', '-')}",
                                                                       "ignored"):
            return None
        return document

    def check_tool_history(self, messages: list[dict[str, Any]]) -> None:
        """Deviations of `tool-call-round-trip`: refusing a null assistant content or tool content parts."""
        for position, message in enumerate(messages):
            role, content = message.get("role"), message.get("content")
            if role == "assistant" and content is None and self.config.is_("tool-call-round-trip",
                                                                           "rejects-null-content"):
                raise bad_param(f"messages[{position}].content", "content must be a string")
            if role == "tool" and isinstance(content, list) and self.config.is_("tool-call-round-trip",
                                                                                "rejects-tool-parts"):
                raise bad_param(f"messages[{position}].content", "a tool message's content must be a string")

    # ---- request validation -----------------------------------------------------------------
    def check_params(self, body: dict[str, Any], known: set[str], chat: bool) -> None:
        if "accept-invalid-params" in self.config.faults:
            return
        if "reject-valid-params" in self.config.faults:
            for param in ("top_p", "n", "stop"):
                if param in body:
                    raise bad_param(param, f"'{param}' is not allowed here")
        allowed = set(known)
        allowed |= {p for p, entry in EXTENSIONS.items() if self.config.is_(entry, "fireworks")}
        if chat and self.config.is_("echo-on-chat", "fireworks"):
            allowed.add("echo")
        unknown = unknown_fields(self.config, body, allowed)
        if unknown:
            raise ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
        for param in body:
            entry = OLD_UNSUPPORTED.get(param)
            if entry and self.config.is_(entry, "fireworks"):
                raise bad_param(param, f"`{param}` is not supported")
        if "parallel_tool_calls" in body and self.config.is_("parallel-tool-calls", "unsupported"):
            raise ApiError(400, "Unrecognized request argument supplied: parallel_tool_calls",
                           param="parallel_tool_calls")
        if "stream_options" in body and self.config.is_("stream-options-include-usage", "unsupported"):
            raise ApiError(400, "Unrecognized request argument supplied: stream_options", param="stream_options")
        check_reasoning_effort(self.config, body)
        validation.check_optional_fields(body)
        self.check_logprobs(body, chat)
        behaviour = body.get("context_length_exceeded_behavior", "truncate")
        if behaviour not in ("truncate", "error"):
            raise bad_param("context_length_exceeded_behavior", "must be 'truncate' or 'error'")
        best_of = body.get("best_of")
        if best_of is not None and best_of < (body.get("n") or 1):
            raise bad_param("best_of", "'best_of' must be at least as large as 'n'.")

    def check_logprobs(self, body: dict[str, Any], chat: bool) -> None:
        logprobs = body.get("logprobs")
        top = body.get("top_logprobs")
        if chat:
            if logprobs is not None and type(logprobs) not in (bool, int):
                raise bad_param("logprobs", "Invalid type for 'logprobs': expected a boolean.")
            integer_form = isinstance(logprobs, int) and not isinstance(logprobs, bool)
            if integer_form and not self.config.is_("chat-logprobs-integer", "fireworks"):
                raise bad_param("logprobs",
                                "Invalid type for 'logprobs': expected a boolean, but got an integer instead.")
            if isinstance(logprobs, int) and integer_form and not 0 <= logprobs <= 5:
                raise bad_param("logprobs", "'logprobs' must be between 0 and 5.")
            if top is not None:
                limit = 5 if self.config.is_("top-logprobs-range", "fireworks") else 20
                if type(top) is not int or not 0 <= top <= limit:
                    raise bad_param("top_logprobs", f"'top_logprobs' must be an integer between 0 and {limit}.")
                if logprobs is not True:
                    raise bad_param("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.")
        elif logprobs is not None and (type(logprobs) is not int or not 0 <= logprobs <= 5):
            raise bad_param("logprobs", "'logprobs' must be an integer between 0 and 5.")

    # ---- generation -------------------------------------------------------------------------
    def token_limit(self, body: dict[str, Any], prompt_tokens: int, chat: bool) -> int:
        """max_tokens after the context window is applied: the Fireworks/OpenAI difference."""
        window = self.config.context_window
        room = window - prompt_tokens
        if room <= 0:
            raise ApiError(400, f"This model's maximum context length is {window} tokens, however your prompt "
                           f"has {prompt_tokens} tokens.", param="messages" if chat else "prompt",
                           code="context_length_exceeded")
        requested = length_cap(self.config, body)
        if requested is None:
            default = 2048 if self.config.is_("context-overflow-default", "fireworks") else room
            requested = default if chat else 16
        if prompt_tokens + requested <= window:
            return requested
        truncate = (body.get("context_length_exceeded_behavior", "truncate") == "truncate"
                    and self.config.is_("context-overflow-default", "fireworks"))
        if self.config.is_("context-length-exceeded-behavior-param", "fireworks") and \
                "context_length_exceeded_behavior" in body:
            truncate = body["context_length_exceeded_behavior"] == "truncate"
        if truncate:
            return room
        raise ApiError(400, f"This model's maximum context length is {window} tokens. However, you requested "
                       f"{prompt_tokens + requested} tokens ({prompt_tokens} in the messages, {requested} in the "
                       "completion). Please reduce the length of the messages or completion.",
                       param="messages" if chat else "prompt", code="context_length_exceeded")

    def generate(self, body: dict[str, Any], continuation, limit: int, tool: ToolCall | None) -> Generation:
        tokens, natural_end = lm.take(ignoring_eos(self.config, body, lm.forced(continuation, body.get("logit_bias"))),
                                      limit)
        text = "".join(tokens)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        hits = [(text.find(s), s) for s in stops if s and s in text]
        if hits:
            position, stop = min(hits)
            keep = position + len(stop) if self.config.is_("stop-sequence-in-output", "fireworks") else position
            text = text[:keep]
            tokens, natural_end = lm.tokenize(text), True
        finish = "length" if not natural_end else tool.finish_reason if tool else "stop"
        return Generation(text, tokens, finish, tool, self.state.next_id("call") if tool else "")

    def complete(self, body: dict[str, Any], prompt: str, continuation, chat: bool,
                 tool: ToolCall | None = None, session: str | None = None) -> Response:
        prompt_tokens = lm.count_tokens(prompt)
        cached_tokens = self.state.prompt_cache.cached_tokens(self.config, session, prompt, prompt_tokens, body)
        limit = self.token_limit(body, prompt_tokens, chat)
        continuations = list(itertools.tee(continuation, self.choice_count(body)))
        generations = [self.generate(body, c, limit, tool) for c in continuations]
        counted = generations[:1] if self.config.is_("n-choices", "usage-one-choice") else generations
        completion_tokens = sum(len(g.tokens) for g in counted) * max(1, body.get("best_of") or 1)
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        usage.update(usage_details(self.config, prompt_tokens, cached_tokens))
        reasoning = reasoning_for(body) if chat else None
        count_reasoning(reasoning, len(generations), usage)
        response_id = self.state.next_id("chatcmpl" if chat else "cmpl")
        if body.get("stream"):
            events = self.stream(body, prompt, generations, usage, response_id, chat, reasoning)
            if self.config.faults:
                events = faults.corrupt_stream(self.config.faults, events)
            return StreamingResponse(events,
                                     media_type=faults.stream_media_type(self.config.faults),
                                     headers=self.headers(prompt_tokens, streaming=True))
        choices = [self.choice(body, prompt, g, i, chat) for i, g in enumerate(generations)]
        if chat:
            show_reasoning(self.config, reasoning, choices)
        result: dict[str, Any] = {"id": response_id, "object": "chat.completion" if chat else "text_completion",
                                  "created": CREATED, "model": self.config.model_id, "choices": choices}
        if not self.config.is_("usage-in-response", "other"):
            result["usage"] = usage
        if chat and not self.config.is_("chat-completion-schema", "fireworks"):
            result.update(system_fingerprint="fp_reference", service_tier="default")
        if body.get("perf_metrics_in_response"):
            result["perf_metrics"] = self.perf_metrics(prompt_tokens)
        if self.config.is_("chat-completion-schema" if chat else "completion-schema", "other"):
            del result["created"]  # deviation: a required field is missing
        return JSONResponse(result, headers=self.headers(prompt_tokens, streaming=False, cached_tokens=cached_tokens))

    def choice_count(self, body: dict[str, Any]) -> int:
        return 1 if self.config.is_("n-choices", "other") else body.get("n") or 1

    def perf_metrics(self, prompt_tokens: int) -> dict[str, Any]:
        return {"prompt-tokens": prompt_tokens, "cached-prompt-tokens": 0,
                "server-time-to-first-token": 0.001, "server-processing-time": 0.002}

    def choice(self, body: dict[str, Any], prompt: str, generation: Generation, index: int, chat: bool) -> dict:
        text = generation.text
        finish = generation.finish_reason
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            functions = self.function_call(body)
            if generation.tool:
                message = {"role": "assistant", "content": None, "tool_calls": [{
                    "id": generation.call_id, "type": "function",
                    "function": {"name": generation.tool.name, "arguments": text}}]}
            elif functions:
                message, finish = functions
            elif body.get("echo"):
                message["content"] = prompt + text
            if not self.config.is_("chat-completion-schema", "fireworks"):
                message.setdefault("refusal", None)
                message.setdefault("annotations", [])
            result: dict[str, Any] = {"index": index, "message": message, "finish_reason": finish}
        else:
            shown = text
            if body.get("echo"):
                echoed = prompt if not self.config.is_("completion-echo", "other") else lm.render_chat(
                    [{"role": "user", "content": prompt}])
                shown = echoed + text
            result = {"index": index, "text": shown, "finish_reason": finish}
        logprobs = self.logprobs(body, generation.tokens, chat)
        if logprobs is not None or not (chat and self.config.is_("chat-completion-schema", "fireworks")):
            result["logprobs"] = logprobs
        if body.get("raw_output"):
            result["raw_output"] = {"prompt_fragments": [prompt],
                                    "prompt_token_ids": [lm.token_id(t) for t in lm.tokenize(prompt)],
                                    "completion": generation.text,
                                    "completion_token_ids": [lm.token_id(t) for t in generation.tokens]}
        return result

    def function_call(self, body: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        """The legacy `functions` API: OpenAI answers with function_call; current Fireworks with tool_calls."""
        functions = body.get("functions")
        forced_call = body.get("function_call")
        if not functions or not isinstance(forced_call, dict):
            return None
        call = {"name": forced_call.get("name"), "arguments": "{}"}
        if self.config.is_("legacy-functions", "tool-calls"):
            return ({"role": "assistant", "content": None,
                     "tool_calls": [{"id": self.state.next_id("call"), "type": "function", "function": call}]},
                    "tool_calls")
        return {"role": "assistant", "content": None, "function_call": call}, "function_call"

    def logprobs(self, body: dict[str, Any], tokens: list[str], chat: bool) -> dict[str, Any] | None:
        requested = body.get("logprobs")
        if requested is None or requested is False:
            return None
        if chat and requested is True:
            extras = self.config.is_("chat-logprobs-boolean", "fireworks")
            top = body.get("top_logprobs") or 0
            content = []
            offset = 0
            for token in tokens:
                item: dict[str, Any] = {"token": token, "logprob": lm.logprob(token),
                                        "bytes": list(token.encode()),
                                        "top_logprobs": [{"token": alt, "logprob": lm.logprob(alt) - rank,
                                                          "bytes": list(alt.encode())}
                                                         for rank, alt in enumerate(_alternatives(token, top))]}
                if extras:
                    item.update(token_id=lm.token_id(token), text_offset=offset, sampling_logprob=item["logprob"])
                offset += len(token)
                content.append(item)
            return {"content": content} if extras else {"content": content, "refusal": None}
        top = int(requested)
        offsets = list(itertools.accumulate((len(t) for t in tokens), initial=0))[:-1]
        legacy: dict[str, Any] = {
            "tokens": tokens,
            "token_logprobs": [lm.logprob(t) for t in tokens],
            "top_logprobs": [{alt: lm.logprob(alt) for alt in _alternatives(t, top)} for t in tokens],
            "text_offset": offsets,
        }
        if chat:
            legacy["token_ids"] = [lm.token_id(t) for t in tokens]
        return legacy

    # ---- streaming --------------------------------------------------------------------------
    async def stream(self, body, prompt, generations, usage, response_id, chat,
                     reasoning: str | None = None) -> AsyncIterator[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        finish_usage = self.config.is_("stream-usage-default", "fireworks") or (
            include_usage and self.config.is_("stream-options-include-usage", "fireworks"))
        separate_usage = include_usage and self.config.is_("stream-options-include-usage", "openai")
        usage_key = finish_usage or separate_usage
        finished = False
        try:
            for index, generation in enumerate(generations):
                pieces = self.stream_pieces(body, prompt, generation, chat, reasoning_deltas(self.config, reasoning))
                for position, piece in enumerate(pieces):
                    last = position == len(pieces) - 1
                    choice = self.stream_choice(piece, index, generation.finish_reason if last else None, chat,
                                                first=position == 0, generation=generation)
                    chunk = self.chunk(response_id, [choice], chat)
                    if usage_key:
                        chunk["usage"] = usage if (finish_usage and last and index == len(generations) - 1) else None
                    if last and body.get("perf_metrics_in_response"):
                        chunk["perf_metrics"] = self.perf_metrics(usage["prompt_tokens"])
                    await asyncio.sleep(self.config.token_delay_ms / 1000)
                    yield sse(chunk)
            if separate_usage:
                yield sse({**self.chunk(response_id, [], chat), "usage": usage})
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            # Starlette cancels this generator when the client disconnects mid-stream.
            if not finished and self.config.is_("stream-abort", "other"):
                self.state.wedged = True

    def stream_pieces(self, body, prompt, generation: Generation, chat: bool,
                      reasoning: list[dict[str, Any]]) -> list[str | dict[str, Any] | None]:
        """Text per chunk: the role chunk (chat), the reasoning's deltas, one per token, then the finish chunk."""
        tokens = list(generation.tokens)
        if body.get("echo"):
            tokens = [prompt, *tokens]
        head: list[str | dict[str, Any] | None] = ["", *reasoning] if chat else []
        return [*head, *tokens, None]

    def stream_choice(self, piece: str | dict[str, Any] | None, index: int, finish: str | None, chat: bool,
                      first: bool, generation: Generation) -> dict:
        if chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if isinstance(piece, dict):
                delta.update(piece)
            elif generation.tool:
                delta.update(tool_call_delta(generation.tool, generation.call_id, piece, first))
            elif piece is not None:
                delta["content"] = piece
            choice = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": piece or "", "finish_reason": finish}
        if not (chat and self.config.is_("chat-completion-schema", "fireworks")):
            choice["logprobs"] = None
        return choice

    def chunk(self, response_id: str, choices: list[dict], chat: bool) -> dict[str, Any]:
        chunk = {"id": response_id, "object": "chat.completion.chunk" if chat else "text_completion",
                 "created": CREATED, "model": self.config.model_id, "choices": choices}
        if chat and not self.config.is_("chat-completion-schema", "fireworks"):
            chunk["system_fingerprint"] = "fp_reference"
        return chunk


def tool_call_delta(tool: ToolCall, call_id: str, piece: str | None, first: bool) -> dict[str, Any]:
    """A streamed tool call as OpenAI sends it: id, type and name once, then the arguments in pieces."""
    if first:
        return {"content": None, "tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                                 "function": {"name": tool.name, "arguments": ""}}]}
    return {} if piece is None else {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}


def _alternatives(token: str, count: int) -> list[str]:
    return [token] + [f"{token}{suffix}" for suffix in "abcdefghijklmnopqrstuvwxyz"][: max(0,
                                                                                           count - 1)] if count else []


def sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def create_app(config: ServerConfig) -> Starlette:
    endpoint = Endpoint(config)

    def guarded(handler):
        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                return await error_response(config, request, error)
            except Exception as error:  # a bug here still answers in the envelope, on a kept-alive connection
                LOG.exception("the reference server failed on %s %s", request.method, request.url.path)
                return ApiError(500, f"The reference server failed: {type(error).__name__}", "server_error"
                                ).response(config.faults)

        return route

    async def http_error(request: Request, error: HTTPException) -> Response:
        """Starlette's own refusals (no such route, a method the route does not serve) in the envelope."""
        known = {404: (f"Invalid URL ({request.method} {request.url.path})", "not_found"),
                 405: (f"{request.method} is not allowed on {request.url.path}.", "method_not_allowed")}
        message, code = known.get(error.status_code, (error.detail, None))
        return ApiError(error.status_code, message, code=code).response(config.faults)

    routes = [
        Route("/v1/models", guarded(endpoint.models), methods=["GET"]),
        Route("/v1/models/{model:path}", guarded(endpoint.model), methods=["GET"]),
    ]
    if "openai" in config.apis:  # the API families this server serves (a family not served is a 404)
        routes += [
            Route("/v1/chat/completions", guarded(endpoint.chat), methods=["POST"]),
            Route("/v1/completions", guarded(endpoint.completions), methods=["POST"]),
            Route("/v1/responses", guarded(endpoint.responses), methods=["POST"]),
            Route("/v1/embeddings", guarded(endpoint.embeddings), methods=["POST"]),
        ]
    routes += messages_routes(endpoint)
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})  # type: ignore[dict-item]
    app.state.config = config
    app.state.endpoint = endpoint  # a fleet (fleet.py) lists every model's object
    app.state.started = time.time()
    return app
