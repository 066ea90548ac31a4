"""Transport-level faults the reference server can be told to commit (`serve --fault NAME`), so the
project's tests can see that every kind of broken endpoint ends in a verdict, never a crash or a hang.

Faults apply to the generation routes (chat, completions, responses); `/v1/models` stays healthy so
a run can start and meet them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from conformance.reference_server.errors import ApiError

FAULTS = {
    "hang": "never answer",
    "stall-stream": "send the first event of a stream, then nothing more",
    "endless-stream": "stream events forever",
    "http-500": "answer 500 with an OpenAI error envelope",
    "html-error": "answer 502 with an HTML error page",
    "invalid-json": "answer 200 with a body that is not JSON",
    "truncated-sse": "cut every stream in the middle of an event, without [DONE]",
    "malformed-sse": "send stream events whose data is not JSON",
    "huge-body": "answer with a body larger than the client's cap",
    "rate-limited": "answer 429 with Retry-After: 1 the first time a request is seen",
    "overloaded": "answer 503 with Retry-After: 1 the first time a request is seen",
    # Rule breaks of the common surface (each should make exactly the matching check fail).
    "sse-content-type": "stream with Content-Type text/plain",
    "sse-single-newline": "separate stream events by one newline instead of a blank line",
    "sse-no-done": "end streams without data: [DONE]",
    "sse-after-done": "send one more event after data: [DONE]",
    "sse-id-changes": "give every chunk of a stream a different id",
    "sse-role-repeated": "repeat the role in every delta",
    "sse-double-finish": "set finish_reason on two chunks of the same choice",
    "sse-crlf": "end stream lines with CRLF (legal: must be tolerated)",
    "sse-comments": "interleave SSE comment lines (legal: must be tolerated)",
    "chunk-schema-break": "leave `created` out of every stream chunk",
    "tool-stream-index-string": "send a streamed tool call's `index` as a string",
    "tool-stream-late-name": "leave `id`, `type` and the name out of a streamed tool call's first delta",
    "tool-stream-id-changes": "give every delta of a streamed tool call a different `id`",
    "tool-stream-broken-arguments": "stream tool-call arguments that do not join into JSON",
    "error-plain-text": "answer errors as plain text instead of the JSON envelope",
    "error-500-on-invalid": "answer 500 where a 400 is due",
    "accept-bad-key": "serve a request with any API key (still refusing one without a key)",
    "accept-missing-key": "serve a request without an API key (still refusing a wrong key)",
    "accept-unknown-model": "serve requests for any model name",
    "accept-invalid-params": "skip parameter validation",
    "skip-body-validation": "trust the body's structure: no check of model, messages, prompt or their types",
    "reject-valid-params": "refuse any request that sets top_p, n or stop (valid parameters)",
}
FOREVER_S = 3600
HUGE_BODY_BYTES = 17 * 1024 * 1024


class FaultError(ValueError):
    pass


def validate(faults: frozenset[str]) -> None:
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise FaultError(f"unknown fault(s) {', '.join(unknown)}: choose from {', '.join(FAULTS)}")


async def intercept(faults: frozenset[str], seen: set[str], request: Request) -> Response | None:
    """A faulty answer to send instead of the real one, or None to answer normally."""
    if "hang" in faults:
        await asyncio.sleep(FOREVER_S)
    if "http-500" in faults:
        return ApiError(500, "internal failure", "server_error").response()
    if "html-error" in faults:
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502,
                        media_type="text/html")
    if "invalid-json" in faults:
        return Response('{"id": "cmpl-1", "choices": [', media_type="application/json")
    if "huge-body" in faults:
        return Response(b'{"padding": "' + b"x" * HUGE_BODY_BYTES + b'"}', media_type="application/json")
    for fault, status in (("rate-limited", 429), ("overloaded", 503)):
        if fault in faults:
            fingerprint = hashlib.sha256(await request.body()).hexdigest()
            if fingerprint not in seen:
                seen.add(fingerprint)
                return ApiError(status, "slow down", "rate_limit_error").response(headers={"retry-after": "1"})
    return None


def stream_media_type(faults: frozenset[str]) -> str:
    return "text/plain" if "sse-content-type" in faults else "text/event-stream"


def _rewrite_chunk(faults: frozenset[str], event: bytes, position: int) -> bytes:
    """Apply the chunk-level rule breaks to one `data: {...}` event."""
    payload = event[len(b"data: "):].strip()
    if not event.startswith(b"data: {"):
        return event
    chunk = json.loads(payload)
    if "sse-id-changes" in faults:
        chunk["id"] = f"{chunk.get('id')}-{position}"
    if "chunk-schema-break" in faults:
        chunk.pop("created", None)
    for choice in chunk.get("choices") or []:
        if "sse-role-repeated" in faults and "delta" in choice:
            choice["delta"]["role"] = "assistant"
        if "sse-double-finish" in faults and position == 1:
            choice["finish_reason"] = "stop"
        for call in (choice.get("delta") or {}).get("tool_calls") or []:
            _break_tool_call(faults, call, position)
    return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()


def _break_tool_call(faults: frozenset[str], call: dict, position: int) -> None:
    """Apply the tool-call-stream rule breaks to one streamed tool-call delta."""
    if "tool-stream-index-string" in faults:
        call["index"] = str(call.get("index"))
    if "tool-stream-late-name" in faults:
        for key in ("id", "type"):
            call.pop(key, None)
        (call.get("function") or {}).pop("name", None)
    if "tool-stream-id-changes" in faults:
        call["id"] = f"call-changed-{position}"
    function = call.get("function") or {}
    if "tool-stream-broken-arguments" in faults and function.get("arguments"):
        function["arguments"] = "}" + function["arguments"]


async def corrupt_stream(faults: frozenset[str], events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream as the faults make it."""
    position = 0
    async for event in events:
        if event.startswith(b"data: [DONE]"):
            if "sse-no-done" in faults:
                continue
            if "sse-after-done" in faults:
                event += b'data: {"choices": []}\n\n'
        else:
            event = _rewrite_chunk(faults, event, position)
        if "sse-single-newline" in faults:
            event = event.replace(b"\n\n", b"\n")
        if "sse-comments" in faults:
            event = b": keep-alive\n\n" + event
        if "sse-crlf" in faults:
            event = event.replace(b"\n", b"\r\n")
        if "malformed-sse" in faults:
            event = b"data: {this is not json\n\n"
        if "truncated-sse" in faults and position == 2:
            yield event[: len(event) // 2]
            return
        yield event
        if "stall-stream" in faults:
            await asyncio.sleep(FOREVER_S)
        position += 1
    while "endless-stream" in faults:
        yield b'data: {"choices": []}\n\n'
        await asyncio.sleep(0.01)
