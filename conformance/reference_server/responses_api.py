"""The Responses API (`POST /v1/responses`) of the reference server: create, streaming or not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from conformance.reference_server import model as lm
from conformance.reference_server.errors import ApiError

CREATED = 1_700_000_000


def _input_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if isinstance(given, list):
        return [m for m in given if isinstance(m, dict)]
    return []


def _response_object(body: dict[str, Any], response_id: str, model_id: str, text: str | None,
                     usage: dict[str, Any] | None) -> dict[str, Any]:
    done = text is not None
    output = [] if not done else [{
        "type": "message", "id": f"msg_{response_id}", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }]
    response = {
        "id": response_id, "object": "response", "created_at": CREATED,
        "status": "completed" if done else "in_progress", "model": model_id, "output": output,
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "metadata": {}, "parallel_tool_calls": True,
        "previous_response_id": None, "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0), "tool_choice": "auto", "tools": [], "truncation": "disabled",
        "text": {"format": {"type": "text"}}, "reasoning": {"effort": None, "summary": None},
        "store": False, "background": False, "service_tier": "default",
    }
    if usage is not None:
        response["usage"] = usage
    return response


def create_response(body: dict[str, Any], response_id: str, model_id: str, token_delay_ms: float) -> Response:
    messages = _input_messages(body)
    if not messages:
        return ApiError(400, "'input' is required", param="input").response()
    prompt = lm.render_chat(messages)
    limit = body.get("max_output_tokens") or 64
    tokens, _ = lm.take(lm.chat_reply(messages), limit)
    text = "".join(tokens)
    usage = {"input_tokens": lm.count_tokens(prompt), "input_tokens_details": {"cached_tokens": 0,
                                                                               "cache_write_tokens": 0},
             "output_tokens": len(tokens), "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": lm.count_tokens(prompt) + len(tokens)}
    if not body.get("stream"):
        return JSONResponse(_response_object(body, response_id, model_id, text, usage))
    return StreamingResponse(_events(body, response_id, model_id, tokens, text, usage, token_delay_ms),
                             media_type="text/event-stream")


async def _events(body, response_id, model_id, tokens, text, usage, token_delay_ms: float) -> AsyncIterator[bytes]:
    item_id = f"msg_{response_id}"
    pending = _response_object(body, response_id, model_id, None, None)
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0,
         "part": part},
        *({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0,
           "delta": token, "logprobs": []} for token in tokens),
        {"type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0,
         "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0,
         "part": {**part, "text": text}},
    ]
    final = _response_object(body, response_id, model_id, text, usage)
    events += [{"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
               {"type": "response.completed", "response": final}]
    for number, event in enumerate(events):
        event["sequence_number"] = number
        await asyncio.sleep(token_delay_ms / 1000)
        yield f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
