"""The openai SDK's calls the checks make, run in its SDK worker process (`__main__.py`).

Each is a function of an SDK client and plain arguments (the check's request, built by the check),
named by the check (`checks/sdk.py`). It returns a note of what it could not show (tools refused, no
call made), or None, and raises what the SDK raised: the check judges that, as data
(`sdk_worker.Raised`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

Note = str | None


def chat_create(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    completion = client.chat.completions.create(**request)
    ChatCompletion.model_validate(completion.model_dump(exclude_unset=True, warnings=False))
    assert isinstance(completion.choices[0].message.content, str), "message.content is not a string"
    return None


def chat_raw_response(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    raw = client.chat.completions.with_raw_response.create(**request)
    assert raw.headers.get("content-type", "").startswith("application/json"), raw.headers.get("content-type")
    raw.parse()
    return None


def chat_stream_and_close(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    stream = client.chat.completions.create(**request, stream=True)
    first = next(iter(stream))
    ChatCompletionChunk.model_validate(first.model_dump(exclude_unset=True, warnings=False))
    for chunk in stream:
        ChatCompletionChunk.model_validate(chunk.model_dump(exclude_unset=True, warnings=False))
    stream.close()
    return None


def chat_stream_iterate(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    """Iterate a stream to its end, as a client that only wants the SDK to raise on an error does."""
    for _ in client.chat.completions.create(**request, stream=True):
        pass
    return None


def completions_create(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    Completion.model_validate(client.completions.create(**request).model_dump(exclude_unset=True, warnings=False))
    return None


def completions_stream(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    # Stream events reuse the Completion type with finish_reason null until the last one, so they
    # are read, not validated.
    with client.completions.create(**request, stream=True) as events:
        text = "".join(event.choices[0].text for event in events if event.choices)
    assert isinstance(text, str)
    return None


def chat_tool_call_stream(client: openai.OpenAI, request: dict[str, Any], schema: dict[str, Any]) -> Note:
    """A forced tool call, streamed: its arguments, joined, must be valid against the tool's `schema`."""
    try:
        stream = client.chat.completions.create(**request, stream=True)
    except openai.BadRequestError as refusal:
        return f"tools refused ({refusal.status_code})"
    arguments: dict[int, str] = {}
    with stream:
        for chunk in stream:
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                arguments[call.index] = arguments.get(call.index, "") + (call.function and call.function.arguments
                                                                         or "")
    if not arguments:
        return "tool_choice required streamed no call (see tool-choice)"
    jsonschema.validate(json.loads(arguments[min(arguments)]), schema)
    return None


# The SDK's `parse` turns this into a strict json_schema and the reply back into it (no docstring:
# it would travel in the schema as a description).
class Answer(BaseModel):
    answer: Literal["yes", "no"]


def chat_parse(client: openai.OpenAI, request: dict[str, Any]) -> Note:
    """`parse()` with a pydantic model (`Answer`) as the response format."""
    try:
        completion = client.chat.completions.parse(**request, response_format=Answer)
    except openai.BadRequestError as refusal:
        return f"json_schema refused ({refusal.status_code})"
    except openai.LengthFinishReasonError:
        return "parse(): the reply was cut by max_tokens before the document closed"
    assert isinstance(completion.choices[0].message.parsed, Answer), completion.choices[0].message
    return None
