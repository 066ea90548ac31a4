"""Server-sent events read from raw bytes, so the bytes stay available as evidence.

Parsing is httpx-sse's (a well-kept implementation of the WHATWG algorithm: CRLF, comments and
multi-line `data:` are handled there); this module only adds what OpenAI streams need on top:
JSON chunks, the `[DONE]` sentinel, and what came after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

DONE = "[DONE]"


@dataclass
class ParsedStream:
    """An OpenAI-style stream: JSON chunks up to `data: [DONE]`."""

    events: list[ServerSentEvent] = field(default_factory=list)
    chunks: list[Any] = field(default_factory=list)
    done: bool = False
    events_after_done: int = 0
    undecodable: list[str] = field(default_factory=list)

    def problems(self, expect_done: bool = True) -> list[str]:
        """Framing faults, in words: what a strict client would trip over. `expect_done=False` for
        streams that do not end with `[DONE]` (the Responses API ends with `response.completed`)."""
        found = [f"event data is not JSON: {data[:120]!r}" for data in self.undecodable]
        if expect_done and not self.done:
            found.append("the stream ended without `data: [DONE]`")
        if self.events_after_done:
            found.append(f"{self.events_after_done} event(s) after `data: [DONE]`")
        return found


def parse_stream(raw: bytes) -> ParsedStream:
    """Parse a complete SSE body; never raises on bad input, it reports it instead."""
    carrier = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)
    parsed = ParsedStream()
    for event in EventSource(carrier).iter_sse():
        parsed.events.append(event)
        if parsed.done:
            parsed.events_after_done += 1
            continue
        if event.data.strip() == DONE:
            parsed.done = True
            continue
        if not event.data:
            continue
        try:
            parsed.chunks.append(json.loads(event.data))
        except ValueError:
            parsed.undecodable.append(event.data)
    return parsed
