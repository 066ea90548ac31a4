"""Server-sent events read from raw bytes, so the bytes stay available as evidence.

Parsing is httpx-sse's (a well-kept implementation of the WHATWG algorithm: CRLF, comments and
multi-line `data:` are handled there); this module only adds what OpenAI streams need on top:
JSON chunks, the `[DONE]` sentinel, and what came after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

DONE = "[DONE]"
#: The end of an event: a blank line after a non-blank one (line endings normalised to \n).
_EVENT_END = re.compile(rb"(?<=[^\n])\n\n")


class EventCounter:
    """Counts the events of a stream as its bytes arrive, in time linear in the bytes (so a cap or
    an early close can be applied while reading, whatever the chunking and line endings)."""

    def __init__(self) -> None:
        self.events = 0
        self._carry = b""
        self._pending_cr = False

    def feed(self, data: bytes) -> int:
        """Add the next bytes; returns the number of events completed so far."""
        if self._pending_cr and data.startswith(b"\n"):
            data = data[1:]  # the \n of a \r\n split across two reads
        self._pending_cr = data.endswith(b"\r")
        text = self._carry + data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self.events += sum(1 for end in _EVENT_END.finditer(text) if end.end() > len(self._carry))
        self._carry = text[-2:]
        return self.events


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
