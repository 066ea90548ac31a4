"""What one request and its answer leave behind as evidence: an `Exchange`, already redacted,
that can print itself as a curl line reproducing the request and as a report's evidence.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx

from conformance.redaction import REDACTED, Redactor
from conformance.sse import ParsedStream, parse_stream

#: Bodies larger than this are cut in evidence (the check still judged the whole body).
EVIDENCE_BODY_LIMIT = 8_000


@dataclass
class Exchange:
    """One HTTP request and what came back (or why nothing did). Already redacted."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0
    first_byte: float | None = None
    failure: str | None = None
    #: The client closed the connection on purpose after this many events (stream-abort probes).
    aborted_after: int | None = None
    #: Earlier attempts answered 429/503 with Retry-After: [{"status": ..., "retry_after_s": ...}].
    retries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @cached_property
    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            return None

    @cached_property
    def stream(self) -> ParsedStream:
        return parse_stream(self.body)

    @property
    def is_event_stream(self) -> bool:
        return self.response_headers.get("content-type", "").startswith("text/event-stream")

    @property
    def error_envelope(self) -> dict | None:
        """The OpenAI error object `{"error": {...}}`'s inner dict, if the body is one."""
        body = self.json
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"]
        return None

    def describe_status(self) -> str:
        if self.failure:
            return self.failure
        detail = ""
        if self.error_envelope:
            detail = f": {self.error_envelope.get('message', '')}"[:200]
        return f"HTTP {self.status}{detail}"

    def curl(self) -> str:
        """A shell line that sends the same request; the key is read from $OPENAI_API_KEY."""
        parts = ["curl", "-sS"]
        if isinstance(self.request_body, dict) and self.request_body.get("stream"):
            parts.append("-N")
        parts += ["-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name in CURL_KEY_HEADERS and value == REDACTED:
                parts += ["-H", CURL_KEY_HEADERS[name]]
            elif name in (*CURL_KEY_HEADERS, *CURL_HEADERS):
                parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body is not None:
            parts += ["-d", shlex.quote(json.dumps(self.request_body, separators=(",", ":")))]
        return " ".join(parts)

    def evidence(self) -> dict[str, Any]:
        """The exchange as report evidence: request, status, headers, body (cut when huge)."""
        body: Any
        if self.is_event_stream or (self.json is None and self.body.startswith(b"data:")):
            body = self.text[:EVIDENCE_BODY_LIMIT]
        elif self.json is not None and len(self.body) <= EVIDENCE_BODY_LIMIT:
            body = self.json
        else:
            body = self.text[:EVIDENCE_BODY_LIMIT]
        # HTTP has no status outside 100-599 (RFC 9110 15); one is kept as an observation, not a status
        invalid = self.status is not None and not 100 <= self.status <= 599
        return {
            "request": {"method": self.method, "url": self.url, "body": self.request_body},
            "status": None if invalid else self.status,
            "failure": f"invalid HTTP status {self.status}" if invalid and not self.failure else self.failure,
            "response_headers": self.response_headers,
            "response_body": body,
            "truncated": len(self.body) > EVIDENCE_BODY_LIMIT,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "first_byte_ms": None if self.first_byte is None else round(self.first_byte * 1000, 1),
            "retries": self.retries,
        }


#: How a curl line sends the key, in each header that carries it (OpenAI's, the Messages API's).
CURL_KEY_HEADERS = {"authorization": '"Authorization: Bearer $OPENAI_API_KEY"',
                    "x-api-key": '"x-api-key: $OPENAI_API_KEY"'}
#: The other request headers a curl line needs to reproduce what was sent.
CURL_HEADERS = ("content-type", "anthropic-version")


def describe_request(request: httpx.Request, redactor: Redactor) -> Exchange:
    """The redacted start of an Exchange: what was sent, with a JSON body kept as JSON."""
    sent = request.read()
    text = redactor.text(sent.decode("utf-8", "replace"))
    try:
        body = json.loads(text) if sent else None
    except ValueError:
        body = text
    return Exchange(method=request.method, url=redactor.text(str(request.url)),
                    request_headers=redactor.headers(request.headers), request_body=body)
