"""The anthropic SDK's calls the checks make, run in its SDK worker process (`__main__.py`); as
`openai_calls.py`, each returns a note of what it could not show, or None, and raises what the SDK
raised."""

from __future__ import annotations

from typing import Any

import anthropic
import jsonschema

Note = str | None


def messages_create(client: anthropic.Anthropic, request: dict[str, Any]) -> Note:
    message = client.messages.create(**request)
    assert message.content and message.content[0].type == "text", f"content {message.content!r}"
    assert message.stop_reason is not None, "the message has no stop_reason"
    return None


def messages_stream(client: anthropic.Anthropic, request: dict[str, Any]) -> Note:
    with client.messages.stream(**request) as events:
        streamed = "".join(events.text_stream)
        final = events.get_final_message()
    assert final.stop_reason is not None, "the accumulated message has no stop_reason"
    assert isinstance(streamed, str)
    return None


def messages_tool_use(client: anthropic.Anthropic, request: dict[str, Any], schema: dict[str, Any]) -> Note:
    """A forced tool call: its input must be valid against the tool's `schema`."""
    try:
        message = client.messages.create(**request)
    except anthropic.BadRequestError as refusal:
        return f"tools refused ({refusal.status_code})"
    calls = [block for block in message.content if block.type == "tool_use"]
    if not calls:
        return "the forced tool_choice made no call (see messages-tool-choice)"
    jsonschema.validate(calls[0].input, schema)
    return None
